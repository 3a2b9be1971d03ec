//! `Idempotency-Key` records: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use switchyard_core::store::{IdempotencyClaim, IdempotencyStore, StoreResult, StoredResponse};
use switchyard_core::time::Millis;

use super::SqliteStore;
use crate::repo::Repo;

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: Millis,
        stale_before: Millis,
        abandoned_before: Millis,
    ) -> StoreResult<IdempotencyClaim> {
        Repo(self).claim_idempotency_key(scope, key, request_hash, now, stale_before, abandoned_before).await
    }

    async fn complete_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        claimed_at: Millis,
        response: &StoredResponse,
    ) -> StoreResult<()> {
        Repo(self).complete_idempotency_key(scope, key, claimed_at, response).await
    }

    async fn release_idempotency_key(&self, scope: &str, key: &str, claimed_at: Millis) -> StoreResult<()> {
        Repo(self).release_idempotency_key(scope, key, claimed_at).await
    }
}
