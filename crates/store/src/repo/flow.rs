//! Flow control: the per-destination record of circuit, outcomes and rate bucket, read and
//! moved by the pure rules of `switchyard_core::flow`.
//!
//! Every change is decided on the record read under a lock and written with a version check,
//! so two admissions never both take the probe or the same token, and a rate limit of N/s is
//! N/s for all nodes. SQLite's writer holds the whole database from `BEGIN IMMEDIATE`;
//! PostgreSQL locks the destination's row (`SELECT ... FOR UPDATE`, [`Backend::SELECT_FLOW_LOCKED`]),
//! so nodes change it one after another. Attempts reach the circuit through [`observe`], which
//! each backend's `record_attempt` runs in the transaction that records them (SQLite's group
//! job, PostgreSQL's settle group, which folds a group's attempts of one destination into one
//! decision); outcomes that change nothing but a closed circuit's counts are held in memory a
//! moment ([`Unwritten`]).

mod held;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::circuit::{OutcomeWindow, Signal};
use switchyard_core::delivery::{Attempt, AttemptOutcome};
use switchyard_core::destination::CircuitBreakerPolicy;
use switchyard_core::flow::{Admission, AdmitRequest, CircuitChange, Deferral, DestinationFlow};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::time::{Millis, now_millis};

use super::{Args, Backend, Conn, Db, Repo, Row};
use crate::error::{map_err, unreadable};
use crate::rows::flow::{FlowRow, FlowUpdate};
use crate::sql::flow as q;

/// Locked reads of a record that another writer changed before the version check: only a
/// record created concurrently (no row to lock yet) ever needs a second.
pub(crate) const TRIES: usize = 3;

/// The answer to `request` when deciding it on the record as `stored` changes nothing (a
/// closed circuit without a rate limit, an open one before its probe time: most answers);
/// `None` when the answer changes the record, which is then decided again under its lock.
pub(crate) fn admission_on_read(
    request: &AdmitRequest<'_>,
    stored: Option<DestinationFlow>,
    now: Millis,
) -> Option<Admission> {
    let id = request.destination_id;
    let unchanged = stored.unwrap_or_else(|| DestinationFlow::new(id.clone(), now));
    let mut flow = unchanged.clone();
    let admission = flow.admit(request.candidates, request.rate_limit, request.probe_until, now);
    (flow == unchanged).then_some(admission)
}

pub(crate) fn lost_race(id: &DestinationId) -> StoreError {
    StoreError::Conflict(format!("the flow record of destination {id} kept changing; try again"))
}

/// How long outcomes that changed nothing but a closed circuit's counts may stay unwritten.
const FLUSH_AFTER_MS: Millis = 1_000;

/// Outcomes this node recorded that changed nothing but the counts of a closed circuit (a
/// success with no failure before it, a refused message): kept here and written with the
/// record's next change, or once the oldest is `FLUSH_AFTER_MS` old, by the next attempt or,
/// when none follows, by the node's upkeep (`write_held_outcomes`, in [`held`]). A healthy
/// destination's attempts so cost no write of their own; the ratio and the health report may
/// miss up to a second of other nodes' successes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Unwritten(Arc<Mutex<HashMap<DestinationId, Held>>>);

#[derive(Debug)]
struct Held {
    outcomes: OutcomeWindow,
    /// When the oldest of them was recorded.
    since: Millis,
    /// The breaker's window they were counted in, which a write of them forgets beyond.
    window_ms: u64,
}

impl Unwritten {
    fn lock(&self) -> MutexGuard<'_, HashMap<DestinationId, Held>> {
        // A panic elsewhere cannot leave the map half-written: each change is one call.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self, id: &DestinationId) -> Option<Held> {
        self.lock().remove(id)
    }

    /// Adds `held` to what is held for `id`, under one lock: another attempt of the same
    /// destination may have put outcomes there since these were taken.
    fn put(&self, id: DestinationId, held: Held, window_ms: u64, now: Millis) {
        match self.lock().entry(id) {
            Entry::Occupied(mut there) => {
                let there = there.get_mut();
                there.outcomes.merge(&held.outcomes, window_ms, now);
                there.since = there.since.min(held.since);
                there.window_ms = window_ms;
            }
            Entry::Vacant(empty) => {
                empty.insert(held);
            }
        }
    }

    /// `flow` with this node's unwritten outcomes added.
    fn add_to(&self, flow: &mut DestinationFlow, now: Millis) {
        if let Some(held) = self.lock().get(&flow.destination_id) {
            flow.outcomes.merge(&held.outcomes, u64::MAX, now);
        }
    }
}

/// Held outcomes taken out of [`Unwritten`] into a flow record written in a transaction not yet
/// committed. Dropped without [`Taken::written`] (the transaction failed or was abandoned), it
/// puts them back, so a rollback loses none.
#[must_use = "call written() once the transaction has committed"]
pub(crate) struct Taken(Option<(Unwritten, DestinationId, Held, u64, Millis)>);

impl Taken {
    pub(crate) fn nothing() -> Self {
        Self(None)
    }

    /// The transaction that wrote them committed: they are stored.
    pub(crate) fn written(mut self) {
        self.0 = None;
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some((unwritten, id, held, window_ms, now)) = self.0.take() {
            unwritten.put(id, held, window_ms, now);
        }
    }
}

/// The destination of an attempt's delivery and its circuit breaker policy, as stored.
pub(crate) fn attempt_destination(
    destination: String,
    policy: &str,
) -> StoreResult<(DestinationId, CircuitBreakerPolicy)> {
    Ok((DestinationId::from_trusted(destination), parse_policy(policy)?))
}

/// A circuit breaker policy as stored (`destinations.circuit_breaker`).
pub(crate) fn parse_policy(json: &str) -> StoreResult<CircuitBreakerPolicy> {
    serde_json::from_str(json).map_err(|e| unreadable("destinations.circuit_breaker", e))
}

/// Held outcomes of a destination and the ones a transaction adds to them, kept out of
/// [`Unwritten`] until it ends: [`Kept::written`] (it committed) puts both back, dropping it
/// (it failed) only the ones held before, so a rollback neither loses nor repeats one.
#[must_use = "call written() once the transaction has committed"]
pub(crate) struct Kept {
    unwritten: Unwritten,
    destination: DestinationId,
    before: Option<Held>,
    added: Option<Held>,
    window_ms: u64,
    now: Millis,
}

impl Kept {
    /// The transaction that recorded the attempts committed: their outcomes are held.
    pub(crate) fn written(mut self) {
        if let Some(added) = self.added.take() {
            self.unwritten.put(self.destination.clone(), added, self.window_ms, self.now);
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(before) = self.before.take() {
            self.unwritten.put(self.destination.clone(), before, self.window_ms, self.now);
        }
    }
}

/// What the outcomes of attempts do to their destination's record.
// Lives only from the decision to the write that follows it; boxing would cost an allocation
// per attempt for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Observed {
    /// They changed nothing but counts, to hold in [`Unwritten`] once recorded: nothing to
    /// write.
    Held(Kept),
    /// The record to write over the version it was read at, with what it took of the held
    /// outcomes and the circuit changes it makes, each with the attempt that made it.
    Write(DestinationFlow, Taken, Vec<(DeliveryId, CircuitChange)>),
}

/// Feeds `attempts` (each with the instant it was recorded at, in the order they were) to the
/// record `stored` (a new one when there is none) with the outcomes this node holds for it, and
/// decides whether the result must be written: it must when any of them changed the circuit,
/// as it would have written each alone, so a group of attempts means to other nodes what the
/// same attempts one by one mean. `now` is the latest of their instants.
pub(crate) fn observe(
    unwritten: &Unwritten,
    stored: Option<DestinationFlow>,
    destination: &DestinationId,
    policy: &CircuitBreakerPolicy,
    attempts: &[(&Attempt, Millis)],
    now: Millis,
) -> Observed {
    let mut flow = stored.unwrap_or_else(|| DestinationFlow::new(destination.clone(), now));
    let held = unwritten.take(destination);
    if let Some(held) = &held {
        flow.outcomes.merge(&held.outcomes, policy.window_ms, now);
    }
    let mut changed = false;
    let mut changes = Vec::new();
    for (attempt, at) in attempts {
        let circuit = flow.circuit.clone();
        let transition =
            flow.observe(policy, &attempt.delivery_id, attempt.outcome, attempt.duration_ms, *at);
        changed |= flow.circuit != circuit;
        if let Some(change) = transition.and_then(|t| CircuitChange::of(&t, &circuit, &flow, policy, *at)) {
            changes.push((attempt.delivery_id.clone(), change));
        }
    }
    let since = held.as_ref().map_or(now, |h| h.since);
    if !changed && flow.version != 0 && now - since < FLUSH_AFTER_MS {
        let mut added = Held { outcomes: OutcomeWindow::default(), since: now, window_ms: policy.window_ms };
        for (attempt, at) in attempts {
            added.since = added.since.min(*at);
            if attempt.outcome != AttemptOutcome::Filtered {
                added.outcomes.record(
                    policy.window_ms,
                    Signal::of(attempt.outcome),
                    attempt.duration_ms,
                    *at,
                );
            }
        }
        return Observed::Held(Kept {
            unwritten: unwritten.clone(),
            destination: destination.clone(),
            before: held,
            added: Some(added),
            window_ms: policy.window_ms,
            now,
        });
    }
    // Put back unless the write commits, whatever happens from here.
    let taken = Taken(held.map(|held| (unwritten.clone(), destination.clone(), held, policy.window_ms, now)));
    Observed::Write(flow, taken, changes)
}

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<String>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<i64>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<f64>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (Option<i64>,): FromRow<'r, Row<B>>,
    for<'r> FlowRow: FromRow<'r, Row<B>>,
{
    /// The record of `id` read with `query` (plain or locked); `None` when there is none.
    pub(crate) async fn select_flow(
        conn: &mut Conn<B>,
        query: &'static str,
        id: &DestinationId,
    ) -> StoreResult<Option<DestinationFlow>> {
        sqlx::query_as::<_, FlowRow>(query)
            .bind(id.as_str())
            .fetch_optional(conn)
            .await
            .map_err(map_err)?
            .map(DestinationFlow::try_from)
            .transpose()
    }

    /// The record of `id`, created closed and empty when missing, locked until the transaction
    /// ends; `None` when the destination does not exist.
    async fn load_or_create(
        conn: &mut Conn<B>,
        id: &DestinationId,
        now: Millis,
    ) -> StoreResult<Option<DestinationFlow>> {
        sqlx::query(q::ENSURE_FLOW).bind(id.as_str()).bind(now).execute(&mut *conn).await.map_err(map_err)?;
        Self::select_flow(conn, B::SELECT_FLOW_LOCKED, id).await
    }

    /// Writes `flow` over the version it was read at, or stores it when it is new (version 0);
    /// answers whether it did.
    pub(crate) async fn write_flow(
        conn: &mut Conn<B>,
        flow: &DestinationFlow,
        now: Millis,
    ) -> StoreResult<bool> {
        let row = FlowUpdate::of(flow, now)?;
        if flow.version == 0 {
            let inserted = sqlx::query(q::INSERT_FLOW)
                .bind(flow.destination_id.as_str())
                .bind(row.state)
                .bind(row.opened_at)
                .bind(row.reason)
                .bind(row.cooldown_ms)
                .bind(row.retry_at)
                .bind(row.consecutive_failures)
                .bind(row.probe_owner)
                .bind(row.probe_until)
                .bind(row.outcomes)
                .bind(row.tokens)
                .bind(row.tokens_at)
                .bind(row.rate_blocked_until)
                .bind(row.updated_at)
                .bind(row.blocked_until)
                .execute(conn)
                .await
                .map_err(map_err)?;
            return Ok(B::rows_affected(&inserted) == 1);
        }
        let written = sqlx::query(q::UPDATE_FLOW)
            .bind(row.state)
            .bind(row.opened_at)
            .bind(row.reason)
            .bind(row.cooldown_ms)
            .bind(row.retry_at)
            .bind(row.consecutive_failures)
            .bind(row.probe_owner)
            .bind(row.probe_until)
            .bind(row.outcomes)
            .bind(row.tokens)
            .bind(row.tokens_at)
            .bind(row.rate_blocked_until)
            .bind(row.blocked_until)
            .bind(row.updated_at)
            .bind(flow.destination_id.as_str())
            .bind(flow.version)
            .execute(conn)
            .await
            .map_err(map_err)?;
        Ok(B::rows_affected(&written) == 1)
    }

    pub(crate) async fn admit(&self, request: &AdmitRequest<'_>, now: Millis) -> StoreResult<Admission> {
        let id = request.destination_id;
        let mut reader = self.0.reader().acquire().await.map_err(map_err)?;
        let stored = Self::select_flow(&mut reader, q::SELECT_FLOW, id).await?;
        drop(reader);
        if let Some(admission) = admission_on_read(request, stored, now) {
            return Ok(admission);
        }
        self.admit_writing(request, now).await
    }

    /// [`Self::admit`] once a read showed that the answer changes the record: under the
    /// write lock (PostgreSQL: the row's lock), read again, decided again and written.
    pub(crate) async fn admit_writing(
        &self,
        request: &AdmitRequest<'_>,
        now: Millis,
    ) -> StoreResult<Admission> {
        let id = request.destination_id;
        let admit = |flow: &mut DestinationFlow| {
            flow.admit(request.candidates, request.rate_limit, request.probe_until, now)
        };
        let mut tx = self.0.begin_write().await?;
        for _ in 0..TRIES {
            let Some(mut flow) = Self::load_or_create(&mut tx, id, now).await? else {
                // The destination is gone: its attempts record why nothing can be sent.
                tx.rollback().await.map_err(map_err)?;
                return Ok(Admission {
                    admitted: request.candidates.len(),
                    probe: false,
                    deferred: Vec::new(),
                });
            };
            let admission = admit(&mut flow);
            if Self::write_flow(&mut tx, &flow, now).await? {
                tx.commit().await.map_err(map_err)?;
                return Ok(admission);
            }
        }
        tx.rollback().await.map_err(map_err)?;
        Err(lost_race(id))
    }

    pub(crate) async fn defer_deliveries(
        &self,
        owner: &str,
        deferrals: &[Deferral],
        now: Millis,
    ) -> StoreResult<u64> {
        if deferrals.is_empty() {
            return Ok(0);
        }
        let mut tx = self.0.begin_write().await?;
        let mut deferred = 0;
        for deferral in deferrals {
            let result = sqlx::query(q::DEFER_DELIVERY)
                .bind(deferral.until)
                .bind(now)
                .bind(deferral.delivery_id.as_str())
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            deferred += B::rows_affected(&result);
        }
        tx.commit().await.map_err(map_err)?;
        Ok(deferred)
    }

    pub(crate) async fn destination_flow(&self, id: &DestinationId) -> StoreResult<Option<DestinationFlow>> {
        let mut reader = self.0.reader().acquire().await.map_err(map_err)?;
        let mut flow = Self::select_flow(&mut reader, q::SELECT_FLOW, id).await?;
        if let Some(flow) = &mut flow {
            self.0.unwritten().add_to(flow, now_millis());
        }
        Ok(flow)
    }

    pub(crate) async fn destination_flows(&self) -> StoreResult<Vec<DestinationFlow>> {
        let rows =
            sqlx::query_as::<_, FlowRow>(q::ALL_FLOWS).fetch_all(self.0.reader()).await.map_err(map_err)?;
        let now = now_millis();
        rows.into_iter()
            .map(|row| {
                let mut flow = DestinationFlow::try_from(row)?;
                self.0.unwritten().add_to(&mut flow, now);
                Ok(flow)
            })
            .collect()
    }

    pub(crate) async fn next_unblock_at(&self, now: Millis) -> StoreResult<Option<Millis>> {
        sqlx::query_scalar::<_, Option<i64>>(q::NEXT_UNBLOCK_AT)
            .bind(now)
            .fetch_one(self.0.reader())
            .await
            .map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 60_000;
    const NOW: Millis = 1_700_000_000_000;

    fn one_success() -> Held {
        let mut outcomes = OutcomeWindow::default();
        outcomes.record(WINDOW, Signal::Success, 10, NOW);
        Held { outcomes, since: NOW, window_ms: WINDOW }
    }

    fn succeeded(unwritten: &Unwritten, id: &DestinationId) -> u64 {
        unwritten.lock().get(id).map_or(0, |held| held.outcomes.totals(WINDOW, NOW).succeeded)
    }

    #[test]
    fn putting_back_adds_to_what_another_attempt_put_meanwhile() {
        let (unwritten, id) = (Unwritten::default(), DestinationId::from_trusted("dst_a"));
        unwritten.put(id.clone(), one_success(), WINDOW, NOW);
        let taken = unwritten.take(&id).expect("held");
        unwritten.put(id.clone(), one_success(), WINDOW, NOW);
        unwritten.put(id.clone(), taken, WINDOW, NOW);
        assert_eq!(succeeded(&unwritten, &id), 2);
    }

    #[test]
    fn taken_outcomes_come_back_unless_written() {
        let (unwritten, id) = (Unwritten::default(), DestinationId::from_trusted("dst_a"));
        let taken = |held| Taken(Some((unwritten.clone(), id.clone(), held, WINDOW, NOW)));
        drop(taken(one_success()));
        assert_eq!(succeeded(&unwritten, &id), 1, "a rolled-back write puts them back");
        let held = unwritten.take(&id).expect("held");
        taken(held).written();
        assert_eq!(succeeded(&unwritten, &id), 0, "a committed write keeps them stored only");
    }
}
