//! Secrets at rest: sealed in the database, plaintext in memory, resealed on demand.

use serde_json::json;
use switchyard_core::store::{IdempotencyClaim, StoreError, StoredResponse};
use switchyard_store::{MasterKey, MasterKeys, Reseal};

use crate::support::{T0, TestDb, destination};

const TOKEN: &str = "t0k3n-that-must-not-leak";
const SIGNING: &str = "whsec_c2VjcmV0";
/// A response body showing a secret, as a signing-secret rotation answers.
const BODY: &[u8] = b"{\"data\":{\"signing_secret\":\"whsec_bmV3LXNlY3JldA==\"}}";

fn response() -> StoredResponse {
    StoredResponse { status: 200, location: None, body: BODY.to_vec() }
}

/// A destination with two secrets, and a completed idempotency record with a secret in its
/// body.
async fn seed(db: &TestDb) -> switchyard_core::destination::Destination {
    let mut dst = destination("sealed");
    dst.secrets.insert("auth.token".into(), json!(TOKEN));
    db.store.create_destination(&dst).await.unwrap();
    let store = db.store.as_ref();
    assert_eq!(
        store.claim_idempotency_key("key_a", "k1", "h", T0, 0, 0).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    store.complete_idempotency_key("key_a", "k1", T0, &response()).await.unwrap();
    dst
}

async fn stored_secrets(db: &TestDb) -> Vec<String> {
    let mut values = db.read_outside("SELECT secrets FROM destinations").await;
    values.extend(db.read_outside("SELECT CAST(body AS TEXT) FROM idempotency_keys").await);
    values
}

fn assert_sealed_under(values: &[String], keys: &MasterKeys) {
    let prefix = format!("v1:{}:", keys.current().id());
    for value in values {
        assert!(value.starts_with(&prefix), "not sealed under {}: {value}", keys.current().id());
        for secret in [TOKEN, SIGNING, "whsec_bmV3LXNlY3JldA=="] {
            assert!(!value.contains(secret), "{secret} in clear: {value}");
        }
    }
}

pub async fn secrets_are_sealed_at_rest_and_plain_in_memory(db: TestDb) {
    let dst = seed(&db).await;
    let stored = stored_secrets(&db).await;
    assert_eq!(stored.len(), 2);
    assert_sealed_under(&stored, &db.keys);

    assert_eq!(db.store.get_destination(&dst.id).await.unwrap(), Some(dst.clone()));
    let claim = db.store.claim_idempotency_key("key_a", "k1", "h", T0, 0, 0).await.unwrap();
    assert_eq!(claim, IdempotencyClaim::Completed { request_hash: "h".into(), response: response() });

    let inventory = db.database.secret_inventory().await.unwrap();
    assert_eq!(inventory.plaintext, 0);
    assert_eq!(inventory.sealed.get(db.keys.current().id()), Some(&2));
    assert!(inventory.missing_keys(&db.keys).is_empty());
}

pub async fn a_sealed_value_moved_to_another_row_does_not_open(db: TestDb) {
    let first = destination("first");
    let second = destination("second");
    db.store.create_destination(&first).await.unwrap();
    db.store.create_destination(&second).await.unwrap();
    db.execute_outside("UPDATE destinations SET secrets = (SELECT MIN(secrets) FROM destinations)").await;
    let results = [db.store.get_destination(&first.id).await, db.store.get_destination(&second.id).await];
    let failures: Vec<String> =
        results.iter().filter_map(|r| r.as_ref().err().map(ToString::to_string)).collect();
    assert_eq!(failures.len(), 1, "exactly the moved value fails: {failures:?}");
    assert!(failures[0].contains("destinations.secrets"), "{}", failures[0]);
}

pub async fn a_missing_key_is_a_clear_error_naming_it(db: TestDb) {
    let dst = seed(&db).await;
    let ciphertext = stored_secrets(&db).await.remove(0);
    let other = MasterKeys::generated();
    let stranger = db.reopen(&other).await.store();
    match stranger.get_destination(&dst.id).await {
        Err(StoreError::Backend(error)) => {
            let message = error.to_string();
            assert!(message.contains("destinations.secrets"), "{message}");
            assert!(message.contains(db.keys.current().id().as_str()), "names the sealing key: {message}");
            assert!(message.contains(other.current().id().as_str()), "names the loaded key: {message}");
            let body = ciphertext.rsplit(':').next().unwrap();
            assert!(!message.contains(body), "never the ciphertext: {message}");
            assert!(!message.contains(TOKEN));
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(stranger.claim_idempotency_key("key_a", "k1", "h", T0, 0, 0).await.is_err());
    let inventory = db.reopen(&other).await.secret_inventory().await.unwrap();
    assert_eq!(inventory.missing_keys(&other), [db.keys.current().id()]);
}

pub async fn plaintext_from_before_sealing_is_read_then_sealed(db: TestDb) {
    let dst = destination("legacy");
    db.store.create_destination(&dst).await.unwrap();
    let store = db.store.as_ref();
    store.claim_idempotency_key("key_a", "k1", "h", T0, 0, 0).await.unwrap();
    store.complete_idempotency_key("key_a", "k1", T0, &response()).await.unwrap();
    // What a version before sealing wrote.
    db.execute_outside("UPDATE destinations SET secrets = '{\"signing_secret\":\"whsec_c2VjcmV0\"}'").await;
    db.execute_outside(
        "UPDATE idempotency_keys SET body = CAST('{\"data\":{\"signing_secret\":\"whsec_bmV3LXNlY3JldA==\"}}' AS BLOB)",
    )
    .await;

    assert_eq!(store.get_destination(&dst.id).await.unwrap(), Some(dst.clone()), "plaintext still reads");
    let inventory = db.database.secret_inventory().await.unwrap();
    assert_eq!(inventory.plaintext, 2);

    assert_eq!(db.database.reseal(Reseal::Plaintext).await.unwrap(), 2);
    assert_sealed_under(&stored_secrets(&db).await, &db.keys);
    assert_eq!(store.get_destination(&dst.id).await.unwrap(), Some(dst));
    let claim = store.claim_idempotency_key("key_a", "k1", "h", T0, 0, 0).await.unwrap();
    assert_eq!(claim, IdempotencyClaim::Completed { request_hash: "h".into(), response: response() });
    assert_eq!(db.database.reseal(Reseal::Plaintext).await.unwrap(), 0, "nothing left in clear");
}

pub async fn rotation_reseals_everything_under_the_new_key(db: TestDb) {
    let dst = seed(&db).await;
    let new = MasterKey::generate();
    let rotating = db.reopen(&MasterKeys::new(new.clone()).with_opening_key(db.keys.current().clone())).await;
    assert_eq!(rotating.reseal(Reseal::NotUnderCurrentKey).await.unwrap(), 2);
    assert_eq!(rotating.reseal(Reseal::NotUnderCurrentKey).await.unwrap(), 0, "done once");

    let new_only = MasterKeys::new(new);
    assert_sealed_under(&stored_secrets(&db).await, &new_only);
    let after = db.reopen(&new_only).await;
    assert_eq!(after.store().get_destination(&dst.id).await.unwrap(), Some(dst.clone()));
    let claim = after.store().claim_idempotency_key("key_a", "k1", "h", T0, 0, 0).await.unwrap();
    assert_eq!(claim, IdempotencyClaim::Completed { request_hash: "h".into(), response: response() });
    assert!(db.store.get_destination(&dst.id).await.is_err(), "the old key alone no longer opens them");
}

pub async fn a_rotation_that_cannot_open_a_value_changes_nothing(db: TestDb) {
    let dst = seed(&db).await;
    let before = stored_secrets(&db).await;
    // The new key without the old one: nothing can be opened, so nothing is resealed.
    let blind = db.reopen(&MasterKeys::generated()).await;
    assert!(blind.reseal(Reseal::NotUnderCurrentKey).await.is_err());
    assert_eq!(stored_secrets(&db).await, before, "the transaction rolled back whole");
    assert_eq!(db.store.get_destination(&dst.id).await.unwrap(), Some(dst));
}

/// Sources' secrets are counted with the others and resealed by a rotation with them.
pub async fn source_secrets_are_counted_and_resealed_on_rotation(db: TestDb) {
    let dst = seed(&db).await;
    let src = crate::support::source("github");
    db.store.create_source(&src).await.unwrap();
    let mut bare = crate::support::source("without secrets");
    bare.secrets.clear();
    db.store.create_source(&bare).await.unwrap();

    let inventory = db.database.secret_inventory().await.unwrap();
    assert_eq!(inventory.plaintext, 0);
    assert_eq!(
        inventory.sealed.get(db.keys.current().id()),
        Some(&4),
        "a destination, a response, two sources"
    );
    assert_eq!(db.database.reseal(Reseal::Plaintext).await.unwrap(), 0, "nothing in clear");

    let new = MasterKey::generate();
    let rotating = db.reopen(&MasterKeys::new(new.clone()).with_opening_key(db.keys.current().clone())).await;
    assert_eq!(rotating.reseal(Reseal::NotUnderCurrentKey).await.unwrap(), 4);
    assert_eq!(rotating.reseal(Reseal::NotUnderCurrentKey).await.unwrap(), 0, "done once");

    let new_only = MasterKeys::new(new);
    let sources = db.read_outside("SELECT secrets FROM sources").await;
    assert_eq!(sources.len(), 2);
    assert_sealed_under(&sources, &new_only);
    assert!(sources.iter().all(|s| !s.contains(crate::support::SOURCE_SECRET)));
    let after = db.reopen(&new_only).await;
    let inventory = after.secret_inventory().await.unwrap();
    assert_eq!(inventory.sealed.get(new_only.current().id()), Some(&4));
    assert_eq!(inventory.sealed.len(), 1, "nothing left under the old key");
    assert_eq!(after.store().get_source(&src.id).await.unwrap(), Some(src.clone()));
    assert_eq!(after.store().get_source(&bare.id).await.unwrap(), Some(bare));
    assert_eq!(after.store().get_destination(&dst.id).await.unwrap(), Some(dst));
    match db.store.get_source(&src.id).await {
        Err(StoreError::Backend(error)) => {
            let message = error.to_string();
            assert!(message.contains("sources.secrets"), "{message}");
            assert!(message.contains(new_only.current().id().as_str()), "names the sealing key: {message}");
        }
        other => panic!("the old key alone no longer opens it: {other:?}"),
    }
}
