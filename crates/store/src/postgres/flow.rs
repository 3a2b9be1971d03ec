//! Flow control: the per-destination record of circuit, outcomes and rate bucket, read and
//! moved by the pure rules of `switchyard_core::flow`.
//!
//! Every change locks the destination's row (`SELECT ... FOR UPDATE`) for its
//! read-change-write, so nodes change it one after another: two admissions never both take the
//! probe or the same token, and a rate limit of N/s is N/s for the cluster. The version check
//! of the write stays as a backstop. Attempts reach the circuit through
//! `PgStore::observe_attempt`, which `record_attempt` runs in its own transaction; outcomes
//! that change nothing but a closed circuit's counts are held in memory a moment ([`Unwritten`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use sqlx::PgConnection;
use switchyard_core::circuit::{OutcomeWindow, Signal};
use switchyard_core::delivery::{Attempt, AttemptOutcome};
use switchyard_core::destination::CircuitBreakerPolicy;
use switchyard_core::flow::{Admission, AdmitRequest, Deferral, DestinationFlow, FlowStore};
use switchyard_core::id::DestinationId;
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::time::{Millis, now_millis};

use super::PgStore;
use crate::error::{map_err, unreadable};
use crate::rows::flow::{FlowRow, FlowUpdate};
use crate::sql::flow as q;

/// Reads of a record that another writer changed before the version check: only a record
/// created concurrently (no row to lock yet) ever needs a second.
const TRIES: usize = 3;

fn lost_race(id: &DestinationId) -> StoreError {
    StoreError::Conflict(format!("the flow record of destination {id} kept changing; try again"))
}

async fn select_flow(conn: &mut PgConnection, id: &DestinationId) -> StoreResult<Option<DestinationFlow>> {
    sqlx::query_as::<_, FlowRow>(q::SELECT_FLOW)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await
        .map_err(map_err)?
        .map(DestinationFlow::try_from)
        .transpose()
}

/// The record of `id`, locked until the transaction ends; `None` when there is none.
async fn select_flow_locked(
    conn: &mut PgConnection,
    id: &DestinationId,
) -> StoreResult<Option<DestinationFlow>> {
    sqlx::query_as::<_, FlowRow>(q::SELECT_FLOW_FOR_UPDATE)
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
    conn: &mut PgConnection,
    id: &DestinationId,
    now: Millis,
) -> StoreResult<Option<DestinationFlow>> {
    sqlx::query(q::ENSURE_FLOW).bind(id.as_str()).bind(now).execute(&mut *conn).await.map_err(map_err)?;
    select_flow_locked(conn, id).await
}

/// Writes `flow` over the version it was read at, or stores it when it is new (version 0);
/// answers whether it did.
async fn write_flow(conn: &mut PgConnection, flow: &DestinationFlow, now: Millis) -> StoreResult<bool> {
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
        return Ok(inserted.rows_affected() == 1);
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
    Ok(written.rows_affected() == 1)
}

/// How long outcomes that changed nothing but a closed circuit's counts may stay unwritten.
const FLUSH_AFTER_MS: Millis = 1_000;

/// Outcomes this node recorded that changed nothing but the counts of a closed circuit (a
/// success with no failure before it, a refused message): kept here and written with the
/// record's next change, or once the oldest is `FLUSH_AFTER_MS` old. A healthy destination's
/// attempts so cost no write of their own; the ratio and the health report may miss up to a
/// second of other nodes' successes.
#[derive(Debug, Clone, Default)]
pub(super) struct Unwritten(Arc<Mutex<HashMap<DestinationId, Held>>>);

#[derive(Debug)]
struct Held {
    outcomes: OutcomeWindow,
    /// When the oldest of them was recorded.
    since: Millis,
}

impl Unwritten {
    fn lock(&self) -> MutexGuard<'_, HashMap<DestinationId, Held>> {
        // A panic elsewhere cannot leave the map half-written: each change is one call.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self, id: &DestinationId) -> Option<Held> {
        self.lock().remove(id)
    }

    fn put(&self, id: DestinationId, held: Held) {
        self.lock().insert(id, held);
    }

    /// `flow` with this node's unwritten outcomes added.
    fn add_to(&self, flow: &mut DestinationFlow, now: Millis) {
        if let Some(held) = self.lock().get(&flow.destination_id) {
            flow.outcomes.merge(&held.outcomes, u64::MAX, now);
        }
    }
}

impl PgStore {
    /// Feeds a recorded attempt to its destination's circuit, in the caller's transaction. An
    /// attempt whose delivery or destination is gone changes nothing.
    pub(super) async fn observe_attempt(
        &self,
        conn: &mut PgConnection,
        attempt: &Attempt,
        now: Millis,
    ) -> StoreResult<()> {
        let found: Option<(String, String)> = sqlx::query_as(q::ATTEMPT_DESTINATION)
            .bind(attempt.delivery_id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)?;
        let Some((destination, policy)) = found else {
            return Ok(());
        };
        let destination = DestinationId::from_trusted(destination);
        let policy: CircuitBreakerPolicy =
            serde_json::from_str(&policy).map_err(|e| unreadable("destinations.circuit_breaker", e))?;
        // Most outcomes change nothing but counts held here: decide on a plain read, so the
        // attempts of a busy destination do not queue on its row. A change is decided again
        // on the row read under its lock, so no other node's change is overwritten.
        let mut locked = false;
        for _ in 0..=TRIES {
            let stored = if locked {
                select_flow_locked(conn, &destination).await?
            } else {
                select_flow(conn, &destination).await?
            };
            let mut flow = stored.unwrap_or_else(|| DestinationFlow::new(destination.clone(), now));
            let held = self.unwritten.take(&destination);
            if let Some(held) = &held {
                flow.outcomes.merge(&held.outcomes, policy.window_ms, now);
            }
            let circuit = flow.circuit.clone();
            flow.observe(&policy, &attempt.delivery_id, attempt.outcome, attempt.duration_ms, now);
            let since = held.as_ref().map_or(now, |h| h.since);
            if flow.circuit == circuit && flow.version != 0 && now - since < FLUSH_AFTER_MS {
                let mut held = held.unwrap_or(Held { outcomes: OutcomeWindow::default(), since: now });
                if attempt.outcome != AttemptOutcome::Filtered {
                    held.outcomes.record(
                        policy.window_ms,
                        Signal::of(attempt.outcome),
                        attempt.duration_ms,
                        now,
                    );
                }
                self.unwritten.put(destination, held);
                return Ok(());
            }
            if locked && write_flow(conn, &flow, now).await? {
                return Ok(());
            }
            // Read again (under the lock), keeping what is held.
            locked = true;
            if let Some(held) = held {
                self.unwritten.put(destination.clone(), held);
            }
        }
        Err(lost_race(&destination))
    }
}

#[async_trait]
impl FlowStore for PgStore {
    async fn admit(&self, request: &AdmitRequest<'_>, now: Millis) -> StoreResult<Admission> {
        let id = request.destination_id;
        let admit = |flow: &mut DestinationFlow| {
            flow.admit(request.candidates, request.rate_limit, request.probe_until, now)
        };
        // Most answers change nothing (a closed circuit without a rate limit, an open one
        // before its probe time): decide on a read, and lock the row only to change it.
        let mut reader = self.pool.acquire().await.map_err(map_err)?;
        let stored = select_flow(&mut reader, id).await?;
        drop(reader);
        let mut flow = stored.clone().unwrap_or_else(|| DestinationFlow::new(id.clone(), now));
        let admission = admit(&mut flow);
        if stored.as_ref().unwrap_or(&DestinationFlow::new(id.clone(), now)) == &flow {
            return Ok(admission);
        }
        let mut tx = self.begin_write().await?;
        for _ in 0..TRIES {
            let Some(mut flow) = load_or_create(&mut tx, id, now).await? else {
                // The destination is gone: its attempts record why nothing can be sent.
                tx.rollback().await.map_err(map_err)?;
                return Ok(Admission {
                    admitted: request.candidates.len(),
                    probe: false,
                    deferred: Vec::new(),
                });
            };
            let admission = admit(&mut flow);
            if write_flow(&mut tx, &flow, now).await? {
                tx.commit().await.map_err(map_err)?;
                return Ok(admission);
            }
        }
        tx.rollback().await.map_err(map_err)?;
        Err(lost_race(id))
    }

    async fn defer_deliveries(&self, owner: &str, deferrals: &[Deferral], now: Millis) -> StoreResult<u64> {
        if deferrals.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut deferred = 0;
        for deferral in deferrals {
            deferred += sqlx::query(q::DEFER_DELIVERY)
                .bind(deferral.until)
                .bind(now)
                .bind(deferral.delivery_id.as_str())
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
        }
        tx.commit().await.map_err(map_err)?;
        Ok(deferred)
    }

    async fn destination_flow(&self, id: &DestinationId) -> StoreResult<Option<DestinationFlow>> {
        let mut reader = self.pool.acquire().await.map_err(map_err)?;
        let mut flow = select_flow(&mut reader, id).await?;
        if let Some(flow) = &mut flow {
            self.unwritten.add_to(flow, now_millis());
        }
        Ok(flow)
    }

    async fn next_unblock_at(&self, now: Millis) -> StoreResult<Option<Millis>> {
        sqlx::query_scalar::<_, Option<i64>>(q::NEXT_UNBLOCK_AT)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }
}
