//! Rate limiting of `/v1` per principal (API key or JWT subject): a token bucket (GCRA, from
//! `governor`) per principal, sized by its role. Over the limit a request is answered 429
//! `rate_limited` with `Retry-After`; every limited answer, 429 or not, carries
//! `RateLimit-Limit` (the bucket size), `RateLimit-Remaining` (requests left now) and
//! `RateLimit-Reset` (seconds until the bucket is full again).
//!
//! Buckets live in memory, per node. Only authenticated principals get one, and buckets that
//! have refilled are dropped every minute, so memory follows the principals active lately.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use switchyard_core::api_key::Role;

use crate::auth::Principal;
use crate::error::ApiError;

pub const LIMIT_HEADER: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const REMAINING_HEADER: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RESET_HEADER: HeaderName = HeaderName::from_static("ratelimit-reset");

/// How often buckets that have refilled are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A bucket's size: `burst` requests at once, refilled at `per_second`. `per_second = 0` means
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    pub per_second: u32,
    pub burst: u32,
}

impl RateQuota {
    pub const UNLIMITED: Self = Self { per_second: 0, burst: 0 };

    pub fn is_unlimited(self) -> bool {
        self.per_second == 0
    }
}

/// What rate limiting needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// The bucket of every role without its own.
    pub default: RateQuota,
    /// Buckets of particular roles.
    pub roles: BTreeMap<Role, RateQuota>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self { default: RateQuota { per_second: 100, burst: 200 }, roles: BTreeMap::new() }
    }
}

impl RateLimitSettings {
    pub fn quota_for(&self, role: Role) -> RateQuota {
        self.roles.get(&role).copied().unwrap_or(self.default)
    }
}

type Keyed =
    governor::RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// One keyed limiter per role, since each role may have its own quota.
pub struct RateLimiter {
    buckets: BTreeMap<Role, Bucket>,
    started: Instant,
    /// Milliseconds after `started` of the last pruning.
    pruned_at_ms: AtomicU64,
}

struct Bucket {
    quota: RateQuota,
    limiter: Keyed,
}

/// The outcome of one check, with the numbers its headers show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Unlimited,
    Allowed { limit: u32, remaining: u32, reset_secs: u64 },
    Limited { limit: u32, retry_after_secs: u64, reset_secs: u64 },
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let buckets = Role::ALL
            .into_iter()
            .filter_map(|role| {
                let quota = settings.quota_for(role);
                let per_second = NonZeroU32::new(quota.per_second)?;
                let burst = NonZeroU32::new(quota.burst).unwrap_or(NonZeroU32::MIN);
                let limiter = governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
                    .with_middleware::<StateInformationMiddleware>();
                Some((role, Bucket { quota: RateQuota { burst: burst.get(), ..quota }, limiter }))
            })
            .collect();
        Self { buckets, started: Instant::now(), pruned_at_ms: AtomicU64::new(0) }
    }

    /// Takes one request from `subject`'s bucket.
    pub fn check(&self, role: Role, subject: &str) -> Decision {
        self.prune_now_and_then();
        let Some(bucket) = self.buckets.get(&role) else {
            return Decision::Unlimited;
        };
        let RateQuota { per_second, burst } = bucket.quota;
        // Seconds for `tokens` to drip back in, rounded up.
        let refill = |tokens: u32| (u64::from(tokens)).div_ceil(u64::from(per_second));
        match bucket.limiter.check_key(&subject.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(burst);
                Decision::Allowed { limit: burst, remaining, reset_secs: refill(burst - remaining) }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(bucket.limiter.clock().now());
                let retry_after_secs = ceil_secs(wait).max(1);
                let full = wait + Duration::from_secs_f64(f64::from(burst - 1) / f64::from(per_second));
                Decision::Limited { limit: burst, retry_after_secs, reset_secs: ceil_secs(full) }
            }
        }
    }

    /// Forgets buckets that have refilled, at most once per [`PRUNE_EVERY`]; the request that
    /// finds the time has come does it.
    fn prune_now_and_then(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.pruned_at_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= PRUNE_EVERY.as_millis() as u64;
        if due && self.pruned_at_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            for bucket in self.buckets.values() {
                bucket.limiter.retain_recent();
                bucket.limiter.shrink_to_fit();
            }
        }
    }

    /// How many principals have a bucket now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.buckets.values().map(|b| b.limiter.len()).sum()
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Runs `inner` unless the principal is over its limit: after authentication, before
/// idempotency (so a 429 claims no key).
pub(crate) async fn around<F, Fut>(limiter: &RateLimiter, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let Some(principal) = request.extensions().get::<Principal>() else {
        return inner(request).await;
    };
    match limiter.check(principal.role, &principal.subject()) {
        Decision::Unlimited => inner(request).await,
        Decision::Allowed { limit, remaining, reset_secs } => {
            let mut response = inner(request).await;
            set_headers(response.headers_mut(), limit, remaining, reset_secs);
            response
        }
        Decision::Limited { limit, retry_after_secs, reset_secs } => {
            tracing::debug!(principal = %principal.subject(), retry_after_secs, "rate limited");
            let message = format!(
                "too many requests for this credential ({limit} at once); retry in {retry_after_secs} s"
            );
            let mut response = ApiError::RateLimited(message).into_response();
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            set_headers(headers, limit, 0, reset_secs);
            response
        }
    }
}

fn set_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset_secs: u64) {
    headers.insert(LIMIT_HEADER, HeaderValue::from(limit));
    headers.insert(REMAINING_HEADER, HeaderValue::from(remaining));
    headers.insert(RESET_HEADER, HeaderValue::from(reset_secs));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        let mut settings =
            RateLimitSettings { default: RateQuota { per_second, burst }, roles: BTreeMap::new() };
        settings.roles.insert(Role::Admin, RateQuota::UNLIMITED);
        settings.roles.insert(Role::Publisher, RateQuota { per_second: 1000, burst: 5 });
        RateLimiter::new(&settings)
    }

    #[test]
    fn a_bucket_empties_then_answers_when_to_retry() {
        let limiter = limiter(2, 3);
        let seen: Vec<Decision> = (0..4).map(|_| limiter.check(Role::Viewer, "key:a")).collect();
        assert_eq!(seen[0], Decision::Allowed { limit: 3, remaining: 2, reset_secs: 1 });
        assert_eq!(seen[2], Decision::Allowed { limit: 3, remaining: 0, reset_secs: 2 });
        match seen[3] {
            Decision::Limited { limit: 3, retry_after_secs: 1, reset_secs } => {
                assert!((1..=2).contains(&reset_secs))
            }
            other => panic!("expected a 429, got {other:?}"),
        }
    }

    #[test]
    fn principals_and_roles_have_their_own_buckets() {
        let limiter = limiter(1, 1);
        assert!(matches!(limiter.check(Role::Viewer, "key:a"), Decision::Allowed { .. }));
        assert!(matches!(limiter.check(Role::Viewer, "key:a"), Decision::Limited { .. }));
        assert!(matches!(limiter.check(Role::Viewer, "key:b"), Decision::Allowed { .. }));
        assert_eq!(limiter.check(Role::Admin, "key:a"), Decision::Unlimited);
        for _ in 0..5 {
            assert!(matches!(limiter.check(Role::Publisher, "key:p"), Decision::Allowed { limit: 5, .. }));
        }
        assert_eq!(limiter.tracked(), 3);
    }

    #[test]
    fn zero_per_second_turns_limiting_off() {
        let limiter =
            RateLimiter::new(&RateLimitSettings { default: RateQuota::UNLIMITED, roles: BTreeMap::new() });
        assert_eq!(limiter.check(Role::Viewer, "key:a"), Decision::Unlimited);
        assert_eq!(limiter.tracked(), 0);
    }
}
