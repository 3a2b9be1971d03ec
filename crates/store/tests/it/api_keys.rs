use switchyard_core::api_key::{ApiKey, Role, hash_token};
use switchyard_core::page::ListRequest;
use switchyard_core::store::StoreError;

use crate::support::{T0, TestDb};

pub async fn api_keys_are_found_revoked_and_counted(db: TestDb) {
    let store = db.store.as_ref();
    assert_eq!(store.count_active_api_keys().await.unwrap(), 0);
    let admin = ApiKey::issue("admin".into(), Role::Admin, T0);
    let viewer = ApiKey::issue("viewer".into(), Role::Viewer, T0 + 1);
    store.create_api_key(&admin.key).await.unwrap();
    store.create_api_key(&viewer.key).await.unwrap();
    assert_eq!(store.count_active_api_keys().await.unwrap(), 2);

    let found = store.find_active_api_key(&hash_token(&admin.token)).await.unwrap();
    assert_eq!(found, Some(admin.key.clone()));
    assert_eq!(store.find_active_api_key(&hash_token("sy_not_a_key")).await.unwrap(), None);

    assert!(store.revoke_api_key(&admin.key.id, T0 + 50).await.unwrap());
    assert!(!store.revoke_api_key(&admin.key.id, T0 + 60).await.unwrap(), "revoking twice answers false");
    assert_eq!(store.find_active_api_key(&admin.key.token_hash).await.unwrap(), None);
    assert_eq!(store.count_active_api_keys().await.unwrap(), 1);
    assert_eq!(
        store.find_active_api_key(&viewer.key.token_hash).await.unwrap().map(|k| k.role),
        Some(Role::Viewer)
    );

    match store.create_api_key(&viewer.key).await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains(viewer.key.id.as_str()), "{message}");
            assert!(!message.contains(&viewer.key.token_hash), "the hash is not echoed: {message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn api_keys_list_active_keys_oldest_first(db: TestDb) {
    let store = db.store.as_ref();
    let keys: Vec<_> = (0..4).map(|i| ApiKey::issue(format!("k{i}"), Role::Operator, T0 + 10 - i)).collect();
    for issued in &keys {
        store.create_api_key(&issued.key).await.unwrap();
    }
    assert!(store.revoke_api_key(&keys[1].key.id, T0 + 100).await.unwrap());

    let listing = store.list_api_keys(ListRequest::Page { page: 1, per_page: 10 }).await.unwrap();
    let names: Vec<_> = listing.items.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["k3", "k2", "k0"]);
    assert_eq!(listing.total, Some(3));
    assert!(listing.items.iter().all(|k| k.revoked_at.is_none()));

    let second = store.list_api_keys(ListRequest::Page { page: 2, per_page: 2 }).await.unwrap();
    assert_eq!(second.items.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["k0"]);
}
