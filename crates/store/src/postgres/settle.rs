//! Group settle: the attempts recorded by calls that arrive together go into one transaction.
//!
//! Recording an attempt alone cost a transaction of about six statements (settle, promote the
//! next of its key, insert the attempt, find its destination, read and maybe lock and write
//! the destination's flow record), each a round trip. One task takes whatever calls are queued
//! (up to a bound) and records them all with a few array-bound statements
//! (`sql::settle`): one settles every delivery whose lease its caller still holds, one numbers
//! and inserts their attempts, one promotes the next delivery of the ordered keys that settled
//! for good. The outcomes of one destination are folded into one decision on its flow record
//! ([`crate::repo::observe`]), read plainly for all destinations at once and written, when
//! something changed, under the row's lock with its version check, as one attempt would: one
//! write per destination per group, in the order of their ids, so groups of several nodes
//! lock the rows they share in the same order.
//!
//! Every caller is answered after the commit that holds its write, and what it wrote is
//! visible to no one before. A call whose lease was lost writes nothing and is answered
//! `false`. Two calls for one delivery never share a group: the later waits for the next
//! one, so it sees what the first wrote, as it would one by one.
//!
//! If the group's transaction fails, each of its calls runs again alone in a transaction of
//! its own, so one call's failure is its own. Nothing of the failed group was committed; a
//! commit whose answer was lost leaves deliveries settled, whose calls run again then find no
//! lease and answer `false`, as a late call would.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres, Transaction};
use switchyard_core::delivery::{Attempt, NextStep};
use switchyard_core::destination::CircuitBreakerPolicy;
use switchyard_core::flow::{CircuitChange, DestinationFlow};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::store::{Recorded, StoreError, StoreResult};
use switchyard_core::time::Millis;
use tokio::sync::{mpsc, oneshot};

use super::PgStore;
use crate::error::map_err;
use crate::gather::let_ready_callers_queue;
use crate::repo::{
    Kept, Observed, Repo, TRIES, Taken, Unwritten, attempt_destination, lost_race, observe, settle_to,
};
use crate::rows::flow::FlowRow;
use crate::rows::u64_to_i64;
use crate::sql::flow::SELECT_FLOW_FOR_UPDATE;
use crate::sql::settle as q;

/// Calls waiting for the writer, at most; further callers wait to enqueue.
const QUEUE: usize = 256;
/// Calls in one transaction, at most, so one commit stays short for those in it.
const MAX_CALLS: usize = 256;

/// One `record_attempt`, its values checked and converted before it is queued, so that what
/// the group binds cannot fail for one call.
struct Call {
    owner: String,
    attempt: Attempt,
    next: NextStep,
    duration_ms: i64,
    now: Millis,
    answer: oneshot::Sender<StoreResult<Recorded>>,
}

/// The queue in front of the settle task. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct SettleGroup {
    queue: mpsc::Sender<Call>,
}

impl SettleGroup {
    /// Starts the settle task on `pool`, feeding outcomes to the circuits with `unwritten`
    /// (the store's); it ends when the last clone of the returned queue is dropped.
    pub(super) fn start(pool: PgPool, unwritten: Unwritten) -> SettleGroup {
        let (queue, calls) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, unwritten, calls));
        SettleGroup { queue }
    }

    /// Records `attempt` and moves its delivery to `next` in the next group transaction, if
    /// `owner` still holds its lease; answers whether it did, and the circuit change the
    /// attempt made, once that transaction ended.
    pub(super) async fn record(
        &self,
        owner: &str,
        attempt: &Attempt,
        next: NextStep,
        now: Millis,
    ) -> StoreResult<Recorded> {
        let duration_ms = u64_to_i64("duration_ms", attempt.duration_ms)?;
        let (answer, answered) = oneshot::channel();
        let call = Call { owner: owner.to_owned(), attempt: attempt.clone(), next, duration_ms, now, answer };
        self.queue.send(call).await.map_err(|_| not_run())?;
        answered.await.map_err(|_| not_run())?
    }
}

fn not_run() -> StoreError {
    StoreError::Backend("the attempt was not recorded: the settle task has stopped".into())
}

async fn run(pool: PgPool, unwritten: Unwritten, mut calls: mpsc::Receiver<Call>) {
    let mut carried = Vec::new();
    while let Some(mut group) = next_group(&mut calls, &mut carried).await {
        match write(&pool, &unwritten, &group).await {
            Ok(settled) => {
                for (call, settled) in group.into_iter().zip(settled) {
                    let _ = call.answer.send(Ok(settled));
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(call) = group.pop() {
                    let _ = call.answer.send(Err(error));
                }
            }
            Err(error) => {
                tracing::warn!(%error, calls = group.len(), "a group settle failed; its calls run again one by one");
                for call in group {
                    let alone =
                        write(&pool, &unwritten, std::slice::from_ref(&call)).await.and_then(|settled| {
                            settled
                                .into_iter()
                                .next()
                                .ok_or_else(|| StoreError::Backend("a settle answered nothing".into()))
                        });
                    let _ = call.answer.send(alone);
                }
            }
        }
    }
}

/// The next group: the calls carried over from the last one first, then the first call to
/// come and whatever is queued behind it once ready callers had their turns, up to the
/// bound. A call for a delivery the group
/// holds already is carried over to the next group. `None` once no caller is left.
async fn next_group(calls: &mut mpsc::Receiver<Call>, carried: &mut Vec<Call>) -> Option<Vec<Call>> {
    let mut group = Vec::new();
    let mut deliveries = HashSet::new();
    let mut admit = |call: Call, group: &mut Vec<Call>, carried: &mut Vec<Call>| {
        if group.len() < MAX_CALLS && deliveries.insert(call.attempt.delivery_id.clone()) {
            group.push(call);
        } else {
            carried.push(call);
        }
    };
    for call in std::mem::take(carried) {
        admit(call, &mut group, carried);
    }
    if group.is_empty() {
        let first = calls.recv().await?;
        admit(first, &mut group, carried);
        let_ready_callers_queue().await;
    }
    while group.len() < MAX_CALLS {
        let Ok(call) = calls.try_recv() else { break };
        admit(call, &mut group, carried);
    }
    Some(group)
}

/// A delivery the group settled, as `SETTLE_DELIVERIES` answers it.
struct Settled {
    destination: String,
    ordered: bool,
    /// Its destination's circuit breaker policy; `None` when the destination is gone.
    policy: Option<String>,
}

/// Records the attempts of `calls` in one transaction; answers, call by call, whether its
/// owner held the lease (and so whether anything was written for it) and the circuit change
/// its attempt made.
async fn write(pool: &PgPool, unwritten: &Unwritten, calls: &[Call]) -> StoreResult<Vec<Recorded>> {
    let mut tx: Transaction<'static, Postgres> = pool.begin().await.map_err(map_err)?;
    let settled = settle_deliveries(&mut tx, calls).await?;
    let recorded: Vec<&Call> =
        calls.iter().filter(|call| settled.contains_key(call.attempt.delivery_id.as_str())).collect();
    if recorded.is_empty() {
        tx.rollback().await.map_err(map_err)?;
        return Ok(vec![Recorded::default(); calls.len()]);
    }
    insert_attempts(&mut tx, &recorded).await?;
    promote_next(&mut tx, &recorded, &settled).await?;
    let observations = observe_outcomes(&mut tx, unwritten, &recorded, &settled).await?;
    tx.commit().await.map_err(map_err)?;
    let mut changes = observations.written();
    Ok(calls
        .iter()
        .map(|call| Recorded {
            settled: settled.contains_key(call.attempt.delivery_id.as_str()),
            circuit: changes.remove(&call.attempt.delivery_id),
        })
        .collect())
}

/// Settles every delivery of `calls` whose lease its caller holds; answers those, by id.
async fn settle_deliveries(conn: &mut PgConnection, calls: &[Call]) -> StoreResult<HashMap<String, Settled>> {
    let n = calls.len();
    let (mut ids, mut owners, mut statuses) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut due, mut errors, mut at) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    // In the order of their ids, the order the rows are locked in, so that groups of two
    // nodes that share a delivery (a lease expired and taken over) do not wait on each other.
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_unstable_by(|a, b| a.attempt.delivery_id.as_str().cmp(b.attempt.delivery_id.as_str()));
    for call in sorted {
        let (status, next_attempt_at) = settle_to(call.next);
        ids.push(call.attempt.delivery_id.as_str());
        owners.push(call.owner.as_str());
        statuses.push(status.as_str());
        due.push(next_attempt_at);
        errors.push(match call.next {
            NextStep::Succeeded | NextStep::Filtered => None,
            NextStep::RetryAt(_) | NextStep::Dead => call.attempt.error.as_deref(),
        });
        at.push(call.now);
    }
    let rows: Vec<(String, String, bool, Option<String>)> = sqlx::query_as(q::SETTLE_DELIVERIES)
        .bind(ids)
        .bind(owners)
        .bind(statuses)
        .bind(due)
        .bind(errors)
        .bind(at)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(rows
        .into_iter()
        .map(|(id, destination, ordered, policy)| (id, Settled { destination, ordered, policy }))
        .collect())
}

/// Inserts the attempt of every call in `recorded`, each numbered after its delivery's last.
async fn insert_attempts(conn: &mut PgConnection, recorded: &[&Call]) -> StoreResult<()> {
    let attempts = recorded.iter().map(|call| &call.attempt);
    sqlx::query(q::INSERT_ATTEMPTS)
        .bind(attempts.clone().map(|a| a.delivery_id.as_str()).collect::<Vec<_>>())
        .bind(attempts.clone().map(|a| a.started_at).collect::<Vec<_>>())
        .bind(recorded.iter().map(|call| call.duration_ms).collect::<Vec<_>>())
        .bind(attempts.clone().map(|a| a.outcome.as_str()).collect::<Vec<_>>())
        .bind(attempts.clone().map(|a| a.status_code.map(i64::from)).collect::<Vec<_>>())
        .bind(attempts.clone().map(|a| a.error.as_deref()).collect::<Vec<_>>())
        .bind(attempts.map(|a| a.response_body.as_deref()).collect::<Vec<_>>())
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Makes due the next delivery of each ordered key whose delivery settled for good; nothing
/// when no ordered delivery settled (a retry keeps its key's turn).
async fn promote_next(
    conn: &mut PgConnection,
    recorded: &[&Call],
    settled: &HashMap<String, Settled>,
) -> StoreResult<()> {
    let (ids, at): (Vec<&str>, Vec<Millis>) = recorded
        .iter()
        .filter(|call| !matches!(call.next, NextStep::RetryAt(_)))
        .filter(|call| settled.get(call.attempt.delivery_id.as_str()).is_some_and(|s| s.ordered))
        .map(|call| (call.attempt.delivery_id.as_str(), call.now))
        .unzip();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(q::PROMOTE_NEXT_OF_EACH).bind(ids).bind(at).execute(conn).await.map_err(map_err)?;
    Ok(())
}

/// The attempts of one destination in a group, in call order, with its policy.
struct OfDestination<'a> {
    policy: CircuitBreakerPolicy,
    attempts: Vec<(&'a Attempt, Millis)>,
}

/// What the group did to the held outcomes, settled once its transaction ended.
#[derive(Default)]
struct Observations {
    taken: Vec<Taken>,
    kept: Vec<Kept>,
    /// The circuit changes of the records written, by the delivery whose attempt made each.
    changes: HashMap<DeliveryId, CircuitChange>,
}

impl Observations {
    /// The transaction committed: the held outcomes are settled and the changes stand.
    fn written(self) -> HashMap<DeliveryId, CircuitChange> {
        self.taken.into_iter().for_each(Taken::written);
        self.kept.into_iter().for_each(Kept::written);
        self.changes
    }

    /// The record to write, with the changes it makes, if `observed` says to write one.
    fn add(&mut self, observed: Observed) -> Option<(DestinationFlow, Vec<(DeliveryId, CircuitChange)>)> {
        match observed {
            Observed::Held(kept) => {
                self.kept.push(kept);
                None
            }
            Observed::Write(flow, taken, changes) => {
                self.taken.push(taken);
                Some((flow, changes))
            }
        }
    }
}

/// Feeds the outcomes recorded by `recorded` to their destinations' circuits, one decision
/// per destination: on a plain read of every record first, and again under the record's lock
/// when that one changes something. An attempt whose destination is gone changes nothing.
async fn observe_outcomes(
    conn: &mut PgConnection,
    unwritten: &Unwritten,
    recorded: &[&Call],
    settled: &HashMap<String, Settled>,
) -> StoreResult<Observations> {
    // Ordered by id: the order the records are locked in.
    let mut destinations: BTreeMap<&str, OfDestination<'_>> = BTreeMap::new();
    for call in recorded {
        let Some(Settled { destination, policy: Some(policy), .. }) =
            settled.get(call.attempt.delivery_id.as_str())
        else {
            continue;
        };
        let of = match destinations.get_mut(destination.as_str()) {
            Some(of) => of,
            None => {
                let (_, policy) = attempt_destination(destination.clone(), policy)?;
                destinations
                    .entry(destination.as_str())
                    .or_insert(OfDestination { policy, attempts: Vec::new() })
            }
        };
        of.attempts.push((&call.attempt, call.now));
    }
    let mut observations = Observations::default();
    if destinations.is_empty() {
        return Ok(observations);
    }
    let ids: Vec<&str> = destinations.keys().copied().collect();
    let rows = sqlx::query_as::<_, FlowRow>(q::SELECT_FLOWS)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let flow = DestinationFlow::try_from(row)?;
        stored.insert(flow.destination_id.clone(), flow);
    }
    for (id, of) in destinations {
        let destination = DestinationId::from_trusted(id.to_owned());
        let read = stored.remove(&destination);
        let now = of.attempts.iter().map(|(_, at)| *at).max().unwrap_or_default();
        match observe(unwritten, read, &destination, &of.policy, &of.attempts, now) {
            Observed::Held(kept) => observations.kept.push(kept),
            // Decided again under the lock; `taken` puts back what was held meanwhile.
            Observed::Write(_, taken, _) => {
                drop(taken);
                write_locked(conn, unwritten, &destination, &of, now, &mut observations).await?;
            }
        }
    }
    Ok(observations)
}

/// Decides on the record of `destination` read under its lock and writes it over the version
/// read, as often as another node's change comes between (only a record created concurrently,
/// with no row to lock yet, ever does).
async fn write_locked(
    conn: &mut PgConnection,
    unwritten: &Unwritten,
    destination: &DestinationId,
    of: &OfDestination<'_>,
    now: Millis,
    observations: &mut Observations,
) -> StoreResult<()> {
    for _ in 0..TRIES {
        let stored = Repo::<PgStore>::select_flow(conn, SELECT_FLOW_FOR_UPDATE, destination).await?;
        let observed = observe(unwritten, stored, destination, &of.policy, &of.attempts, now);
        let Some((flow, changes)) = observations.add(observed) else {
            return Ok(());
        };
        if Repo::<PgStore>::write_flow(conn, &flow, now).await? {
            observations.changes.extend(changes);
            return Ok(());
        }
        // Not written: what it took goes back before the next read.
        drop(observations.taken.pop());
    }
    Err(lost_race(destination))
}

#[cfg(test)]
mod tests {
    use switchyard_core::delivery::AttemptOutcome;

    use super::*;

    fn call(delivery: &DeliveryId) -> (Call, oneshot::Receiver<StoreResult<Recorded>>) {
        let attempt = Attempt {
            delivery_id: delivery.clone(),
            number: 0,
            started_at: 0,
            duration_ms: 1,
            outcome: AttemptOutcome::Succeeded,
            status_code: Some(200),
            error: None,
            response_body: None,
        };
        let (answer, answered) = oneshot::channel();
        let call =
            Call { owner: "n".into(), attempt, next: NextStep::Succeeded, duration_ms: 1, now: 0, answer };
        (call, answered)
    }

    fn ids(group: &[Call]) -> Vec<DeliveryId> {
        group.iter().map(|call| call.attempt.delivery_id.clone()).collect()
    }

    /// A second call for a delivery waits for the next group, in the order it came, and the
    /// calls queued behind it still join the first.
    #[tokio::test]
    async fn calls_for_one_delivery_go_in_successive_groups() {
        let (queue, mut calls) = mpsc::channel(QUEUE);
        let (a, b) = (DeliveryId::generate(), DeliveryId::generate());
        let mut waiting = Vec::new();
        for id in [&a, &a, &b, &a] {
            let (call, answered) = call(id);
            queue.send(call).await.unwrap();
            waiting.push(answered);
        }
        let mut carried = Vec::new();
        let first = next_group(&mut calls, &mut carried).await.unwrap();
        assert_eq!(ids(&first), [a.clone(), b.clone()]);
        let second = next_group(&mut calls, &mut carried).await.unwrap();
        assert_eq!(ids(&second), std::slice::from_ref(&a));
        let third = next_group(&mut calls, &mut carried).await.unwrap();
        assert_eq!(ids(&third), std::slice::from_ref(&a));
        drop(queue);
        assert!(next_group(&mut calls, &mut carried).await.is_none(), "no caller is left");
    }

    #[tokio::test]
    async fn a_group_holds_at_most_the_bound() {
        let (queue, mut calls) = mpsc::channel(MAX_CALLS + 10);
        let mut waiting = Vec::new();
        for _ in 0..MAX_CALLS + 10 {
            let (call, answered) = call(&DeliveryId::generate());
            queue.send(call).await.unwrap();
            waiting.push(answered);
        }
        let mut carried = Vec::new();
        assert_eq!(next_group(&mut calls, &mut carried).await.unwrap().len(), MAX_CALLS);
        assert_eq!(next_group(&mut calls, &mut carried).await.unwrap().len(), 10);
    }
}
