//! Sources: stored as destinations are, their secrets sealed under a place of their own.

use serde_json::json;
use switchyard_core::id::SourceId;
use switchyard_core::page::{Cursor, ListRequest};
use switchyard_core::source::Source;
use switchyard_core::store::StoreError;

use crate::support::{SOURCE_SECRET, T0, TestDb, destination, source};

pub async fn sources_round_trip_and_update_optimistically(db: TestDb) {
    let store = db.store.as_ref();
    let src = source("github");
    store.create_source(&src).await.unwrap();
    assert_eq!(store.get_source(&src.id).await.unwrap(), Some(src.clone()), "secrets come back equal");

    // At rest the secrets are sealed: neither the secret nor its name is in clear.
    let stored = db.read_outside("SELECT secrets FROM sources").await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with(&format!("v1:{}:", db.keys.current().id())), "{}", stored[0]);
    assert!(!stored[0].contains(SOURCE_SECRET), "{}", stored[0]);
    assert!(!stored[0].contains("verification"), "{}", stored[0]);
    let config = db.read_outside("SELECT config FROM sources").await;
    assert!(!config[0].contains(SOURCE_SECRET), "{}", config[0]);

    match store.create_source(&src).await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("already exists"), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }

    let mut changed = src.clone();
    changed.name = "github v2".into();
    changed.config = json!({"verification": {"type": "shopify"}});
    changed.secrets.insert("verification.secret".into(), json!("rotated-s3cret"));
    changed.enabled = false;
    changed.updated_at = T0 + 500;
    changed.version = 99; // ignored: the store counts versions
    let updated = store.update_source(&changed, 1).await.unwrap();
    assert_eq!((updated.version, updated.updated_at, updated.created_at), (2, T0 + 500, T0));
    assert_eq!(updated, Source { version: 2, ..changed.clone() });
    assert_eq!(store.get_source(&src.id).await.unwrap(), Some(updated.clone()));
    let stored = db.read_outside("SELECT secrets FROM sources").await;
    assert!(!stored[0].contains("rotated-s3cret"), "{}", stored[0]);

    match store.update_source(&changed, 1).await {
        Err(StoreError::VersionMismatch { current }) => assert_eq!(current, 2),
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    assert_eq!(store.get_source(&src.id).await.unwrap(), Some(updated), "a stale update changes nothing");
    let mut missing = changed.clone();
    missing.id = SourceId::generate();
    assert!(matches!(store.update_source(&missing, 1).await, Err(StoreError::NotFound("source"))));

    assert!(store.delete_source(&src.id).await.unwrap());
    assert!(!store.delete_source(&src.id).await.unwrap(), "a second delete finds nothing");
    assert_eq!(store.get_source(&src.id).await.unwrap(), None);
}

pub async fn sources_list_in_creation_order_with_totals(db: TestDb) {
    let store = db.store.as_ref();
    let mut created = Vec::new();
    for i in 0..5 {
        let mut src = source(&format!("s{i}"));
        // Creation time orders the list, not the id or the name.
        src.created_at = T0 + 100 - i;
        store.create_source(&src).await.unwrap();
        created.push(src);
    }
    created.reverse();

    let page = store.list_sources(ListRequest::Page { page: 1, per_page: 2 }).await.unwrap();
    assert_eq!(page.items, created[..2]);
    assert_eq!((page.total, page.next_cursor), (Some(5), None));
    let page = store.list_sources(ListRequest::Page { page: 2, per_page: 2 }).await.unwrap();
    assert_eq!(page.items, created[2..4]);
    let page = store.list_sources(ListRequest::Page { page: 3, per_page: 2 }).await.unwrap();
    assert_eq!(page.items, created[4..]);
    assert_eq!(page.total, Some(5));
    let page = store.list_sources(ListRequest::Page { page: 4, per_page: 2 }).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.total, Some(5));

    // Resources without cursors serve a cursor request as their first page.
    let page =
        store.list_sources(ListRequest::After { after: Some(Cursor::at(3)), per_page: 3 }).await.unwrap();
    assert_eq!(page.items, created[..3]);
}

/// A destination's sealed secrets copied into a source's row of the very same id do not open:
/// the column is part of the place a value is sealed to.
pub async fn a_destinations_sealed_secrets_do_not_open_as_a_sources(db: TestDb) {
    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();
    let mut src = source("s");
    src.id = SourceId::from_trusted(dst.id.as_str());
    db.store.create_source(&src).await.unwrap();
    assert_eq!(db.store.get_source(&src.id).await.unwrap(), Some(src.clone()));

    db.execute_outside("UPDATE sources SET secrets = (SELECT secrets FROM destinations)").await;
    match db.store.get_source(&src.id).await {
        Err(StoreError::Backend(error)) => {
            let message = error.to_string();
            assert!(message.contains("sources.secrets"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(db.store.list_sources(ListRequest::default()).await.is_err());
    assert_eq!(db.store.get_destination(&dst.id).await.unwrap(), Some(dst), "the destination still opens");
}

/// No version wrote a source's secrets in clear, so a value in clear is refused, naming the
/// column and not the value, at reads and at the start-up reseal alike.
pub async fn source_secrets_in_clear_are_refused(db: TestDb) {
    let src = source("s");
    db.store.create_source(&src).await.unwrap();
    db.execute_outside("UPDATE sources SET secrets = '{\"verification.secret\":\"planted-s3cret\"}'").await;
    match db.store.get_source(&src.id).await {
        Err(StoreError::Backend(error)) => {
            let message = error.to_string();
            assert!(message.contains("sources.secrets"), "{message}");
            assert!(!message.contains("planted-s3cret"), "never the value: {message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }

    let inventory = db.database.secret_inventory().await.unwrap();
    assert_eq!(inventory.plaintext, 1, "counted as what it is");
    match db.database.reseal(switchyard_store::Reseal::Plaintext).await {
        Err(StoreError::Backend(error)) => {
            let message = error.to_string();
            assert!(message.contains("sources.secrets"), "{message}");
            assert!(!message.contains("planted-s3cret"), "never the value: {message}");
        }
        other => panic!("a planted value is not sealed for good: {other:?}"),
    }
    let stored = db.read_outside("SELECT secrets FROM sources").await;
    assert!(stored[0].contains("planted-s3cret"), "left as it was: the reseal rolled back");
}
