//! What happens after an attempt: outcome classes and the retry schedule, as pure functions.

use crate::destination::RetryPolicy;

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    Success,
    /// Worth trying again (408, 425, 429, 5xx, connect errors, timeouts).
    Retryable,
    /// Trying again cannot help (other 4xx, unless the policy retries them).
    Permanent,
}

/// Classifies an HTTP status code under `policy`.
pub fn classify_status(status: u16, policy: &RetryPolicy) -> OutcomeClass {
    match status {
        200..=299 => OutcomeClass::Success,
        408 | 425 | 429 | 500..=599 => OutcomeClass::Retryable,
        400..=499 if policy.retry_on_4xx => OutcomeClass::Retryable,
        _ => OutcomeClass::Permanent,
    }
}

/// Where a delivery goes after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this many milliseconds.
    RetryIn(u64),
    /// The budget is spent or the failure is permanent.
    GiveUp,
}

impl RetryPolicy {
    /// The delay before retry number `failures` (1 for the first retry): exponential from
    /// `initial_delay_ms` by `multiplier`, capped at `max_delay_ms`, then moved by up to
    /// ±`jitter` of itself (`unit_jitter` in [-1, 1] picks where) and capped again.
    pub fn backoff_ms(&self, failures: u32, unit_jitter: f64) -> u64 {
        let exponent = failures.saturating_sub(1).min(64) as i32;
        let base =
            (self.initial_delay_ms as f64 * self.multiplier.powi(exponent)).min(self.max_delay_ms as f64);
        let jittered = base * (1.0 + self.jitter * unit_jitter.clamp(-1.0, 1.0));
        jittered.clamp(1.0, self.max_delay_ms as f64).round() as u64
    }

    /// The decision after a failure, when `attempts_made` attempts (this one included) have
    /// been spent. A receiver's `Retry-After` replaces the computed delay, capped at the
    /// policy's maximum.
    pub fn after_failure(
        &self,
        class: OutcomeClass,
        attempts_made: u32,
        retry_after_ms: Option<u64>,
        unit_jitter: f64,
    ) -> RetryDecision {
        if class != OutcomeClass::Retryable || attempts_made >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let delay = match retry_after_ms {
            Some(asked) => asked.min(self.max_delay_ms),
            None => self.backoff_ms(attempts_made, unit_jitter),
        };
        RetryDecision::RetryIn(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    #[test]
    fn the_default_schedule_triples_from_one_second_to_an_hour() {
        let delays: Vec<u64> = (1..=11).map(|n| policy().backoff_ms(n, 0.0)).collect();
        assert_eq!(
            delays,
            [
                1_000, 3_000, 9_000, 27_000, 81_000, 243_000, 729_000, 2_187_000, 3_600_000, 3_600_000,
                3_600_000
            ]
        );
        let total_hours = delays.iter().sum::<u64>() as f64 / 3_600_000.0;
        assert!((3.5..4.5).contains(&total_hours), "about four hours, was {total_hours}");
    }

    #[test]
    fn statuses_fall_into_the_spec_classes() {
        for (status, class) in [
            (200, OutcomeClass::Success),
            (204, OutcomeClass::Success),
            (408, OutcomeClass::Retryable),
            (425, OutcomeClass::Retryable),
            (429, OutcomeClass::Retryable),
            (500, OutcomeClass::Retryable),
            (503, OutcomeClass::Retryable),
            (400, OutcomeClass::Permanent),
            (404, OutcomeClass::Permanent),
            (410, OutcomeClass::Permanent),
            (301, OutcomeClass::Permanent),
        ] {
            assert_eq!(classify_status(status, &policy()), class, "{status}");
        }
        let lenient = RetryPolicy { retry_on_4xx: true, ..policy() };
        assert_eq!(classify_status(404, &lenient), OutcomeClass::Retryable);
    }

    #[test]
    fn the_last_attempt_and_permanent_failures_give_up() {
        let p = RetryPolicy { max_attempts: 3, ..policy() };
        assert_eq!(p.after_failure(OutcomeClass::Retryable, 2, None, 0.0), RetryDecision::RetryIn(3_000));
        assert_eq!(p.after_failure(OutcomeClass::Retryable, 3, None, 0.0), RetryDecision::GiveUp);
        assert_eq!(p.after_failure(OutcomeClass::Permanent, 1, None, 0.0), RetryDecision::GiveUp);
    }

    #[test]
    fn retry_after_replaces_the_backoff_up_to_the_cap() {
        let p = RetryPolicy { max_delay_ms: 10_000, ..policy() };
        assert_eq!(
            p.after_failure(OutcomeClass::Retryable, 1, Some(7_000), 0.0),
            RetryDecision::RetryIn(7_000)
        );
        assert_eq!(
            p.after_failure(OutcomeClass::Retryable, 1, Some(60_000), 0.0),
            RetryDecision::RetryIn(10_000)
        );
    }

    proptest! {
        #[test]
        fn backoff_stays_within_jitter_of_the_capped_exponential(
            failures in 1u32..40,
            unit in -1.0f64..=1.0,
            initial in 1u64..10_000,
            extra in 0u64..10_000_000,
            multiplier in 1.0f64..10.0,
            jitter in 0.0f64..=1.0,
        ) {
            let p = RetryPolicy { initial_delay_ms: initial, max_delay_ms: initial + extra, multiplier, jitter, ..policy() };
            let delay = p.backoff_ms(failures, unit) as f64;
            let base = (initial as f64 * multiplier.powi(failures as i32 - 1)).min(p.max_delay_ms as f64);
            prop_assert!(delay <= p.max_delay_ms as f64);
            prop_assert!(delay >= 1.0);
            prop_assert!(delay >= (base * (1.0 - jitter)).floor().max(1.0) - 1.0);
            prop_assert!(delay <= (base * (1.0 + jitter)).ceil() + 1.0);
        }

        #[test]
        fn backoff_never_shrinks_without_jitter(
            failures in 1u32..40,
            initial in 1u64..10_000,
            extra in 0u64..10_000_000,
            multiplier in 1.0f64..10.0,
        ) {
            let p = RetryPolicy { initial_delay_ms: initial, max_delay_ms: initial + extra, multiplier, ..policy() };
            prop_assert!(p.backoff_ms(failures + 1, 0.0) >= p.backoff_ms(failures, 0.0));
        }

        #[test]
        fn only_retryable_failures_within_the_budget_are_retried(
            class in prop_oneof![
                Just(OutcomeClass::Success),
                Just(OutcomeClass::Retryable),
                Just(OutcomeClass::Permanent)
            ],
            max_attempts in 1u32..20,
            attempts_made in 1u32..25,
            retry_after in proptest::option::of(0u64..10_000_000),
            max_delay in 1u64..5_000_000,
            unit in -1.0f64..=1.0,
        ) {
            let p = RetryPolicy { max_attempts, initial_delay_ms: 1, max_delay_ms: max_delay, ..policy() };
            match p.after_failure(class, attempts_made, retry_after, unit) {
                RetryDecision::GiveUp => {
                    prop_assert!(class != OutcomeClass::Retryable || attempts_made >= max_attempts)
                }
                RetryDecision::RetryIn(delay) => {
                    prop_assert_eq!(class, OutcomeClass::Retryable);
                    prop_assert!(attempts_made < max_attempts);
                    prop_assert!(delay <= max_delay);
                    let expected = retry_after.map_or(p.backoff_ms(attempts_made, unit), |asked| asked.min(max_delay));
                    prop_assert_eq!(delay, expected);
                }
            }
        }

        #[test]
        fn retry_on_4xx_changes_nothing_but_4xx(status in 100u16..1_000) {
            let strict = classify_status(status, &policy());
            let lenient = classify_status(status, &RetryPolicy { retry_on_4xx: true, ..policy() });
            let success = (200..300).contains(&status);
            prop_assert_eq!(strict == OutcomeClass::Success, success);
            prop_assert_eq!(lenient == OutcomeClass::Success, success);
            if (500..600).contains(&status) {
                prop_assert_eq!((strict, lenient), (OutcomeClass::Retryable, OutcomeClass::Retryable));
            }
            if (400..500).contains(&status) {
                prop_assert_eq!(lenient, OutcomeClass::Retryable);
            } else {
                prop_assert_eq!(strict, lenient);
            }
            if !success && !(400..600).contains(&status) {
                prop_assert_eq!(strict, OutcomeClass::Permanent, "{} is neither success nor worth a retry", status);
            }
        }
    }
}
