//! What each source's requests came to on this node: counts since start, and whether its
//! latest requests all failed verification (a provider whose secret no longer matches ours).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use switchyard_core::id::SourceId;
use switchyard_core::time::Millis;

/// A source is failing when this many requests in a row failed verification.
pub const FAILING_AFTER: usize = 5;

pub(super) enum Outcome {
    Accepted,
    Duplicate,
    /// Why, for the status report.
    Unauthorized(String),
    Invalid,
    RateLimited,
    /// The hub failed (the store); says nothing about the source.
    Failed,
}

impl Outcome {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Unauthorized(_) => "unauthorized",
            Self::Invalid => "invalid",
            Self::RateLimited => "rate_limited",
            Self::Failed => "failed",
        }
    }
}

/// One source's requests on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceActivity {
    pub accepted: u64,
    pub duplicate: u64,
    pub unauthorized: u64,
    pub invalid: u64,
    pub rate_limited: u64,
    /// When the last request came (milliseconds since the Unix epoch); reports show it as a time.
    #[serde(skip)]
    pub last_request_at: Option<Millis>,
    /// Why the last refused request failed verification.
    pub last_rejection: Option<String>,
    /// The last requests (at least `FAILING_AFTER`) all failed verification.
    pub failing: bool,
}

#[derive(Default)]
struct Entry {
    shown: SourceActivity,
    /// Verification verdicts of the latest requests, newest last (true: refused).
    latest: VecDeque<bool>,
}

#[derive(Default)]
pub(super) struct Activity(Mutex<HashMap<SourceId, Entry>>);

impl Activity {
    /// Records a request; answers true when it made the source failing (once per run of
    /// refusals).
    pub(super) fn record(&self, id: &SourceId, outcome: Outcome, at: Millis) -> bool {
        let mut all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = all.entry(id.clone()).or_default();
        let shown = &mut entry.shown;
        shown.last_request_at = Some(at);
        let refused = match outcome {
            Outcome::Accepted => {
                shown.accepted += 1;
                false
            }
            Outcome::Duplicate => {
                shown.duplicate += 1;
                false
            }
            Outcome::Unauthorized(why) => {
                shown.unauthorized += 1;
                shown.last_rejection = Some(why);
                true
            }
            Outcome::Invalid => {
                shown.invalid += 1;
                false
            }
            Outcome::RateLimited => {
                shown.rate_limited += 1;
                false
            }
            Outcome::Failed => return false,
        };
        entry.latest.push_back(refused);
        if entry.latest.len() > FAILING_AFTER {
            entry.latest.pop_front();
        }
        let was_failing = entry.shown.failing;
        entry.shown.failing = entry.latest.len() == FAILING_AFTER && entry.latest.iter().all(|r| *r);
        entry.shown.failing && !was_failing
    }

    pub(super) fn forget(&self, id: &SourceId) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(id);
    }

    pub(super) fn snapshot(&self) -> HashMap<SourceId, SourceActivity> {
        let all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        all.iter().map(|(id, entry)| (id.clone(), entry.shown.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_fails_after_refusals_in_a_row_and_recovers_on_one_success() {
        let activity = Activity::default();
        let id = SourceId::generate();
        let failing = || activity.snapshot()[&id].failing;
        for _ in 0..FAILING_AFTER - 1 {
            assert!(!activity.record(&id, Outcome::Unauthorized("no signature matches".into()), 1));
        }
        assert!(!failing());
        assert!(activity.record(&id, Outcome::Unauthorized("no signature matches".into()), 2));
        assert!(failing());
        assert!(!activity.record(&id, Outcome::Unauthorized("no signature matches".into()), 2), "said once");
        activity.record(&id, Outcome::Accepted, 3);
        assert!(!failing());
        let shown = &activity.snapshot()[&id];
        assert_eq!(
            (shown.accepted, shown.unauthorized, shown.last_request_at),
            (1, FAILING_AFTER as u64 + 1, Some(3))
        );
        assert_eq!(shown.last_rejection.as_deref(), Some("no signature matches"));
    }
}
