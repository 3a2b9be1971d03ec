use proptest::prelude::*;

use super::*;

const T: Millis = 1_700_000_000_000;

fn policy() -> CircuitBreakerPolicy {
    CircuitBreakerPolicy {
        consecutive_failures: 3,
        failure_ratio: 0.5,
        min_requests: 4,
        window_ms: 60_000,
        cooldown_ms: 1_000,
        max_cooldown_ms: 5_000,
    }
}

fn id(n: u32) -> DeliveryId {
    DeliveryId::from_trusted(format!("dlv_{n}"))
}

/// Feeds a signal with window totals that never trip the ratio on their own.
fn feed(circuit: &mut Circuit, signal: Signal, delivery: u32, now: Millis) -> Option<Transition> {
    circuit.observe(&policy(), signal, &id(delivery), now, WindowTotals::default())
}

fn opened(now: Millis) -> Circuit {
    let mut circuit = Circuit::default();
    for _ in 0..3 {
        feed(&mut circuit, Signal::Failure, 0, now);
    }
    assert_eq!(circuit.state, CircuitState::Open);
    circuit
}

#[test]
fn consecutive_failures_open_it_and_a_success_resets_the_count() {
    let mut circuit = Circuit::default();
    assert_eq!(feed(&mut circuit, Signal::Failure, 0, T), None);
    assert_eq!(feed(&mut circuit, Signal::Failure, 1, T), None);
    assert_eq!(feed(&mut circuit, Signal::Success, 2, T), None);
    assert_eq!(circuit.consecutive_failures, 0);
    assert_eq!(feed(&mut circuit, Signal::Neutral, 3, T), None, "a refused message says nothing");
    feed(&mut circuit, Signal::Failure, 0, T);
    feed(&mut circuit, Signal::Failure, 0, T);
    let transition = feed(&mut circuit, Signal::Failure, 0, T + 7);
    assert_eq!(transition, Some(Transition::Opened(TripReason::ConsecutiveFailures { failures: 3 })));
    assert_eq!(circuit.state, CircuitState::Open);
    assert_eq!(circuit.opened_at, Some(T + 7));
    assert_eq!(circuit.reason.as_deref(), Some("3 consecutive failures"));
    assert_eq!(circuit.retry_at, Some(T + 1_007));
}

#[test]
fn the_failure_ratio_opens_it_once_enough_attempts_were_seen() {
    let mut circuit = Circuit::default();
    let below = WindowTotals { succeeded: 1, failed: 2, neutral: 5 };
    assert_eq!(
        circuit.observe(&policy(), Signal::Failure, &id(0), T, below),
        None,
        "3 judged < min_requests 4"
    );
    circuit.observe(&policy(), Signal::Success, &id(0), T, below);
    let enough = WindowTotals { succeeded: 2, failed: 2, neutral: 0 };
    let transition = circuit.observe(&policy(), Signal::Failure, &id(0), T, enough);
    assert_eq!(
        transition,
        Some(Transition::Opened(TripReason::FailureRatio { failed: 2, total: 4, window_ms: 60_000 }))
    );
    assert_eq!(circuit.reason.as_deref(), Some("2 of 4 attempts failed in the last 60000 ms"));

    let mut healthy = Circuit::default();
    let mostly_fine = WindowTotals { succeeded: 30, failed: 10, neutral: 0 };
    assert_eq!(healthy.observe(&policy(), Signal::Failure, &id(0), T, mostly_fine), None);
}

#[test]
fn the_ratio_reads_real_windows() {
    let mut window = OutcomeWindow::default();
    let mut circuit = Circuit::default();
    let policy = CircuitBreakerPolicy { consecutive_failures: 100, min_requests: 10, ..policy() };
    let mut opened = None;
    for n in 0..20 {
        // Alternating: never two failures in a row, half of them failures.
        let signal = if n % 2 == 0 { Signal::Success } else { Signal::Failure };
        window.record(policy.window_ms, signal, 5, T + n);
        let totals = window.totals(policy.window_ms, T + n);
        if let Some(transition) = circuit.observe(&policy, signal, &id(0), T + n, totals) {
            opened = Some((n, transition));
            break;
        }
    }
    assert_eq!(
        opened,
        Some((9, Transition::Opened(TripReason::FailureRatio { failed: 5, total: 10, window_ms: 60_000 })))
    );
}

#[test]
fn while_open_nothing_passes_and_late_outcomes_change_nothing() {
    let mut circuit = opened(T);
    let before = circuit.clone();
    assert_eq!(circuit.peek(&id(1), T + 999), Gate::WaitUntil(T + 1_000));
    assert_eq!(feed(&mut circuit, Signal::Success, 5, T + 10), None);
    assert_eq!(feed(&mut circuit, Signal::Failure, 6, T + 10), None);
    assert_eq!(circuit, before);
    assert_eq!(circuit.peek(&id(1), T + 1_000), Gate::Probe);
}

#[test]
fn one_probe_at_a_time_and_its_verdict_decides() {
    let mut circuit = opened(T);
    let at = T + 1_000;
    circuit.start_probe(&id(1), at + 500);
    assert_eq!(circuit.state, CircuitState::HalfOpen);
    assert_eq!(circuit.peek(&id(2), at + 1), Gate::WaitUntil(at + 500));
    assert_eq!(circuit.peek(&id(1), at + 1), Gate::Probe, "the probe's own delivery carries on");
    assert_eq!(circuit.blocked_until(at + 1), Some(at + 500));
    assert_eq!(feed(&mut circuit, Signal::Failure, 2, at + 2), None, "not the probe");

    assert_eq!(
        feed(&mut circuit, Signal::Failure, 1, at + 10),
        Some(Transition::Reopened { cooldown_ms: 2_000 })
    );
    assert_eq!(circuit.opened_at, Some(T), "open since it first opened");
    assert_eq!(circuit.reason.as_deref(), Some("the half-open probe failed"));
    assert_eq!(circuit.retry_at, Some(at + 2_010));
    for expected in [4_000, 5_000, 5_000] {
        let at = circuit.retry_at.unwrap();
        circuit.start_probe(&id(1), at + 100);
        assert_eq!(
            feed(&mut circuit, Signal::Failure, 1, at),
            Some(Transition::Reopened { cooldown_ms: expected })
        );
    }

    let at = circuit.retry_at.unwrap();
    circuit.start_probe(&id(3), at + 100);
    assert_eq!(feed(&mut circuit, Signal::Neutral, 3, at + 1), Some(Transition::ProbeReleased));
    assert_eq!(circuit.peek(&id(4), at + 2), Gate::Probe, "a released probe lets the next one go");
    circuit.start_probe(&id(4), at + 100);
    assert_eq!(feed(&mut circuit, Signal::Success, 4, at + 3), Some(Transition::Closed));
    assert_eq!(circuit, Circuit::default());
    assert_eq!(opened(at + 4).cooldown_ms, 1_000, "a new open period starts from the base cool-down");
}

#[test]
fn an_abandoned_probe_lease_lets_another_delivery_probe() {
    let mut circuit = opened(T);
    circuit.start_probe(&id(1), T + 1_500);
    assert_eq!(circuit.peek(&id(2), T + 1_499), Gate::WaitUntil(T + 1_500));
    assert_eq!(circuit.peek(&id(2), T + 1_500), Gate::Probe);
    circuit.start_probe(&id(2), T + 2_000);
    assert_eq!(feed(&mut circuit, Signal::Success, 1, T + 1_600), None, "the old probe's verdict is void");
    assert_eq!(feed(&mut circuit, Signal::Success, 2, T + 1_600), Some(Transition::Closed));
}

#[test]
fn states_round_trip_through_their_names() {
    for state in [CircuitState::Closed, CircuitState::Open, CircuitState::HalfOpen] {
        assert_eq!(CircuitState::parse(state.as_str()), Some(state));
    }
    assert_eq!(CircuitState::parse("ajar"), None);
}

#[derive(Debug, Clone)]
enum Op {
    Advance(i64),
    /// A node asks to send this delivery; a probe grant takes the lease for `lease` ms.
    Admit {
        delivery: u32,
        lease: i64,
    },
    Outcome {
        delivery: u32,
        signal: Signal,
        failed: u64,
        succeeded: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let signal = prop_oneof![Just(Signal::Success), Just(Signal::Failure), Just(Signal::Neutral)];
    prop_oneof![
        (0i64..3_000).prop_map(Op::Advance),
        (0u32..4, 1i64..2_000).prop_map(|(delivery, lease)| Op::Admit { delivery, lease }),
        (0u32..4, signal, 0u64..30, 0u64..30).prop_map(|(delivery, signal, failed, succeeded)| Op::Outcome {
            delivery,
            signal,
            failed,
            succeeded
        }),
    ]
}

/// Whatever happens, the circuit stays consistent: it passes deliveries only when closed,
/// sends nothing before the cool-down ends, grants one live probe at a time, and its
/// cool-down doubles from the base up to the cap.
fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let policy = policy();
    let mut circuit = Circuit::default();
    let mut now = T;
    // Probes granted since the last verdict: (delivery, lease end).
    let mut granted: Vec<(DeliveryId, Millis)> = Vec::new();
    for op in ops {
        match op {
            Op::Advance(ms) => now += ms,
            Op::Admit { delivery, lease } => {
                let before = circuit.clone();
                match circuit.peek(&id(delivery), now) {
                    Gate::Pass => prop_assert_eq!(before.state, CircuitState::Closed),
                    Gate::WaitUntil(until) => {
                        prop_assert!(until > now);
                        prop_assert_ne!(before.state, CircuitState::Closed);
                    }
                    Gate::Probe => {
                        prop_assert_ne!(before.state, CircuitState::Closed);
                        if before.state == CircuitState::Open {
                            prop_assert!(
                                now >= before.retry_at.unwrap(),
                                "a probe before the cool-down ended"
                            );
                        }
                        for (other, until) in &granted {
                            prop_assert!(*other == id(delivery) || *until <= now, "two live probes");
                        }
                        circuit.start_probe(&id(delivery), now + lease);
                        // The same delivery probing again (claimed anew) renews its lease.
                        granted.retain(|(other, _)| *other != id(delivery));
                        granted.push((id(delivery), now + lease));
                    }
                }
                prop_assert_eq!(
                    circuit.peek(&id(delivery), now) == Gate::Pass,
                    circuit.state == CircuitState::Closed
                );
            }
            Op::Outcome { delivery, signal, failed, succeeded } => {
                let before = circuit.clone();
                let totals = WindowTotals { succeeded, failed, neutral: 0 };
                let transition = circuit.observe(&policy, signal, &id(delivery), now, totals);
                let was_probe = before.probe.as_ref().is_some_and(|p| p.delivery_id == id(delivery));
                // Either trip condition, judged independently of the circuit's own bookkeeping.
                let judged = failed + succeeded;
                let trip_due = signal == Signal::Failure
                    && (before.consecutive_failures + 1 >= policy.consecutive_failures
                        || (judged >= u64::from(policy.min_requests)
                            && failed as f64 >= policy.failure_ratio * judged as f64));
                match (&before.state, &transition) {
                    (CircuitState::Open, t) => {
                        prop_assert!(t.is_none());
                        prop_assert_eq!(&circuit, &before);
                    }
                    (CircuitState::HalfOpen, None) => prop_assert!(!was_probe || signal == Signal::Neutral),
                    (CircuitState::HalfOpen, Some(Transition::Closed)) => {
                        prop_assert!(was_probe && signal == Signal::Success)
                    }
                    (CircuitState::HalfOpen, Some(Transition::Reopened { cooldown_ms })) => {
                        prop_assert!(was_probe && signal == Signal::Failure);
                        let base = before.cooldown_ms.max(policy.cooldown_ms);
                        prop_assert_eq!(*cooldown_ms, (base * 2).min(policy.max_cooldown_ms));
                        prop_assert_eq!(circuit.opened_at, before.opened_at);
                    }
                    (CircuitState::HalfOpen, Some(Transition::ProbeReleased)) => {
                        prop_assert!(was_probe && signal == Signal::Neutral)
                    }
                    (CircuitState::Closed, Some(Transition::Opened(_))) => {
                        prop_assert_eq!(signal, Signal::Failure);
                        prop_assert!(trip_due, "opened without reason");
                        prop_assert_eq!(circuit.cooldown_ms, policy.cooldown_ms);
                        prop_assert_eq!(circuit.opened_at, Some(now));
                        prop_assert_eq!(circuit.retry_at, Some(now + policy.cooldown_ms as i64));
                    }
                    (CircuitState::Closed, None) => {
                        prop_assert!(!trip_due, "a failure that should have opened it did not");
                        let expected = match signal {
                            Signal::Success => 0,
                            Signal::Failure => before.consecutive_failures + 1,
                            Signal::Neutral => before.consecutive_failures,
                        };
                        prop_assert_eq!(circuit.consecutive_failures, expected);
                    }
                    (state, t) => prop_assert!(false, "{state:?} made {t:?}"),
                }
                if transition.is_some() {
                    granted.clear();
                }
            }
        }
        match circuit.state {
            CircuitState::Closed => {
                prop_assert!(circuit.consecutive_failures < policy.consecutive_failures);
                prop_assert!(circuit.probe.is_none() && circuit.retry_at.is_none());
                prop_assert!(circuit.opened_at.is_none() && circuit.reason.is_none());
                prop_assert_eq!(circuit.blocked_until(now), None);
            }
            CircuitState::Open => {
                prop_assert!(circuit.probe.is_none() && circuit.reason.is_some());
                prop_assert!(circuit.opened_at.is_some_and(|at| at <= now));
                prop_assert!((policy.cooldown_ms..=policy.max_cooldown_ms).contains(&circuit.cooldown_ms));
                prop_assert!(circuit.retry_at.is_some());
            }
            CircuitState::HalfOpen => {
                prop_assert!(circuit.retry_at.is_none() && circuit.opened_at.is_some());
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn transitions_keep_the_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
