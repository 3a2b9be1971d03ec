//! Flow control: the shared repository ([`crate::repo`]) on this backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use rusqlite::OptionalExtension as _;
use switchyard_core::circuit::OutcomeWindow;
use switchyard_core::delivery::Attempt;
use switchyard_core::destination::CircuitBreakerPolicy;
use switchyard_core::flow::{Admission, AdmitRequest, CircuitChange, Deferral, DestinationFlow, FlowStore};
use switchyard_core::id::DestinationId;
use switchyard_core::store::StoreResult;
use switchyard_core::time::Millis;

use super::SqliteStore;
use super::direct::Binder;
use super::reads::Direct;
use crate::error::map_direct_err;
pub(super) use crate::repo::Unwritten;
use crate::repo::{Observed, Repo, Taken, admission_on_read, lost_race, observe, parse_policy};
use crate::rows::flow::{FlowRow, FlowUpdate, parse_outcomes};
use crate::sql::flow as q;

/// What the store keeps of flow control between transactions.
#[derive(Debug, Clone, Default)]
pub(super) struct Flows {
    /// Outcomes that changed nothing but a closed circuit's counts, not written yet.
    pub(super) unwritten: Unwritten,
    pub(super) decoded: Decoded,
}

/// Whether an attempt's outcome is already held for its circuit (counted in [`Unwritten`]),
/// which no rollback takes back.
#[derive(Debug, Default)]
pub(super) struct Counted(bool);

/// Circuit policies and flow records as this store last decoded them, by destination, each
/// beside the JSON it was decoded from. A healthy destination's attempts read the same record
/// again and again (its outcomes are written about once a second, [`Unwritten`]), so each
/// read compares the stored text with the one held and decodes it only when it differs.
#[derive(Debug, Clone, Default)]
pub(super) struct Decoded(Arc<Mutex<HashMap<String, DecodedFlow>>>);

#[derive(Debug, Default)]
struct DecodedFlow {
    policy: Option<(String, CircuitBreakerPolicy)>,
    outcomes: Option<(String, OutcomeWindow)>,
}

/// Destinations [`Decoded`] holds at most. Past that it starts again empty: it is only a
/// cache, and destinations created and deleted over a node's life must not grow it for ever.
/// With more destinations than this in use at once, most reads decode, as without it.
const MAX_DECODED: usize = 1_024;

impl Decoded {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, DecodedFlow>> {
        // Each change is one assignment: a panic elsewhere leaves no entry half-made.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes what is held for `destination` with `change`.
    fn hold(&self, destination: &str, change: impl FnOnce(&mut DecodedFlow)) {
        let mut held = self.lock();
        if held.len() >= MAX_DECODED && !held.contains_key(destination) {
            held.clear();
        }
        change(held.entry(destination.to_owned()).or_default());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// The policy stored as `json` for `destination`.
    fn policy(&self, destination: &str, json: &str) -> StoreResult<CircuitBreakerPolicy> {
        if let Some((held, policy)) = self.lock().get(destination).and_then(|d| d.policy.as_ref())
            && held == json
        {
            return Ok(policy.clone());
        }
        let policy = parse_policy(json)?;
        self.hold(destination, |held| held.policy = Some((json.to_owned(), policy.clone())));
        Ok(policy)
    }

    /// The record `row` holds.
    pub(super) fn flow(&self, row: FlowRow) -> StoreResult<DestinationFlow> {
        let held = self
            .lock()
            .get(row.destination_id())
            .and_then(|d| d.outcomes.as_ref())
            .filter(|(json, _)| json == row.outcomes())
            .map(|(_, outcomes)| outcomes.clone());
        let outcomes = match held {
            Some(outcomes) => outcomes,
            None => {
                let outcomes = parse_outcomes(row.outcomes())?;
                let json = row.outcomes().to_owned();
                self.hold(row.destination_id(), |held| held.outcomes = Some((json, outcomes.clone())));
                outcomes
            }
        };
        row.with_outcomes(outcomes)
    }
}

/// Feeds a recorded attempt to `destination`'s circuit (the destination of its delivery), in
/// the group's transaction on SQLite's handle (which holds the whole database, so the record
/// read is the one written over), answering the change it made to the circuit, if any. An
/// attempt whose destination is gone changes nothing, and so does one `counted` already.
pub(super) fn observe_attempt(
    conn: &rusqlite::Connection,
    flows: &Flows,
    destination: String,
    attempt: &Attempt,
    now: Millis,
    counted: &mut Counted,
) -> StoreResult<(Taken, Option<CircuitChange>)> {
    if counted.0 {
        return Ok((Taken::nothing(), None));
    }
    let read = conn
        .prepare_cached(q::CIRCUIT_POLICY_AND_FLOW)
        .and_then(|mut statement| {
            statement
                .query_row([destination.as_str()], |row| {
                    let policy = row.get::<_, String>(0)?;
                    let has_record = row.get_ref(1)? != rusqlite::types::ValueRef::Null;
                    Ok((policy, has_record.then(|| FlowRow::from_direct_at(row, 1)).transpose()?))
                })
                .optional()
        })
        .map_err(map_direct_err)?;
    let Some((policy, stored)) = read else {
        return Ok((Taken::nothing(), None));
    };
    let policy = flows.decoded.policy(&destination, &policy)?;
    let stored = stored.map(|row| flows.decoded.flow(row)).transpose()?;
    let destination = DestinationId::from_trusted(destination);
    match observe(&flows.unwritten, stored, &destination, &policy, &[(attempt, now)], now) {
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
        let read = |row: &rusqlite::Row<'_>| FlowRow::from_direct_at(row, 0);
        let stored = match self.read_row(q::SELECT_FLOW, request.destination_id.as_str(), read) {
            Direct::Read(row) => row?.map(|row| self.flows.decoded.flow(row)).transpose()?,
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
        let observed = plan(&store, q::CIRCUIT_POLICY_AND_FLOW, 1).await;
        assert_eq!(observed.len(), 2, "{observed:#?}");
        assert!(observed.iter().all(|l| l.starts_with("SEARCH") && l.contains("id=?)")), "{observed:#?}");
    }
}

/// Records and policies are decoded again exactly when their stored text changes.
#[cfg(test)]
mod decoding {
    use switchyard_core::circuit::{OutcomeWindow, Signal};
    use switchyard_core::destination::CircuitBreakerPolicy;

    use super::Decoded;
    use crate::rows::flow::FlowRow;

    fn row(conn: &rusqlite::Connection, outcomes: &str) -> FlowRow {
        conn.query_row(
            "SELECT 'd1', 'closed', NULL, NULL, 0, NULL, 0, NULL, NULL, ?1, NULL, NULL, NULL, 3, 0",
            [outcomes],
            |row| FlowRow::from_direct_at(row, 0),
        )
        .expect("a row")
    }

    #[test]
    fn a_record_is_decoded_again_when_its_stored_outcomes_change() {
        let conn = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        let decoded = Decoded::default();
        let mut one = OutcomeWindow::default();
        one.record(60_000, Signal::Success, 12, 1_000);
        let one_json = serde_json::to_string(&one).expect("json");

        let empty = decoded.flow(row(&conn, "[]")).expect("decoded");
        assert_eq!(empty.outcomes, OutcomeWindow::default());
        assert_eq!((empty.destination_id.as_str(), empty.version), ("d1", 3));
        assert_eq!(decoded.flow(row(&conn, &one_json)).expect("decoded").outcomes, one);
        assert_eq!(decoded.flow(row(&conn, &one_json)).expect("held").outcomes, one);
        assert_eq!(decoded.flow(row(&conn, "[]")).expect("decoded").outcomes, OutcomeWindow::default());
        assert!(
            decoded.flow(row(&conn, "[{")).is_err(),
            "unreadable outcomes are an error, not the last held"
        );
    }

    #[test]
    fn a_policy_is_decoded_again_when_its_stored_text_changes() {
        let decoded = Decoded::default();
        let default = CircuitBreakerPolicy::default();
        let tight = CircuitBreakerPolicy { consecutive_failures: 2, ..default.clone() };
        let text = |policy: &CircuitBreakerPolicy| serde_json::to_string(policy).expect("json");

        assert_eq!(decoded.policy("d1", &text(&default)).expect("decoded"), default);
        assert_eq!(decoded.policy("d1", &text(&default)).expect("held"), default);
        assert_eq!(decoded.policy("d1", &text(&tight)).expect("decoded"), tight);
        assert_eq!(
            decoded.policy("d2", &text(&default)).expect("decoded"),
            default,
            "each destination its own"
        );
        assert_eq!(decoded.policy("d1", &text(&tight)).expect("held"), tight);
    }

    #[test]
    fn what_is_held_stays_bounded_as_destinations_come_and_go() {
        let decoded = Decoded::default();
        let default = serde_json::to_string(&CircuitBreakerPolicy::default()).expect("json");
        for n in 0..3 * super::MAX_DECODED {
            decoded.policy(&format!("d{n}"), &default).expect("decoded");
            assert!(decoded.len() <= super::MAX_DECODED);
        }
        let tight = CircuitBreakerPolicy { consecutive_failures: 2, ..CircuitBreakerPolicy::default() };
        let last = format!("d{}", 3 * super::MAX_DECODED - 1);
        let json = serde_json::to_string(&tight).expect("json");
        assert_eq!(decoded.policy(&last, &json).expect("decoded"), tight, "still decoded by its text");
    }
}
