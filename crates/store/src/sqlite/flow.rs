//! Flow control: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use switchyard_core::delivery::Attempt;
use switchyard_core::flow::{Admission, AdmitRequest, Deferral, DestinationFlow, FlowStore};
use switchyard_core::id::DestinationId;
use switchyard_core::store::StoreResult;
use switchyard_core::time::Millis;

use super::SqliteStore;
pub(super) use crate::repo::Unwritten;
use crate::repo::{Repo, Taken};
#[cfg(test)]
use crate::sql::flow as q;

impl SqliteStore {
    /// Feeds a recorded attempt to its destination's circuit, in the caller's transaction. An
    /// attempt whose delivery or destination is gone changes nothing.
    pub(super) async fn observe_attempt(
        &self,
        conn: &mut SqliteConnection,
        attempt: &Attempt,
        now: Millis,
    ) -> StoreResult<Taken> {
        Repo(self).observe_attempt(conn, attempt, now).await
    }
}

#[async_trait]
impl FlowStore for SqliteStore {
    async fn admit(&self, request: &AdmitRequest<'_>, now: Millis) -> StoreResult<Admission> {
        Repo(self).admit(request, now).await
    }

    async fn defer_deliveries(&self, owner: &str, deferrals: &[Deferral], now: Millis) -> StoreResult<u64> {
        Repo(self).defer_deliveries(owner, deferrals, now).await
    }

    async fn destination_flow(&self, id: &DestinationId) -> StoreResult<Option<DestinationFlow>> {
        Repo(self).destination_flow(id).await
    }

    async fn next_unblock_at(&self, now: Millis) -> StoreResult<Option<Millis>> {
        Repo(self).next_unblock_at(now).await
    }
}

/// The plans of flow control's queries: seeks, never a walk of `deliveries`.
#[cfg(test)]
mod plans {
    use sqlx::AssertSqlSafe;

    use super::q;
    use crate::sqlite::SqliteStore;

    async fn plan(store: &SqliteStore, sql: &str, parameters: usize) -> Vec<String> {
        let mut query =
            sqlx::query_as::<_, (i64, i64, i64, String)>(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for _ in 0..parameters {
            query = query.bind(1_i64);
        }
        query.fetch_all(&store.writer).await.expect("explain").into_iter().map(|(_, _, _, d)| d).collect()
    }

    #[tokio::test]
    async fn flow_queries_seek_their_indexes() {
        let store = SqliteStore::connect("sqlite::memory:", 1, &crate::seal::MasterKeys::generated())
            .await
            .expect("an in-memory database");
        store.migrate().await.expect("migrate");

        let unblock = plan(&store, q::NEXT_UNBLOCK_AT, 1).await;
        assert!(
            unblock.iter().any(|l| l.starts_with("SEARCH") && l.contains("destination_flow_blocked_until")),
            "{unblock:#?}"
        );
        let defer = plan(&store, q::DEFER_DELIVERY, 4).await;
        assert!(defer.iter().all(|l| l.starts_with("SEARCH")), "{defer:#?}");

        // The claim fragment, in a due branch like the claim's: one primary-key seek per row.
        let due = format!(
            "SELECT seq FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $3 AND {} \
             ORDER BY next_attempt_at, seq LIMIT $4",
            q::FLOW_ADMITS_AT_3
        );
        let due = plan(&store, &due, 4).await;
        assert!(
            due.iter().any(|l| l.contains("deliveries_status_next_attempt_at")),
            "the due range is a seek: {due:#?}"
        );
        assert!(
            due.iter().any(|l| l.starts_with("SEARCH destination_flow USING")),
            "the fragment seeks destination_flow: {due:#?}"
        );
        assert!(!due.iter().any(|l| l.starts_with("SCAN")), "{due:#?}");
    }
}
