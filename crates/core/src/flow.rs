//! Flow control of a destination: its circuit breaker, its recent outcomes and its rate-limit
//! bucket, kept together by the store (one record per destination, shared by every node), and
//! the store trait that admits deliveries through them.
//!
//! The engine asks [`FlowStore::admit`] before sending what it claimed: a closed circuit with
//! tokens lets deliveries through; otherwise they are handed back with
//! [`FlowStore::defer_deliveries`], due again when they may go, without an attempt and without
//! touching their attempt budget. The outcome of every attempt reaches the circuit through
//! `DeliveryStore::record_attempt`, in the transaction that records the attempt.

use async_trait::async_trait;
use serde::Serialize;

use crate::circuit::{Circuit, CircuitState, Gate, OutcomeWindow, Signal, Transition};
use crate::delivery::AttemptOutcome;
use crate::destination::{CircuitBreakerPolicy, RateLimit};
use crate::id::{DeliveryId, DestinationId};
use crate::rate::TokenBucket;
use crate::store::StoreResult;
use crate::time::{self, Millis};

/// How long deliveries that found a probe in flight wait before asking again. Short, so the
/// backlog moves soon after the probe closes the circuit; a claim that skips blocked
/// destinations does not claim them meanwhile.
pub const PROBE_RECHECK_MS: Millis = 250;

/// The flow-control record of one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationFlow {
    pub destination_id: DestinationId,
    pub circuit: Circuit,
    pub outcomes: OutcomeWindow,
    /// `None` until a rate-limited delivery first asks (the bucket starts full).
    pub bucket: Option<TokenBucket>,
    /// While the bucket is empty: when its next token comes.
    pub rate_blocked_until: Option<Millis>,
    /// The stored row's version (updates are optimistic); 0 for a record not stored yet.
    pub version: i64,
    pub updated_at: Millis,
}

/// Which of the deliveries asked about may be sent now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// How many of the candidates, from the first, may go now.
    pub admitted: usize,
    /// Whether the first of them is the circuit's half-open probe.
    pub probe: bool,
    /// When each of the others may ask again, in candidate order.
    pub deferred: Vec<Millis>,
}

impl DestinationFlow {
    pub fn new(destination_id: DestinationId, now: Millis) -> Self {
        Self {
            destination_id,
            circuit: Circuit::default(),
            outcomes: OutcomeWindow::default(),
            bucket: None,
            rate_blocked_until: None,
            version: 0,
            updated_at: now,
        }
    }

    /// Decides which of `candidates` (deliveries of this destination, in claim order) go now:
    /// the circuit first (everything when closed, the first as probe when its cool-down is
    /// over, nothing while open), then one token each. A probe started here holds the circuit
    /// until `probe_until`. The others are told when to ask again: the probe time while open,
    /// shortly while a probe is out, and one token interval apart while the bucket refills.
    pub fn admit(
        &mut self,
        candidates: &[DeliveryId],
        rate_limit: Option<&RateLimit>,
        probe_until: Millis,
        now: Millis,
    ) -> Admission {
        let Some(first) = candidates.first() else {
            return Admission::default();
        };
        let n = candidates.len();
        let recheck = now.saturating_add(PROBE_RECHECK_MS);
        let (allowance, probe) = match self.circuit.peek(first, now) {
            Gate::Pass => (n, false),
            Gate::Probe => (1, true),
            Gate::WaitUntil(until) => {
                let until = match self.circuit.state {
                    CircuitState::HalfOpen => until.min(recheck),
                    CircuitState::Open | CircuitState::Closed => until,
                };
                return Admission { admitted: 0, probe: false, deferred: vec![until; n] };
            }
        };
        let (granted, bucket) = match rate_limit {
            None => {
                self.bucket = None;
                self.rate_blocked_until = None;
                (allowance, None)
            }
            Some(limit) => {
                let bucket = self.bucket.get_or_insert_with(|| TokenBucket::full(limit, now));
                let granted = bucket.take(limit, allowance, now);
                self.rate_blocked_until = bucket.empty_until(limit);
                (granted, Some((*bucket, limit)))
            }
        };
        if probe && granted == 1 {
            self.circuit.start_probe(first, probe_until);
        }
        let waiting_for_probe = probe_until.min(recheck).max(now + 1);
        let deferred = (granted..n)
            .map(|i| match bucket {
                Some((bucket, limit)) if i < allowance => {
                    bucket.time_for(limit, u32::try_from(i - granted + 1).unwrap_or(u32::MAX))
                }
                _ => waiting_for_probe,
            })
            .collect();
        Admission { admitted: granted, probe: probe && granted == 1, deferred }
    }

    /// Feeds the outcome of an attempt at `delivery` (it took `duration_ms`, ended at `now`).
    /// A filtered delivery sent nothing: it stays out of the window, but releases the probe
    /// if it was one.
    pub fn observe(
        &mut self,
        policy: &CircuitBreakerPolicy,
        delivery: &DeliveryId,
        outcome: AttemptOutcome,
        duration_ms: u64,
        now: Millis,
    ) -> Option<Transition> {
        let signal = Signal::of(outcome);
        if outcome != AttemptOutcome::Filtered {
            self.outcomes.record(policy.window_ms, signal, duration_ms, now);
        }
        let totals = self.outcomes.totals(policy.window_ms, now);
        self.circuit.observe(policy, signal, delivery, now, totals)
    }

    /// Until when no new delivery of this destination may go (circuit open, probe out, or no
    /// token): what a claim may skip on.
    pub fn blocked_until(&self, now: Millis) -> Option<Millis> {
        let rate = self.rate_blocked_until.filter(|at| *at > now);
        match (self.circuit.blocked_until(now), rate) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A change of a destination's circuit that operators are told of: it opened from closed, or
/// its probe closed it. A failed probe reopens the same opening and is no change here, so one
/// opening is one `Opened` and at most one `Closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitChange {
    pub destination_id: DestinationId,
    /// `Open` or `Closed`: the state it changed to.
    pub state: CircuitState,
    /// When the attempt that changed it was recorded.
    pub at: Millis,
    /// When this opening began.
    pub opened_at: Option<Millis>,
    /// Why it opened (for a close: why it last opened).
    pub reason: Option<String>,
    /// While open: when the probe may go, and the cool-down that leads there.
    pub retry_at: Option<Millis>,
    pub cooldown_ms: u64,
    /// The attempts, and the failed ones, of the breaker's window when it changed.
    pub window_attempts: u64,
    pub window_failed: u64,
}

impl CircuitChange {
    /// The change `transition` made to `flow` (its record after it), which held `before`
    /// until then; `None` for transitions operators are not told of.
    pub fn of(
        transition: &Transition,
        before: &Circuit,
        flow: &DestinationFlow,
        policy: &CircuitBreakerPolicy,
        at: Millis,
    ) -> Option<Self> {
        let (opened_at, reason) = match transition {
            Transition::Opened(_) => (flow.circuit.opened_at, flow.circuit.reason.clone()),
            Transition::Closed => (before.opened_at, before.reason.clone()),
            Transition::Reopened { .. } | Transition::ProbeReleased => return None,
        };
        let totals = flow.outcomes.totals(policy.window_ms, at);
        Some(Self {
            destination_id: flow.destination_id.clone(),
            state: flow.circuit.state,
            at,
            opened_at,
            reason,
            retry_at: flow.circuit.retry_at,
            cooldown_ms: flow.circuit.cooldown_ms,
            window_attempts: totals.attempts(),
            window_failed: totals.failed,
        })
    }
}

/// `GET /v1/destinations/{id}/health`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DestinationHealth {
    pub destination_id: DestinationId,
    pub circuit: CircuitView,
    /// Succeeded attempts over all attempts in the window; null without attempts.
    pub success_rate: Option<f64>,
    /// Attempt durations over the window (histogram estimates, within about 10 %).
    pub latency_ms: LatencyView,
    /// The window: the circuit breaker's `window_ms`.
    pub window_ms: u64,
    /// Attempts that ended in the window.
    pub attempts: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CircuitView {
    pub state: CircuitState,
    /// When the circuit last left `closed`; null while closed.
    #[serde(with = "time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opened_at: Option<Millis>,
    /// Why it opened; null while closed.
    pub reason: Option<String>,
    /// While open: when the half-open probe may go.
    #[serde(with = "time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_probe_at: Option<Millis>,
    /// Failures in a row since the last success, while closed.
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LatencyView {
    pub p50: Option<u64>,
    pub p99: Option<u64>,
}

impl DestinationHealth {
    /// The health of `destination_id` from its flow record (`None`: nothing recorded yet).
    pub fn of(
        destination_id: DestinationId,
        flow: Option<&DestinationFlow>,
        policy: &CircuitBreakerPolicy,
        now: Millis,
    ) -> Self {
        let empty = DestinationFlow::new(destination_id.clone(), now);
        let flow = flow.unwrap_or(&empty);
        let window_ms = policy.window_ms;
        let totals = flow.outcomes.totals(window_ms, now);
        let circuit = &flow.circuit;
        Self {
            destination_id,
            circuit: CircuitView {
                state: circuit.state,
                opened_at: circuit.opened_at,
                reason: circuit.reason.clone(),
                next_probe_at: circuit.retry_at.filter(|_| circuit.state == CircuitState::Open),
                consecutive_failures: circuit.consecutive_failures,
            },
            success_rate: totals.success_rate(),
            latency_ms: LatencyView {
                p50: flow.outcomes.latency_quantile(window_ms, now, 0.5),
                p99: flow.outcomes.latency_quantile(window_ms, now, 0.99),
            },
            window_ms,
            attempts: totals.attempts(),
        }
    }
}

/// What the engine asks before sending deliveries of one destination.
#[derive(Debug, Clone, Copy)]
pub struct AdmitRequest<'a> {
    pub destination_id: &'a DestinationId,
    /// Claimed deliveries of the destination, in claim order.
    pub candidates: &'a [DeliveryId],
    pub rate_limit: Option<&'a RateLimit>,
    /// Until when a probe started by this request holds the half-open circuit: no later than
    /// its delivery's lease, and past the longest its attempt can take.
    pub probe_until: Millis,
}

/// A claimed delivery handed back to wait, without an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub delivery_id: DeliveryId,
    pub until: Millis,
}

/// Flow control in the store, shared by every node.
///
/// Rules every implementation keeps:
/// - `admit` reads and writes a destination's record atomically (under the write lock, or an
///   optimistic version check), so two nodes never both take the half-open probe or the same
///   token.
/// - `DeliveryStore::record_attempt` feeds the attempt's outcome to the destination's circuit
///   in the transaction that records the attempt; a probe's success closes the circuit there.
#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Runs [`DestinationFlow::admit`] on the stored record. Writes only when something
    /// changes (a token taken, a probe started). A destination that no longer exists admits
    /// everything (its attempt then records why it cannot be sent).
    async fn admit(&self, request: &AdmitRequest<'_>, now: Millis) -> StoreResult<Admission>;
    /// Hands claimed deliveries back as `pending`, due at their `until`, if `owner` still holds
    /// their leases: no attempt is recorded and `attempt_count` stays. Answers how many.
    async fn defer_deliveries(&self, owner: &str, deferrals: &[Deferral], now: Millis) -> StoreResult<u64>;
    async fn destination_flow(&self, id: &DestinationId) -> StoreResult<Option<DestinationFlow>>;
    /// Every stored flow record, in one read.
    async fn destination_flows(&self) -> StoreResult<Vec<DestinationFlow>>;
    /// The earliest instant after `now` at which a blocked destination unblocks.
    async fn next_unblock_at(&self, now: Millis) -> StoreResult<Option<Millis>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 1_700_000_000_000;

    fn ids(n: usize) -> Vec<DeliveryId> {
        (0..n).map(|i| DeliveryId::from_trusted(format!("dlv_{i}"))).collect()
    }

    fn policy() -> CircuitBreakerPolicy {
        CircuitBreakerPolicy { consecutive_failures: 2, cooldown_ms: 1_000, ..Default::default() }
    }

    #[test]
    fn a_closed_circuit_without_a_limit_admits_everything() {
        let mut flow = DestinationFlow::new(DestinationId::from_trusted("dst_1"), T);
        let admission = flow.admit(&ids(3), None, T + 60_000, T);
        assert_eq!(admission, Admission { admitted: 3, probe: false, deferred: vec![] });
        assert_eq!(flow.blocked_until(T), None);
    }

    #[test]
    fn tokens_admit_a_burst_and_stagger_the_rest() {
        let limit = RateLimit { per_second: 5, burst: Some(2) };
        let mut flow = DestinationFlow::new(DestinationId::from_trusted("dst_1"), T);
        let admission = flow.admit(&ids(5), Some(&limit), T + 60_000, T);
        assert_eq!(admission.admitted, 2);
        assert_eq!(admission.deferred, [T + 200, T + 400, T + 600]);
        assert_eq!(flow.blocked_until(T), Some(T + 200));
        assert_eq!(flow.admit(&ids(1), Some(&limit), T + 60_000, T + 200).admitted, 1);
    }

    #[test]
    fn an_open_circuit_defers_until_the_probe_which_goes_alone() {
        let mut flow = DestinationFlow::new(DestinationId::from_trusted("dst_1"), T);
        let d = ids(4);
        flow.observe(&policy(), &d[0], AttemptOutcome::Retryable, 5, T);
        let opened = flow.observe(&policy(), &d[0], AttemptOutcome::Retryable, 5, T + 10);
        assert!(matches!(opened, Some(Transition::Opened(_))));
        assert_eq!(flow.admit(&d, None, T + 60_000, T + 20).deferred, vec![T + 1_010; 4]);
        assert_eq!(flow.blocked_until(T + 20), Some(T + 1_010));

        let at = T + 1_010;
        let admission = flow.admit(&d[1..], None, at + 5_000, at);
        assert_eq!(admission.admitted, 1);
        assert!(admission.probe);
        assert_eq!(admission.deferred, vec![at + PROBE_RECHECK_MS; 2]);
        // Another node asking meanwhile gets nothing; the probe's verdict closes the circuit.
        assert_eq!(flow.admit(&d[2..], None, at + 5_000, at + 1).admitted, 0);
        assert_eq!(
            flow.observe(&policy(), &d[1], AttemptOutcome::Succeeded, 5, at + 50),
            Some(Transition::Closed)
        );
        assert_eq!(flow.admit(&d, None, at + 5_000, at + 60).admitted, 4);
    }

    #[test]
    fn a_probe_without_a_token_is_not_started() {
        let limit = RateLimit { per_second: 1, burst: Some(1) };
        let policy = CircuitBreakerPolicy { cooldown_ms: 500, ..policy() };
        let mut flow = DestinationFlow::new(DestinationId::from_trusted("dst_1"), T);
        let d = ids(2);
        assert_eq!(flow.admit(&d[..1], Some(&limit), T + 60_000, T).admitted, 1);
        flow.observe(&policy, &d[0], AttemptOutcome::Retryable, 5, T);
        flow.observe(&policy, &d[0], AttemptOutcome::Retryable, 5, T);
        // The cool-down ends before the next token: nobody probes, the circuit stays open.
        let admission = flow.admit(&d, Some(&limit), T + 60_000, T + 500);
        assert_eq!(admission, Admission { admitted: 0, probe: false, deferred: vec![T + 1_000, T + 750] });
        assert_eq!(flow.circuit.state, CircuitState::Open);
        let admission = flow.admit(&d, Some(&limit), T + 60_000, T + 1_000);
        assert_eq!((admission.admitted, admission.probe), (1, true));
        assert_eq!(flow.circuit.state, CircuitState::HalfOpen);
    }

    #[test]
    fn health_reports_the_window_and_the_circuit() {
        let mut flow = DestinationFlow::new(DestinationId::from_trusted("dst_1"), T);
        let d = ids(1);
        flow.observe(&policy(), &d[0], AttemptOutcome::Succeeded, 10, T);
        flow.observe(&policy(), &d[0], AttemptOutcome::Retryable, 100, T);
        flow.observe(&policy(), &d[0], AttemptOutcome::Retryable, 100, T);
        let health = DestinationHealth::of(flow.destination_id.clone(), Some(&flow), &policy(), T);
        assert_eq!(health.circuit.state, CircuitState::Open);
        assert_eq!(health.circuit.reason.as_deref(), Some("2 consecutive failures"));
        assert_eq!(health.circuit.opened_at, Some(T));
        assert_eq!(health.circuit.next_probe_at, Some(T + 1_000));
        assert_eq!(health.attempts, 3);
        assert!((health.success_rate.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(health.latency_ms.p99, Some(98));
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(json["circuit"]["state"], "open");
        assert_eq!(json["circuit"]["opened_at"], "2023-11-14T22:13:20.000Z");
    }
}
