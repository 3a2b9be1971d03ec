//! The circuit breaker of one destination: a pure state machine driven by attempt outcomes and
//! the clock. The store keeps one per destination and moves it under its write lock, so every
//! node of a deployment sees and drives the same circuit.
//!
//! ```text
//!          consecutive_failures in a row, or failure_ratio of ≥ min_requests in window_ms
//!   closed ──────────────────────────────────────────────────────────────────────────► open
//!     ▲                                                                              │  ▲
//!     │ the probe succeeds                          cool-down over: one delivery     │  │ the probe fails:
//!     │                                             takes the probe lease            ▼  │ cool-down × 2, capped
//!     └───────────────────────────────────────────────────────────────────────── half_open
//! ```
//!
//! While open, nothing is sent and no attempt is used: deliveries wait until the probe time.
//! Half-open lets exactly one delivery through (the probe, under a lease that expires if its
//! node dies); every other delivery waits for its verdict.

mod window;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use window::{OutcomeWindow, WindowTotals};

use crate::delivery::AttemptOutcome;
use crate::destination::CircuitBreakerPolicy;
use crate::id::DeliveryId;
use crate::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Deliveries flow.
    Closed,
    /// Nothing is sent until the cool-down ends.
    Open,
    /// One probe is (or may be) in flight; the rest wait for its verdict.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Closed, Self::Open, Self::HalfOpen].into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one attempt says about whether the destination is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Success,
    /// A timeout, a connection failure, or an answer worth retrying (5xx, 408, 425, 429).
    Failure,
    /// A permanent failure: the destination refused one message (or the hub could not build
    /// it), which says nothing about whether it is up; or nothing was sent (filtered out).
    Neutral,
}

impl Signal {
    pub fn of(outcome: AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Succeeded => Self::Success,
            AttemptOutcome::Retryable => Self::Failure,
            AttemptOutcome::Permanent | AttemptOutcome::Filtered => Self::Neutral,
        }
    }
}

/// Why a circuit opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripReason {
    ConsecutiveFailures { failures: u32 },
    FailureRatio { failed: u64, total: u64, window_ms: u64 },
    ProbeFailed,
}

impl fmt::Display for TripReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsecutiveFailures { failures } => write!(f, "{failures} consecutive failures"),
            Self::FailureRatio { failed, total, window_ms } => {
                write!(f, "{failed} of {total} attempts failed in the last {window_ms} ms")
            }
            Self::ProbeFailed => f.write_str("the half-open probe failed"),
        }
    }
}

/// The lease of the one delivery allowed through a half-open circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub delivery_id: DeliveryId,
    /// After this the lease is void (its node died or hangs) and another delivery may probe.
    pub until: Millis,
}

/// A change of state, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Opened(TripReason),
    /// The probe failed: open again, for `cooldown_ms`.
    Reopened {
        cooldown_ms: u64,
    },
    Closed,
    /// The probe ended with a neutral outcome: another delivery may probe at once.
    ProbeReleased,
}

/// What the circuit says about sending one delivery now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Pass,
    /// Send it as the half-open probe (the caller then takes the lease with [`Circuit::start_probe`]).
    Probe,
    /// Not before this instant.
    WaitUntil(Millis),
}

/// The persisted state of one destination's circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    pub state: CircuitState,
    /// When the circuit last left `closed` (kept while it reopens after failed probes).
    pub opened_at: Option<Millis>,
    /// Why it last opened (kept while it is not closed).
    pub reason: Option<String>,
    /// The cool-down of the current open period; 0 while closed.
    pub cooldown_ms: u64,
    /// While open: when the probe may go.
    pub retry_at: Option<Millis>,
    /// Failures since the last success, while closed.
    pub consecutive_failures: u32,
    /// While half-open: the probe's lease, if one was taken.
    pub probe: Option<Probe>,
}

impl Default for Circuit {
    fn default() -> Self {
        Self {
            state: CircuitState::Closed,
            opened_at: None,
            reason: None,
            cooldown_ms: 0,
            retry_at: None,
            consecutive_failures: 0,
            probe: None,
        }
    }
}

impl Circuit {
    /// Whether `delivery` may be sent at `now`, changing nothing.
    pub fn peek(&self, delivery: &DeliveryId, now: Millis) -> Gate {
        match self.state {
            CircuitState::Closed => Gate::Pass,
            CircuitState::Open => match self.retry_at {
                Some(at) if now < at => Gate::WaitUntil(at),
                _ => Gate::Probe,
            },
            CircuitState::HalfOpen => match &self.probe {
                // The probe's own delivery, claimed again (its node lost the delivery lease),
                // carries on as the probe.
                Some(probe) if probe.delivery_id == *delivery => Gate::Probe,
                Some(probe) if now < probe.until => Gate::WaitUntil(probe.until),
                _ => Gate::Probe,
            },
        }
    }

    /// Makes `delivery` the half-open probe until `until`. Call only after [`Self::peek`]
    /// answered [`Gate::Probe`] for it.
    pub fn start_probe(&mut self, delivery: &DeliveryId, until: Millis) {
        self.state = CircuitState::HalfOpen;
        self.retry_at = None;
        self.probe = Some(Probe { delivery_id: delivery.clone(), until });
    }

    /// Until when nothing but a probe's own delivery may be sent, if the circuit blocks now.
    pub fn blocked_until(&self, now: Millis) -> Option<Millis> {
        match self.state {
            CircuitState::Closed => None,
            CircuitState::Open => self.retry_at.filter(|at| *at > now),
            CircuitState::HalfOpen => self.probe.as_ref().map(|p| p.until).filter(|until| *until > now),
        }
    }

    /// Feeds the outcome of an attempt at `delivery`, finished at `now`. `window` holds the
    /// destination's recent outcomes, this one included. Outcomes that arrive while the circuit
    /// is open, and in half-open those of anything but the probe, are late answers to attempts
    /// sent before it opened: they change nothing.
    pub fn observe(
        &mut self,
        policy: &CircuitBreakerPolicy,
        signal: Signal,
        delivery: &DeliveryId,
        now: Millis,
        window: WindowTotals,
    ) -> Option<Transition> {
        match self.state {
            CircuitState::Closed => self.observe_closed(policy, signal, now, window),
            CircuitState::Open => None,
            CircuitState::HalfOpen => {
                let is_probe = self.probe.as_ref().is_some_and(|p| p.delivery_id == *delivery);
                if !is_probe {
                    return None;
                }
                Some(match signal {
                    Signal::Success => {
                        *self = Self::default();
                        Transition::Closed
                    }
                    Signal::Failure => {
                        let cooldown_ms = self
                            .cooldown_ms
                            .max(policy.cooldown_ms)
                            .saturating_mul(2)
                            .min(policy.max_cooldown_ms.max(policy.cooldown_ms));
                        self.open(TripReason::ProbeFailed, cooldown_ms, now);
                        Transition::Reopened { cooldown_ms }
                    }
                    Signal::Neutral => {
                        self.probe = None;
                        Transition::ProbeReleased
                    }
                })
            }
        }
    }

    fn observe_closed(
        &mut self,
        policy: &CircuitBreakerPolicy,
        signal: Signal,
        now: Millis,
        window: WindowTotals,
    ) -> Option<Transition> {
        match signal {
            Signal::Success => {
                self.consecutive_failures = 0;
                None
            }
            Signal::Neutral => None,
            Signal::Failure => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let reason = if self.consecutive_failures >= policy.consecutive_failures {
                    TripReason::ConsecutiveFailures { failures: self.consecutive_failures }
                } else if window.trips(policy) {
                    TripReason::FailureRatio {
                        failed: window.failed,
                        total: window.judged(),
                        window_ms: policy.window_ms,
                    }
                } else {
                    return None;
                };
                self.opened_at = Some(now);
                self.open(reason, policy.cooldown_ms, now);
                Some(Transition::Opened(reason))
            }
        }
    }

    fn open(&mut self, reason: TripReason, cooldown_ms: u64, now: Millis) {
        self.state = CircuitState::Open;
        self.opened_at = self.opened_at.or(Some(now));
        self.reason = Some(reason.to_string());
        self.cooldown_ms = cooldown_ms;
        self.retry_at = Some(now.saturating_add(i64::try_from(cooldown_ms).unwrap_or(i64::MAX)));
        self.consecutive_failures = 0;
        self.probe = None;
    }
}

#[cfg(test)]
mod tests;
