//! What only the SQLite backend promises: its URL forms, file settings, the single writer,
//! and the schema check of `ping`.

use std::sync::Arc;

use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;
use switchyard_core::api_key::{ApiKey, Role};
use switchyard_core::event::EventFilter;
use switchyard_core::page::ListRequest;
use switchyard_core::store::{Store, StoreError};
use switchyard_store::{Database, DatabaseOptions, connect};

use crate::support::{T0, TestDb, destination, event, subscription};

fn options(url: String) -> DatabaseOptions {
    DatabaseOptions { url, ..DatabaseOptions::default() }
}

#[test]
fn default_options_name_the_embedded_file() {
    let options = DatabaseOptions::default();
    assert_eq!((options.url.as_str(), options.max_connections), ("sqlite://switchyard.db", 8));
}

#[tokio::test]
async fn other_url_schemes_are_refused_without_echoing_the_url() {
    for url in ["mysql://app:hunter2@db.internal/switchyard", "redis://x", "switchyard.db"] {
        let error = connect(&options(url.to_owned())).await.expect_err(url);
        let message = error.to_string();
        assert!(matches!(error, StoreError::Backend(_)), "{url}: {error:?}");
        assert!(message.contains("unsupported database URL scheme"), "{message}");
        assert!(message.contains("sqlite://PATH"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[tokio::test]
async fn both_url_forms_create_a_wal_file() {
    let dir = tempfile::tempdir().unwrap();
    for (i, prefix) in ["sqlite://", "sqlite:"].into_iter().enumerate() {
        let path = dir.path().join(format!("db{i}.sqlite"));
        assert!(!path.exists());
        let database = connect(&options(format!("{prefix}{}", path.display()))).await.unwrap();
        assert_eq!(database.backend(), "sqlite");
        assert_eq!(database.store().backend(), "sqlite");
        assert!(path.exists(), "{prefix}: the file is created");

        let mut side = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut side).await.unwrap();
        assert_eq!(mode, "wal");
        side.close().await.unwrap();
    }
}

#[tokio::test]
async fn ping_demands_every_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let database = connect(&options(format!("sqlite://{}", path.display()))).await.unwrap();
    let store = database.store();
    let error = store.ping().await.expect_err("an unmigrated database is not ready");
    assert!(error.to_string().contains("switchyard migrate"), "{error}");

    database.migrate().await.unwrap();
    store.ping().await.unwrap();
    database.migrate().await.expect("migrating twice is a no-op");

    let mut side = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00'").execute(&mut side).await.unwrap();
    let error = store.ping().await.expect_err("a changed migration is not current");
    assert!(error.to_string().contains("differs"), "{error}");
    sqlx::query("DELETE FROM _sqlx_migrations").execute(&mut side).await.unwrap();
    let error = store.ping().await.expect_err("a forgotten migration is not current");
    assert!(error.to_string().contains("not applied"), "{error}");
    side.close().await.unwrap();
}

#[tokio::test]
async fn an_in_memory_database_works_for_quick_runs() {
    let database = connect(&options("sqlite::memory:".to_owned())).await.unwrap();
    database.migrate().await.unwrap();
    let store = database.store();
    store.ping().await.unwrap();
    let issued = ApiKey::issue("k".into(), Role::Admin, T0);
    store.create_api_key(&issued.key).await.unwrap();
    assert_eq!(store.find_active_api_key(&issued.key.token_hash).await.unwrap(), Some(issued.key));
}

/// Many concurrent writers queue on the one writer connection instead of failing with
/// `SQLITE_BUSY`, and readers keep reading meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_queue_instead_of_failing() {
    let db = TestDb::sqlite().await;
    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();
    db.store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();

    let mut tasks = Vec::new();
    for t in 0..16 {
        let store: Arc<dyn Store> = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                store.ingest(vec![event(&format!("t{t}-{i}"), "a.b")], T0).await?;
                store.list_events(&EventFilter::default(), ListRequest::default()).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let listing = db.store.list_events(&EventFilter::default(), ListRequest::default()).await.unwrap();
    assert_eq!(listing.total, Some(320));
}

#[tokio::test]
async fn unreadable_rows_are_errors_not_panics() {
    let db = TestDb::sqlite().await;
    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();
    db.execute_outside("UPDATE destinations SET retry = '{not json'").await;
    match db.store.get_destination(&dst.id).await {
        Err(StoreError::Backend(error)) => {
            assert!(error.to_string().contains("destinations.retry"), "{error}")
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    db.execute_outside("UPDATE destinations SET retry = '{}', kind = 'carrier-pigeon'").await;
    assert!(matches!(db.store.get_destination(&dst.id).await, Err(StoreError::Backend(_))));
}

#[tokio::test]
async fn the_database_handle_is_cheap_to_share() {
    let db = TestDb::sqlite().await;
    let Database::Sqlite(sqlite) = &db.database else { panic!("a SQLite database") };
    let clone: Arc<dyn Store> = Arc::new(sqlite.clone());
    let issued = ApiKey::issue("k".into(), Role::Viewer, T0);
    db.store.create_api_key(&issued.key).await.unwrap();
    assert_eq!(clone.count_active_api_keys().await.unwrap(), 1, "clones share the database");
}
