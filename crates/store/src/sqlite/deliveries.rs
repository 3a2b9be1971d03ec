//! The outbox side: claims under leases, attempts, dead letters and retention.
//!
//! Every write here runs on the single writer connection inside `BEGIN IMMEDIATE`, so a
//! claim's read and its update see no other writer in between: two claimers can never lease
//! the same delivery, and a settle cannot interleave with a reclaim.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use switchyard_core::delivery::{Attempt, Delivery, DeliveryFilter, DeliveryTally, NextStep};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{DeliveryStore, Recorded, StoreResult};
use switchyard_core::time::Millis;

use super::SqliteStore;
use super::direct::Binder;
use super::flow::{Counted, Flows, observe_attempt};
use crate::error::{map_direct_err, map_err};
use crate::repo::{ClaimPlan, Repo, Taken, decode_sequenced, settle_to};
use crate::rows::{DeliveryRow, u64_to_i64};
use crate::sql::deliveries as q;

#[async_trait]
impl DeliveryStore for SqliteStore {
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
        // The engine is woken by every ingest, routed or not. A claim that finds nothing would
        // still hold the one write connection, between the group writer's transactions: look
        // on a reader first, which also says whether to go around held destinations.
        let claim = match Repo(self).claim_plan(now).await? {
            None => return Ok(Vec::new()),
            Some(ClaimPlan::DueQueue) => q::CLAIM,
            Some(ClaimPlan::AroundHeld) => q::CLAIM_AROUND_HELD,
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
        // Attempts that finish together are recorded in one group transaction, one fsync for
        // all of them; each is answered after that commit.
        let (flows, owner, attempt) = (self.flows.clone(), owner.to_owned(), attempt.clone());
        let mut counted = Counted::default();
        self.group
            .write(1, false, move |conn, _| settle(conn, &flows, &owner, &attempt, next, now, &mut counted))
            .await
            .map(|(recorded, taken)| {
                // The group committed: the outcomes taken into the flow record are stored.
                taken.written();
                recorded
            })
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
            let mut tx = self.begin_write().await?;
            renewed += query.execute(&mut *tx).await.map_err(map_err)?.rows_affected();
            tx.commit().await.map_err(map_err)?;
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

/// Records `attempt` and moves its delivery on, in the group's transaction on `conn`; answers
/// it unsettled, having written nothing, when `owner` no longer holds the lease. The held
/// outcomes the circuit's record took go back unless the group commits; `counted` keeps a
/// second run of the same settle (see `group/jobs.rs`) from counting its outcome twice.
fn settle(
    conn: &rusqlite::Connection,
    flows: &Flows,
    owner: &str,
    attempt: &Attempt,
    next: NextStep,
    now: Millis,
    counted: &mut Counted,
) -> StoreResult<(Recorded, Taken)> {
    let (status, next_attempt_at) = settle_to(next);
    let last_error = match next {
        NextStep::Succeeded | NextStep::Filtered => None,
        NextStep::RetryAt(_) | NextStep::Dead => attempt.error.as_deref(),
    };
    let duration_ms = u64_to_i64("duration_ms", attempt.duration_ms)?;
    // The guarded update goes first: when the lease is lost it matches nothing and nothing
    // else is written.
    let mut statement = conn.prepare_cached(q::SETTLE_DELIVERY).map_err(map_direct_err)?;
    let mut binder = Binder::new(&mut statement);
    binder.bind(status.as_str())?;
    binder.bind(next_attempt_at)?;
    binder.bind(last_error)?;
    binder.bind(now)?;
    binder.bind(attempt.delivery_id.as_str())?;
    binder.bind(owner)?;
    let settled = {
        let mut rows = statement.raw_query();
        match rows.next().map_err(map_direct_err)? {
            None => None,
            Some(row) => Some((
                row.get::<_, String>(0).map_err(map_direct_err)?,
                row.get::<_, bool>(1).map_err(map_direct_err)?,
            )),
        }
    };
    let Some((destination, keyed)) = settled else {
        return Ok((Recorded::default(), Taken::nothing()));
    };
    if keyed {
        // The next of its key, if it was waiting for this one (only keyed deliveries have one).
        let mut statement = conn.prepare_cached(q::PROMOTE_NEXT).map_err(map_direct_err)?;
        let mut binder = Binder::new(&mut statement);
        binder.bind(now)?;
        binder.bind(attempt.delivery_id.as_str())?;
        statement.raw_execute().map_err(map_direct_err)?;
    }

    let mut statement = conn.prepare_cached(q::INSERT_ATTEMPT).map_err(map_direct_err)?;
    let mut binder = Binder::new(&mut statement);
    binder.bind(attempt.delivery_id.as_str())?;
    binder.bind(attempt.started_at)?;
    binder.bind(duration_ms)?;
    binder.bind(attempt.outcome.as_str())?;
    binder.bind(attempt.status_code.map(i64::from))?;
    binder.bind(attempt.error.as_deref())?;
    binder.bind(attempt.response_body.as_deref())?;
    statement.raw_execute().map_err(map_direct_err)?;
    // The destination's circuit breaker learns the outcome in the same transaction.
    let (taken, circuit) = observe_attempt(conn, flows, destination, attempt, now, counted)?;
    Ok((Recorded { settled: true, circuit }, taken))
}

/// The plans SQLite picks for the engine's queries: index searches, never a walk of the
/// deliveries or events tables, with and without statistics.
#[cfg(test)]
mod plans {
    use sqlx::AssertSqlSafe;

    use super::q;
    use crate::sqlite::SqliteStore;

    async fn migrated() -> SqliteStore {
        let store = SqliteStore::connect("sqlite::memory:", 1, &crate::seal::MasterKeys::generated())
            .await
            .expect("an in-memory database");
        store.migrate().await.expect("migrate");
        store
    }

    /// The detail lines of `EXPLAIN QUERY PLAN` for `sql`, whose parameters are all bound to 1.
    async fn plan(store: &SqliteStore, sql: &str, parameters: usize) -> Vec<String> {
        let mut query =
            sqlx::query_as::<_, (i64, i64, i64, String)>(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for _ in 0..parameters {
            query = query.bind(1_i64);
        }
        query
            .fetch_all(&store.writer)
            .await
            .expect("explain")
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect()
    }

    fn assert_searches(plan: &[String], table: &str, indexes: &[&str]) {
        let on_table: Vec<_> = plan
            .iter()
            .filter(|line| line.contains(&format!(" {table} ")) || line.ends_with(table))
            .collect();
        assert!(!on_table.is_empty(), "{table} is not read: {plan:#?}");
        for line in &on_table {
            assert!(line.starts_with("SEARCH "), "a full scan: {line} in {plan:#?}");
        }
        for index in indexes {
            assert!(
                on_table.iter().any(|line| line.contains(&format!("INDEX {index} "))),
                "{index} is not used: {plan:#?}"
            );
        }
    }

    async fn assert_plans(store: &SqliteStore) {
        let claim = plan(store, q::CLAIM, 4).await;
        assert_searches(
            &claim,
            "deliveries",
            &["deliveries_status_next_attempt_at", "deliveries_status_lease_expires_at"],
        );
        assert_searches(&claim, "destinations", &["sqlite_autoindex_destinations_1"]);
        // The head checks of ordered deliveries seek, each on the key's queue.
        assert_searches(&claim, "queued", &["deliveries_ordered_key_status_seq"]);
        assert_eq!(
            claim.iter().filter(|l| l.contains("INDEX deliveries_ordered_key_status_seq (")).count(),
            3,
            "{claim:#?}"
        );
        // Only the merge of the two branches is sorted, never a branch.
        assert_eq!(claim.iter().filter(|l| l.contains("TEMP B-TREE")).count(), 1, "{claim:#?}");

        let due = plan(store, q::NEXT_DUE_AT, 0).await;
        assert_searches(
            &due,
            "deliveries",
            &["deliveries_status_next_attempt_at", "deliveries_status_lease_expires_at"],
        );
        assert_searches(&due, "queued", &["deliveries_ordered_key_status_seq"]);
        assert!(!due.iter().any(|l| l.contains("TEMP B-TREE")), "{due:#?}");

        // Around held destinations: a seek per destination, never a range of the due queue.
        let lanes = "deliveries_pending_destination_id_next_attempt_at";
        let around = plan(store, q::CLAIM_AROUND_HELD, 4).await;
        assert_searches(&around, "deliveries", &[lanes, "deliveries_status_lease_expires_at"]);
        assert_searches(&around, "picked", &[]);
        assert_searches(&around, "queued", &["deliveries_ordered_key_status_seq"]);
        assert!(!around.iter().any(|l| l.contains("deliveries_status_next_attempt_at")), "{around:#?}");
        let due_around = plan(store, q::NEXT_DUE_AROUND_HELD, 2).await;
        assert_searches(&due_around, "deliveries", &[lanes, "deliveries_status_lease_expires_at"]);
        let held = plan(store, q::HELD_BACKLOG, 1).await;
        assert_searches(&held, "deliveries", &[lanes]);
        assert!(held.iter().any(|l| l.contains("destinations_paused")), "{held:#?}");
        assert_searches(&held, "destination_flow", &["destination_flow_blocked_until"]);

        // Pending rows per destination: the lanes hold them and nothing else, in order.
        let pending = plan(store, q::PENDING_TALLIES, 0).await;
        assert_searches(&pending, "deliveries", &[lanes]);
        let dead = plan(store, q::DEAD_TALLIES, 0).await;
        assert_searches(&dead, "deliveries", &["deliveries_status_destination_id_seq"]);
        let succeeded = plan(store, q::SUCCEEDED_DESTINATIONS, 0).await;
        assert_searches(&succeeded, "deliveries", &["deliveries_destination_id_seq"]);

        let links = plan(store, crate::sql::LINKS_OF_FLOW, 2).await;
        assert_searches(&links, "events", &["events_correlation_id_seq"]);
        assert!(!links.iter().any(|l| l.contains("TEMP B-TREE")), "{links:#?}");

        let promote = plan(store, q::PROMOTE_NEXT, 2).await;
        assert_searches(&promote, "settled", &["sqlite_autoindex_deliveries_1"]);
        assert_searches(&promote, "waiting", &["deliveries_ordered_key_status_seq"]);
        assert!(!promote.iter().any(|l| l.contains("TEMP B-TREE")), "{promote:#?}");

        let insert = plan(store, crate::sql::SQLITE_INSERT_DELIVERY, 9).await;
        assert_searches(&insert, "queued", &["deliveries_ordered_key_status_seq"]);

        let release = plan(store, q::RELEASE_LEASES, 2).await;
        assert_searches(&release, "deliveries", &["deliveries_status_lease_expires_at"]);
        let renew = plan(store, &q::renew_leases(3), 5).await;
        assert_searches(&renew, "deliveries", &[]);

        for prune in [q::PRUNE_ATTEMPTS, q::PRUNE_DELIVERIES] {
            let prune = plan(store, prune, 2).await;
            assert_searches(
                &prune,
                "deliveries",
                &["deliveries_succeeded_updated_at", "deliveries_filtered_updated_at"],
            );
            // Only the merge of the two branches is sorted.
            assert_eq!(prune.iter().filter(|l| l.contains("TEMP B-TREE")).count(), 1, "{prune:#?}");
        }
        let events = plan(store, q::PRUNE_EVENTS, 2).await;
        assert_searches(&events, "events", &["events_received_at_seq"]);
        assert_searches(&events, "deliveries", &["deliveries_event_id"]);
        let audit = plan(store, crate::sql::retention::PRUNE_AUDIT_LOG, 2).await;
        assert_searches(&audit, "audit_log", &["audit_log_at_seq"]);
        assert!(!audit.iter().any(|l| l.contains("TEMP B-TREE")), "{audit:#?}");
        let keys = plan(store, crate::sql::retention::PRUNE_IDEMPOTENCY_KEYS, 2).await;
        assert_searches(&keys, "idempotency_keys", &["idempotency_keys_created_at"]);
        assert!(!keys.iter().any(|l| l.contains("TEMP B-TREE")), "{keys:#?}");

        let by_destination = switchyard_core::delivery::DeliveryFilter {
            destination_id: Some(switchyard_core::id::DestinationId::from_trusted("dst_1")),
            ..Default::default()
        };
        let replay = q::replay_dead(&by_destination, 1, 10);
        let replay = plan(store, &replay.sql, replay.binds.len()).await;
        assert_searches(&replay, "deliveries", &["deliveries_status_destination_id_seq"]);
        // A destination's pending or dead deliveries are counted on a partial index that holds
        // them, and listed through it or along the destination's deliveries in order, as the
        // planner judges; its other statuses walk the destination's deliveries.
        use switchyard_core::delivery::{DeliveryFilter, DeliveryStatus};
        let waiting = [
            (DeliveryStatus::Pending, lanes),
            (DeliveryStatus::Dead, "deliveries_status_destination_id_seq"),
        ];
        for (status, index) in waiting {
            let filter = DeliveryFilter { status: Some(status), ..by_destination.clone() };
            let count = q::count(&filter);
            let count = plan(store, &count.sql, count.binds.len()).await;
            assert_searches(&count, "deliveries", &[index]);
            let listing = q::list(&filter, Some(1), 10, 0);
            let listing = plan(store, &listing.sql, listing.binds.len()).await;
            assert_searches(&listing, "deliveries", &[]);
        }
        let succeeded = DeliveryFilter { status: Some(DeliveryStatus::Succeeded), ..by_destination.clone() };
        let listing = q::list(&succeeded, Some(1), 10, 0);
        let listing = plan(store, &listing.sql, listing.binds.len()).await;
        assert_searches(&listing, "deliveries", &["deliveries_destination_id_seq"]);
    }

    #[tokio::test]
    async fn engine_queries_search_indexes_without_statistics() {
        let store = migrated().await;
        assert_plans(&store).await;
    }

    /// Statistics (`ANALYZE`, or `PRAGMA optimize`) describing a typical table, mostly
    /// succeeded rows and a few due ones, do not talk the planner into a scan.
    #[tokio::test]
    async fn engine_queries_search_indexes_with_statistics() {
        let store = migrated().await;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) \
             INSERT INTO destinations (id, name, kind, config, secrets, timeout_ms, \
             connect_timeout_ms, retry, rate_limit, circuit_breaker, enabled, version, \
             created_at, updated_at) \
             SELECT 'dst_' || i, 'd', 'http', '{}', '{}', 1, 1, '{}', NULL, '{}', i % 5 > 0, 1, \
             0, 0 FROM n",
        )
        .execute(&store.writer)
        .await
        .expect("destinations");
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO events (event_id, event_type, timestamp, payload, correlation_id, \
             source, received_at, content_hash) \
             SELECT 'e' || i, 'a.b', i, '{}', 'c', 'api', i, 'h' FROM n",
        )
        .execute(&store.writer)
        .await
        .expect("events");
        sqlx::query(
            "INSERT INTO deliveries (id, event_id, subscription_id, destination_id, status, \
             attempt_count, next_attempt_at, lease_owner, lease_expires_at, ordering_key, \
             ordered, block_on_dead, created_at, updated_at, changed) \
             SELECT 'd' || seq, event_id, 'sub_' || (seq % 2), 'dst_' || (seq % 40 + 1), \
             CASE WHEN seq % 50 = 0 THEN 'pending' WHEN seq % 97 = 0 THEN 'in_flight' \
                  WHEN seq % 89 = 0 THEN 'dead' WHEN seq % 7 = 0 THEN 'filtered' \
                  ELSE 'succeeded' END, \
             1, CASE WHEN seq % 50 = 0 OR seq % 97 = 0 THEN seq END, \
             CASE WHEN seq % 97 = 0 THEN 'node' END, CASE WHEN seq % 97 = 0 THEN seq END, \
             CASE WHEN seq % 3 = 0 THEN 'k' || (seq % 10) END, seq % 3 = 0, seq % 6 = 0, \
             seq, seq, seq FROM events",
        )
        .execute(&store.writer)
        .await
        .expect("deliveries");
        sqlx::query("ANALYZE").execute(&store.writer).await.expect("analyze");
        assert_plans(&store).await;
    }
}
