//! The token bucket of a destination's rate limit, as a pure value the store keeps per
//! destination (so every node draws from the same bucket). A delivery that finds no token
//! waits for the time one will be there; it never fails for want of one.
//!
//! The bucket holds at most `burst` tokens and gains `per_second` tokens a second, so in any
//! second at most `burst + per_second` deliveries go out.

use crate::destination::RateLimit;
use crate::time::Millis;

/// Slack for floating-point refill arithmetic: a bucket short of a whole token by less than
/// this has the token.
const EPSILON: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    pub tokens: f64,
    /// When `tokens` was last brought up to date.
    pub at: Millis,
}

impl TokenBucket {
    /// A full bucket: a destination starts with its burst.
    pub fn full(limit: &RateLimit, now: Millis) -> Self {
        Self { tokens: f64::from(limit.burst()), at: now }
    }

    /// Adds the tokens earned since the last refill, up to the burst. Time never runs back:
    /// an older `now` (another node's clock) adds nothing.
    pub fn refill(&mut self, limit: &RateLimit, now: Millis) {
        if now > self.at {
            let earned = (now - self.at) as f64 * f64::from(limit.per_second) / 1_000.0;
            self.tokens += earned;
            self.at = now;
        }
        self.tokens = self.tokens.clamp(0.0, f64::from(limit.burst()));
    }

    /// Takes up to `wanted` tokens at `now`; answers how many it took.
    pub fn take(&mut self, limit: &RateLimit, wanted: usize, now: Millis) -> usize {
        self.refill(limit, now);
        let mut taken = 0;
        while taken < wanted && self.tokens + EPSILON >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            taken += 1;
        }
        taken
    }

    /// When the bucket will hold `n` whole tokens if nobody takes any before (`at` when it
    /// does already). The `n`-th of a queue of waiting deliveries goes then.
    pub fn time_for(&self, limit: &RateLimit, n: u32) -> Millis {
        let missing = f64::from(n) - self.tokens;
        if missing <= EPSILON {
            return self.at;
        }
        // Less a hair, so float noise does not add a millisecond to an exact boundary.
        let ms = (missing * 1_000.0 / f64::from(limit.per_second.max(1)) - 1e-6).ceil().max(1.0);
        self.at.saturating_add(ms as i64)
    }

    /// When the next token is there, if there is none now.
    pub fn empty_until(&self, limit: &RateLimit) -> Option<Millis> {
        (self.tokens + EPSILON < 1.0).then(|| self.time_for(limit, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Millis = 1_700_000_000_000;

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit { per_second, burst: Some(burst) }
    }

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_token_per_interval() {
        let limit = limit(5, 2);
        let mut bucket = TokenBucket::full(&limit, T);
        assert_eq!(bucket.take(&limit, 10, T), 2);
        assert_eq!(bucket.take(&limit, 1, T + 199), 0);
        assert_eq!(bucket.time_for(&limit, 1), T + 200);
        assert_eq!(bucket.time_for(&limit, 3), T + 600);
        assert_eq!(bucket.take(&limit, 1, T + 200), 1);
        assert_eq!(bucket.take(&limit, 5, T + 10_000), 2, "never more than the burst");
        assert_eq!(bucket.empty_until(&limit), Some(T + 10_200));
    }

    #[test]
    fn the_burst_defaults_to_the_rate_and_time_does_not_run_back() {
        let limit = RateLimit { per_second: 3, burst: None };
        let mut bucket = TokenBucket::full(&limit, T);
        assert_eq!(bucket.take(&limit, 10, T), 3);
        assert_eq!(bucket.take(&limit, 1, T - 5_000), 0);
        assert_eq!(bucket.at, T);
    }

    proptest! {
        /// Whatever the pattern of requests, no second sees more than burst + per_second.
        #[test]
        fn no_second_gets_more_than_the_rate_plus_the_burst(
            per_second in 1u32..50,
            burst in 1u32..20,
            steps in proptest::collection::vec((0i64..400, 0usize..6), 1..200),
        ) {
            let limit = limit(per_second, burst);
            let mut bucket = TokenBucket::full(&limit, T);
            let mut now = T;
            let mut granted: Vec<Millis> = Vec::new();
            for (gap, wanted) in steps {
                now += gap;
                let taken = bucket.take(&limit, wanted, now);
                prop_assert!(taken <= wanted);
                prop_assert!((0.0..=f64::from(burst)).contains(&bucket.tokens), "{} tokens", bucket.tokens);
                granted.extend(std::iter::repeat_n(now, taken));
                if taken < wanted {
                    // A token is withheld only from an empty bucket.
                    prop_assert!(bucket.empty_until(&limit).is_some(), "{} tokens left", bucket.tokens);
                    // Whoever waits is told the first millisecond a token is there.
                    let next = bucket.time_for(&limit, 1);
                    prop_assert!(next > now);
                    prop_assert_eq!(bucket.empty_until(&limit), Some(next));
                    let mut probe = bucket;
                    prop_assert_eq!(probe.take(&limit, 1, next), 1);
                    let mut early = bucket;
                    prop_assert_eq!(early.take(&limit, 1, next - 1), 0, "a token was there before {}", next);
                }
            }
            for (i, start) in granted.iter().enumerate() {
                let in_second = granted[i..].iter().take_while(|t| **t < start + 1_000).count();
                prop_assert!(in_second as u32 <= burst + per_second, "{in_second} in a second");
            }
        }

        /// A destination that always has deliveries waiting gets its burst and then its rate:
        /// the bucket never holds back what it has earned. (Asked at least once per token
        /// earned, so that no token is lost to a bucket already full.)
        #[test]
        fn steady_demand_gets_the_burst_plus_the_rate(
            per_second in 1u32..50,
            burst in 2u32..20,
            gaps in proptest::collection::vec(0.0f64..=1.0, 1..200),
        ) {
            let limit = limit(per_second, burst);
            let mut bucket = TokenBucket::full(&limit, T);
            let mut now = T;
            let mut granted = bucket.take(&limit, usize::MAX, now) as u64;
            let token_interval_ms = 1_000.0 / f64::from(per_second);
            for gap in gaps {
                now += ((gap * token_interval_ms) as i64).max(1);
                granted += bucket.take(&limit, usize::MAX, now) as u64;
            }
            let earned = (now - T) as f64 * f64::from(per_second) / 1_000.0;
            let expected = f64::from(burst) + earned;
            prop_assert!(granted as f64 <= expected + 1e-6, "{granted} granted, {expected} earned");
            prop_assert!(granted as f64 > expected - 1.0, "{granted} granted, {expected} earned");
        }
    }
}
