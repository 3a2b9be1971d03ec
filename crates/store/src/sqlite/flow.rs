//! Flow control: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use rusqlite::OptionalExtension as _;
use switchyard_core::delivery::Attempt;
use switchyard_core::flow::{Admission, AdmitRequest, CircuitChange, Deferral, DestinationFlow, FlowStore};
use switchyard_core::id::DestinationId;
use switchyard_core::store::StoreResult;
use switchyard_core::time::Millis;

use super::SqliteStore;
use super::direct::Binder;
use super::reads::Direct;
use crate::error::map_direct_err;
pub(super) use crate::repo::Unwritten;
use crate::repo::{Observed, Repo, Taken, admission_on_read, attempt_destination, lost_race, observe};
use crate::rows::flow::{FlowRow, FlowUpdate};
use crate::sql::flow as q;

/// Whether an attempt's outcome is already held for its circuit (counted in [`Unwritten`]),
/// which no rollback takes back.
#[derive(Debug, Default)]
pub(super) struct Counted(bool);

/// Feeds a recorded attempt to `destination`'s circuit (the destination of its delivery), in
/// the group's transaction on SQLite's handle (which holds the whole database, so the record
/// read is the one written over), answering the change it made to the circuit, if any. An
/// attempt whose destination is gone changes nothing, and so does one `counted` already.
pub(super) fn observe_attempt(
    conn: &rusqlite::Connection,
    unwritten: &Unwritten,
    destination: String,
    attempt: &Attempt,
    now: Millis,
    counted: &mut Counted,
) -> StoreResult<(Taken, Option<CircuitChange>)> {
    if counted.0 {
        return Ok((Taken::nothing(), None));
    }
    let policy = conn
        .prepare_cached(q::CIRCUIT_POLICY)
        .and_then(|mut statement| {
            statement.query_row([destination.as_str()], |row| row.get::<_, String>(0)).optional()
        })
        .map_err(map_direct_err)?;
    let Some(policy) = policy else {
        return Ok((Taken::nothing(), None));
    };
    let (destination, policy) = attempt_destination(destination, &policy)?;
    let stored = conn
        .prepare_cached(q::SELECT_FLOW)
        .and_then(|mut statement| {
            statement.query_row([destination.as_str()], FlowRow::from_direct).optional()
        })
        .map_err(map_direct_err)?
        .map(DestinationFlow::try_from)
        .transpose()?;
    match observe(unwritten, stored, &destination, &policy, &[(attempt, now)], now) {
        Observed::Held(kept) => {
            // Held at once: the jobs after this one in the group read what is held to decide
            // on theirs (a job rolled back leaves its outcome counted, and once).
            kept.written();
            counted.0 = true;
            Ok((Taken::nothing(), None))
        }
        Observed::Write(flow, taken, changes) if write_flow(conn, &flow, now)? => {
            Ok((taken, changes.into_iter().next().map(|(_, change)| change)))
        }
        Observed::Write(..) => Err(lost_race(&destination)),
    }
}

/// Writes `flow` over the version it was read at, or stores it when it is new (version 0);
/// answers whether it did.
fn write_flow(conn: &rusqlite::Connection, flow: &DestinationFlow, now: Millis) -> StoreResult<bool> {
    let row = FlowUpdate::of(flow, now)?;
    let text = if flow.version == 0 { q::INSERT_FLOW } else { q::UPDATE_FLOW };
    let mut statement = conn.prepare_cached(text).map_err(map_direct_err)?;
    let mut binder = Binder::new(&mut statement);
    if flow.version == 0 {
        binder.bind(flow.destination_id.as_str())?;
    }
    binder.bind(row.state)?;
    binder.bind(row.opened_at)?;
    binder.bind(row.reason.as_deref())?;
    binder.bind(row.cooldown_ms)?;
    binder.bind(row.retry_at)?;
    binder.bind(row.consecutive_failures)?;
    binder.bind(row.probe_owner.as_deref())?;
    binder.bind(row.probe_until)?;
    binder.bind(row.outcomes.as_str())?;
    binder.bind(row.tokens)?;
    binder.bind(row.tokens_at)?;
    binder.bind(row.rate_blocked_until)?;
    if flow.version == 0 {
        binder.bind(row.updated_at)?;
        binder.bind(row.blocked_until)?;
    } else {
        binder.bind(row.blocked_until)?;
        binder.bind(row.updated_at)?;
        binder.bind(flow.destination_id.as_str())?;
        binder.bind(flow.version)?;
    }
    Ok(statement.raw_execute().map_err(map_direct_err)? == 1)
}

#[async_trait]
impl FlowStore for SqliteStore {
    async fn admit(&self, request: &AdmitRequest<'_>, now: Millis) -> StoreResult<Admission> {
        let stored =
            match self.read_row(q::SELECT_FLOW, request.destination_id.as_str(), FlowRow::from_direct) {
                Direct::Read(row) => row?.map(DestinationFlow::try_from).transpose()?,
                Direct::Busy => return Repo(self).admit(request, now).await,
            };
        match admission_on_read(request, stored, now) {
            Some(admission) => Ok(admission),
            None => Repo(self).admit_writing(request, now).await,
        }
    }

    async fn defer_deliveries(&self, owner: &str, deferrals: &[Deferral], now: Millis) -> StoreResult<u64> {
        Repo(self).defer_deliveries(owner, deferrals, now).await
    }

    async fn destination_flow(&self, id: &DestinationId) -> StoreResult<Option<DestinationFlow>> {
        Repo(self).destination_flow(id).await
    }

    async fn destination_flows(&self) -> StoreResult<Vec<DestinationFlow>> {
        Repo(self).destination_flows().await
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
    }
}
