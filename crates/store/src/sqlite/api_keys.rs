//! API keys: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use switchyard_core::api_key::ApiKey;
use switchyard_core::id::ApiKeyId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{ApiKeyStore, StoreResult};
use switchyard_core::time::Millis;

use super::SqliteStore;
use crate::repo::Repo;

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        Repo(self).create_api_key(key).await
    }

    async fn find_active_api_key(&self, token_hash: &str) -> StoreResult<Option<ApiKey>> {
        Repo(self).find_active_api_key(token_hash).await
    }

    async fn list_api_keys(&self, request: ListRequest) -> StoreResult<Listing<ApiKey>> {
        Repo(self).list_api_keys(request).await
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, now: Millis) -> StoreResult<bool> {
        Repo(self).revoke_api_key(id, now).await
    }

    async fn count_active_api_keys(&self) -> StoreResult<u64> {
        Repo(self).count_active_api_keys().await
    }
}
