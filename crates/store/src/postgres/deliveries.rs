//! The outbox side: claims under leases, attempts, dead letters and retention.
//!
//! Claims lock their rows (`FOR UPDATE SKIP LOCKED`), so claimers on any number of nodes never
//! lease the same delivery; settling is guarded by the lease, so a node that lost its lease
//! cannot overwrite what the new owner did. Attempts are settled in groups
//! ([`super::settle`]). Reads, retries, replays and lease hand-back are shared
//! ([`crate::repo`]); they tell every node through `Backend::notify_work` (`NOTIFY`).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use switchyard_core::delivery::{Attempt, Delivery, DeliveryFilter, DeliveryTally, NextStep};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{DeliveryStore, Recorded, StoreResult};
use switchyard_core::time::Millis;

use super::PgStore;
use crate::error::map_err;
use crate::repo::{ClaimPlan, Repo, decode_sequenced};
use crate::rows::DeliveryRow;
use crate::sql::deliveries as q;

#[async_trait]
impl DeliveryStore for PgStore {
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The engine is woken by every ingest, routed or not: one read, which also says whether
        // to go around held destinations, instead of a transaction that finds nothing.
        let claim = match Repo(self).claim_plan(now).await? {
            None => return Ok(Vec::new()),
            Some(ClaimPlan::DueQueue) => q::CLAIM_SKIP_LOCKED,
            Some(ClaimPlan::AroundHeld) => q::CLAIM_SKIP_LOCKED_AROUND_HELD,
        };
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query_as::<_, DeliveryRow>(claim)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        // `RETURNING` answers in no particular order: restore the claim's.
        let mut claimed = decode_sequenced(rows)?;
        claimed.sort_by_key(|(seq, d)| (d.next_attempt_at, *seq));
        Ok(claimed.into_iter().map(|(_, d)| d).collect())
    }

    async fn record_attempt_observed(
        &self,
        owner: &str,
        attempt: &Attempt,
        next: NextStep,
        now: Millis,
    ) -> StoreResult<Recorded> {
        // Attempts that finish together are recorded in one group transaction; each caller
        // is answered after that commit.
        self.settle_group.record(owner, attempt, next, now).await
    }

    async fn release_leases(&self, owner: &str, now: Millis) -> StoreResult<u64> {
        Repo(self).release_leases(owner, now).await
    }

    async fn renew_leases(&self, owner: &str, ids: &[DeliveryId], lease_until: Millis) -> StoreResult<u64> {
        let mut renewed = 0;
        for chunk in ids.chunks(q::RENEW_CHUNK) {
            let statement = q::renew_leases(chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(statement)).bind(lease_until).bind(owner);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            renewed += query.execute(&self.pool).await.map_err(map_err)?.rows_affected();
        }
        Ok(renewed)
    }

    async fn next_due_at(&self, now: Millis) -> StoreResult<Option<Millis>> {
        Repo(self).next_due_at(now).await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<Delivery>> {
        Repo(self).get_delivery(id).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<Delivery>> {
        Repo(self).list_deliveries(filter, request).await
    }

    async fn attempts_of(&self, id: &DeliveryId) -> StoreResult<Vec<Attempt>> {
        Repo(self).attempts_of(id).await
    }

    async fn retry_delivery(&self, id: &DeliveryId, now: Millis) -> StoreResult<Option<Delivery>> {
        Repo(self).retry_delivery(id, now).await
    }

    async fn replay_dead(&self, filter: &DeliveryFilter, now: Millis, limit: u32) -> StoreResult<u64> {
        Repo(self).replay_dead(filter, now, limit).await
    }

    async fn count_dead(&self, filter: &DeliveryFilter) -> StoreResult<u64> {
        Repo(self).count_dead(filter).await
    }

    async fn delivery_tallies(&self) -> StoreResult<HashMap<DestinationId, DeliveryTally>> {
        Repo(self).delivery_tallies().await
    }

    async fn prune(&self, before: Millis, limit: u32) -> StoreResult<u64> {
        Repo(self).prune(before, limit).await
    }

    async fn stream_deliveries(
        &self,
        after: switchyard_core::stream::StreamCursor,
        filter: &switchyard_core::stream::DeliveryStreamFilter,
        limit: u32,
    ) -> StoreResult<switchyard_core::stream::StreamPage<Delivery>> {
        Repo(self).stream_deliveries(after, filter, limit).await
    }

    async fn stream_head_deliveries(&self) -> StoreResult<switchyard_core::stream::StreamCursor> {
        Repo(self).stream_head(<Self as crate::repo::Backend>::STREAM_HEAD_DELIVERIES).await
    }
}
