//! Retention and held flow outcomes: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use switchyard_core::store::{StoreResult, UpkeepStore};
use switchyard_core::time::Millis;

use super::PgStore;
use crate::repo::Repo;

#[async_trait]
impl UpkeepStore for PgStore {
    async fn prune_audit_log(&self, before: Millis, limit: u32) -> StoreResult<u64> {
        Repo(self).prune_audit_log(before, limit).await
    }

    async fn prune_idempotency_keys(&self, before: Millis, limit: u32) -> StoreResult<u64> {
        Repo(self).prune_idempotency_keys(before, limit).await
    }

    async fn write_held_outcomes(&self, held_before: Millis) -> StoreResult<u64> {
        Repo(self).write_held_outcomes(held_before).await
    }
}
