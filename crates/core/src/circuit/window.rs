//! A destination's recent outcomes in time buckets: what the failure-ratio trigger and the
//! health report (success rate, latency percentiles) read. Updating it is O(1) per attempt, so
//! the trigger never counts a range of the attempts table on the delivery path.
//!
//! Buckets are a tenth of the window wide, so "the last `window_ms`" is exact to a tenth of
//! the window. Latencies go into a log-scale histogram with four bins per doubling: a
//! percentile is reported as its bin's geometric middle, within about 9 % of the true value.

use serde::{Deserialize, Serialize};

use super::Signal;
use crate::destination::CircuitBreakerPolicy;
use crate::time::Millis;

/// Buckets per window.
const BUCKETS: u64 = 10;
/// More buckets than this (after a policy change, or clock skew between nodes) drops the oldest.
const MAX_BUCKETS: usize = 4 * BUCKETS as usize;
/// Histogram bins per doubling of the latency.
const BINS_PER_OCTAVE: f64 = 4.0;
/// The last bin takes everything above ~2^31 ms.
const MAX_BIN: u16 = 127;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutcomeWindow {
    buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    /// `[from, to)` in epoch milliseconds.
    from: Millis,
    to: Millis,
    #[serde(default)]
    ok: u64,
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    neutral: u64,
    /// `(bin, count)`, sorted by bin, only bins with a count.
    #[serde(default)]
    latency: Vec<(u16, u64)>,
}

/// Counts over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowTotals {
    pub succeeded: u64,
    pub failed: u64,
    pub neutral: u64,
}

impl WindowTotals {
    /// Attempts that say whether the destination is up (neutral ones do not).
    pub fn judged(&self) -> u64 {
        self.succeeded + self.failed
    }

    pub fn attempts(&self) -> u64 {
        self.succeeded + self.failed + self.neutral
    }

    /// Whether at least `failure_ratio` of at least `min_requests` judged attempts failed.
    pub fn trips(&self, policy: &CircuitBreakerPolicy) -> bool {
        let judged = self.judged();
        judged > 0
            && judged >= u64::from(policy.min_requests)
            && self.failed as f64 >= policy.failure_ratio * judged as f64
    }

    /// Succeeded attempts over all attempts; `None` without attempts.
    pub fn success_rate(&self) -> Option<f64> {
        let attempts = self.attempts();
        (attempts > 0).then(|| self.succeeded as f64 / attempts as f64)
    }
}

fn bin_of(duration_ms: u64) -> u16 {
    let bin = ((duration_ms as f64 + 1.0).log2() * BINS_PER_OCTAVE).floor();
    if bin >= f64::from(MAX_BIN) { MAX_BIN } else { bin.max(0.0) as u16 }
}

/// The geometric middle of a bin, in whole milliseconds.
fn value_of(bin: u16) -> u64 {
    (((f64::from(bin) + 0.5) / BINS_PER_OCTAVE).exp2() - 1.0).round().max(0.0) as u64
}

impl OutcomeWindow {
    /// Adds one attempt that took `duration_ms` and ended at `now`, forgetting what is older
    /// than `window_ms`.
    pub fn record(&mut self, window_ms: u64, signal: Signal, duration_ms: u64, now: Millis) {
        self.forget(window_ms, now);
        let width = i64::try_from((window_ms / BUCKETS).max(1)).unwrap_or(i64::MAX);
        let at = match self.buckets.iter().position(|b| b.from <= now && now < b.to) {
            Some(at) => at,
            None => {
                let from = now - now.rem_euclid(width);
                let bucket = Bucket {
                    from,
                    to: from.saturating_add(width),
                    ok: 0,
                    failed: 0,
                    neutral: 0,
                    latency: Vec::new(),
                };
                let at = self.buckets.partition_point(|b| b.from < from);
                self.buckets.insert(at, bucket);
                at
            }
        };
        let bucket = &mut self.buckets[at];
        match signal {
            Signal::Success => bucket.ok += 1,
            Signal::Failure => bucket.failed += 1,
            Signal::Neutral => bucket.neutral += 1,
        }
        let bin = bin_of(duration_ms);
        match bucket.latency.binary_search_by_key(&bin, |(b, _)| *b) {
            Ok(i) => bucket.latency[i].1 += 1,
            Err(i) => bucket.latency.insert(i, (bin, 1)),
        }
        if self.buckets.len() > MAX_BUCKETS {
            let excess = self.buckets.len() - MAX_BUCKETS;
            self.buckets.drain(..excess);
        }
    }

    /// Adds the counts of `other` (recorded apart, e.g. not yet stored), forgetting what is
    /// older than `window_ms`.
    pub fn merge(&mut self, other: &OutcomeWindow, window_ms: u64, now: Millis) {
        for theirs in &other.buckets {
            match self.buckets.iter_mut().find(|b| b.from == theirs.from && b.to == theirs.to) {
                Some(ours) => {
                    ours.ok += theirs.ok;
                    ours.failed += theirs.failed;
                    ours.neutral += theirs.neutral;
                    for &(bin, count) in &theirs.latency {
                        match ours.latency.binary_search_by_key(&bin, |(b, _)| *b) {
                            Ok(i) => ours.latency[i].1 += count,
                            Err(i) => ours.latency.insert(i, (bin, count)),
                        }
                    }
                }
                None => {
                    let at = self.buckets.partition_point(|b| b.from < theirs.from);
                    self.buckets.insert(at, theirs.clone());
                }
            }
        }
        self.forget(window_ms, now);
        if self.buckets.len() > MAX_BUCKETS {
            let excess = self.buckets.len() - MAX_BUCKETS;
            self.buckets.drain(..excess);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn forget(&mut self, window_ms: u64, now: Millis) {
        let horizon = horizon(window_ms, now);
        self.buckets.retain(|b| b.to > horizon);
    }

    fn in_window(&self, window_ms: u64, now: Millis) -> impl Iterator<Item = &Bucket> {
        let horizon = horizon(window_ms, now);
        self.buckets.iter().filter(move |b| b.to > horizon && b.from <= now)
    }

    /// The counts of the attempts that ended in the `window_ms` before `now`.
    pub fn totals(&self, window_ms: u64, now: Millis) -> WindowTotals {
        self.in_window(window_ms, now).fold(WindowTotals::default(), |t, b| WindowTotals {
            succeeded: t.succeeded + b.ok,
            failed: t.failed + b.failed,
            neutral: t.neutral + b.neutral,
        })
    }

    /// The `q`-quantile (0 < q ≤ 1, nearest rank) of the latencies in the window, if any.
    pub fn latency_quantile(&self, window_ms: u64, now: Millis, q: f64) -> Option<u64> {
        let mut bins: Vec<(u16, u64)> = Vec::new();
        for bucket in self.in_window(window_ms, now) {
            for &(bin, count) in &bucket.latency {
                match bins.binary_search_by_key(&bin, |(b, _)| *b) {
                    Ok(i) => bins[i].1 += count,
                    Err(i) => bins.insert(i, (bin, count)),
                }
            }
        }
        let total: u64 = bins.iter().map(|(_, c)| c).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bin, count) in bins {
            seen += count;
            if seen >= rank {
                return Some(value_of(bin));
            }
        }
        None
    }
}

fn horizon(window_ms: u64, now: Millis) -> Millis {
    now.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Millis = 1_700_000_000_000;

    #[test]
    fn totals_cover_the_window_and_forget_what_is_older() {
        let mut w = OutcomeWindow::default();
        w.record(60_000, Signal::Failure, 10, T);
        w.record(60_000, Signal::Success, 10, T + 1_000);
        w.record(60_000, Signal::Neutral, 10, T + 2_000);
        assert_eq!(w.totals(60_000, T + 2_000), WindowTotals { succeeded: 1, failed: 1, neutral: 1 });
        // A tenth of the window later than the window, the first bucket is gone.
        assert_eq!(w.totals(60_000, T + 66_001).failed, 0);
        w.record(60_000, Signal::Success, 10, T + 200_000);
        assert_eq!(w.totals(60_000, T + 200_000), WindowTotals { succeeded: 1, failed: 0, neutral: 0 });
        assert_eq!(w.buckets.len(), 1, "old buckets are dropped on record");
    }

    #[test]
    fn merged_windows_add_up() {
        let mut stored = OutcomeWindow::default();
        let mut apart = OutcomeWindow::default();
        let mut together = OutcomeWindow::default();
        for (n, signal) in
            [Signal::Success, Signal::Failure, Signal::Neutral].into_iter().cycle().take(30).enumerate()
        {
            let at = T + 997 * n as i64;
            let target = if n % 3 == 0 { &mut apart } else { &mut stored };
            target.record(60_000, signal, n as u64, at);
            together.record(60_000, signal, n as u64, at);
        }
        let now = T + 997 * 29;
        stored.merge(&apart, 60_000, now);
        assert_eq!(stored.totals(60_000, now), together.totals(60_000, now));
        assert_eq!(stored.latency_quantile(60_000, now, 0.5), together.latency_quantile(60_000, now, 0.5));
        assert!(OutcomeWindow::default().is_empty());
    }

    #[test]
    fn quantiles_come_within_ten_percent() {
        let mut w = OutcomeWindow::default();
        for ms in 1..=100u64 {
            w.record(60_000, Signal::Success, ms, T);
        }
        let p50 = w.latency_quantile(60_000, T, 0.5).unwrap();
        let p99 = w.latency_quantile(60_000, T, 0.99).unwrap();
        assert!((45..=55).contains(&p50), "{p50}");
        assert!((90..=109).contains(&p99), "{p99}");
        assert_eq!(OutcomeWindow::default().latency_quantile(60_000, T, 0.5), None);
    }

    #[test]
    fn the_ratio_needs_enough_judged_attempts() {
        let policy = CircuitBreakerPolicy { min_requests: 4, failure_ratio: 0.5, ..Default::default() };
        let t = |succeeded, failed, neutral| WindowTotals { succeeded, failed, neutral };
        assert!(!t(1, 2, 10).trips(&policy), "neutral outcomes are not judged");
        assert!(t(2, 2, 0).trips(&policy));
        assert!(!t(3, 2, 0).trips(&policy));
        assert_eq!(t(1, 1, 2).success_rate(), Some(0.25));
        assert_eq!(t(0, 0, 0).success_rate(), None);
    }

    proptest! {
        #[test]
        fn bins_bracket_their_values(ms in 0u64..10_000_000) {
            let value = value_of(bin_of(ms)) as f64;
            let ms = ms as f64;
            prop_assert!((value - ms).abs() <= 0.1 * ms + 1.0, "{ms} shown as {value}");
        }

        #[test]
        fn totals_count_exactly_the_recent_attempts(
            gaps in proptest::collection::vec(0i64..20_000, 1..60),
            window_ms in 1_000u64..120_000,
        ) {
            let mut w = OutcomeWindow::default();
            let mut now = T;
            let mut ends = Vec::new();
            for gap in gaps {
                now += gap;
                w.record(window_ms, Signal::Failure, 1, now);
                ends.push(now);
            }
            let width = (window_ms / BUCKETS).max(1) as i64;
            let counted = w.totals(window_ms, now).failed as usize;
            let surely_in = ends.iter().filter(|e| **e > now - window_ms as i64).count();
            let maybe_in = ends.iter().filter(|e| **e > now - window_ms as i64 - width).count();
            prop_assert!(surely_in <= counted && counted <= maybe_in, "{surely_in} ≤ {counted} ≤ {maybe_in}");
        }
    }
}
