//! What each pull source's reader on this node is doing, for the status report: its state,
//! what its messages came to, and the last failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use switchyard_core::id::SourceId;
use switchyard_core::time::Millis;

/// A reader is failing once this many attempts in a row to lease, connect or read failed.
pub const PULL_FAILING_AFTER: u32 = 3;

/// One pull source's reader on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PullStatus {
    /// `reading` (this node holds the source's lease and reads it), `standby` (another node
    /// does), `connecting`, or `failing` (the last attempts failed; `last_error` says why).
    #[schema(example = "reading")]
    pub state: String,
    /// Messages that became events since this node started.
    pub accepted: u64,
    /// Messages whose event was already stored (read again after a crash, or relayed twice).
    pub duplicate: u64,
    /// Messages that are not events (see `last_invalid`): a broker's are acknowledged and
    /// dropped, an outbox's rows are left in place and read past.
    pub invalid: u64,
    /// Why the last invalid message was refused.
    pub last_invalid: Option<String>,
    /// Why the last attempt to lease, connect or read failed; cleared by a good batch.
    pub last_error: Option<String>,
    /// Attempts in a row that failed.
    #[serde(skip)]
    pub failures: u32,
    /// The last [`PULL_FAILING_AFTER`] attempts failed.
    pub failing: bool,
    /// How long the oldest message of the last batch waited at its origin (outbox rows); 0
    /// once a read finds nothing waiting.
    pub lag_ms: Option<u64>,
    /// Messages waiting at the origin when last asked, where the origin says.
    pub backlog: Option<u64>,
    /// When this node last read a batch with messages (milliseconds since the Unix epoch).
    #[serde(skip)]
    pub last_batch_at: Option<Millis>,
}

/// What one batch came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchCounts {
    pub accepted: u64,
    pub duplicate: u64,
    pub invalid: u64,
}

/// The statuses of every reader on this node, shared between the readers and the report.
#[derive(Clone, Default)]
pub(crate) struct Statuses(Arc<Mutex<HashMap<SourceId, PullStatus>>>);

impl Statuses {
    pub fn snapshot(&self) -> HashMap<SourceId, PullStatus> {
        self.lock().clone()
    }

    pub fn forget(&self, id: &SourceId) {
        self.lock().remove(id);
    }

    pub fn set_state(&self, id: &SourceId, state: &str) {
        self.update(id, |s| s.state = state.to_owned());
    }

    /// Counts a failure; answers the failures in a row when this one made the reader
    /// failing, once per run of failures.
    pub fn failed(&self, id: &SourceId, error: &str) -> Option<u32> {
        let mut became_failing = None;
        self.update(id, |s| {
            s.failures = s.failures.saturating_add(1);
            if !s.failing && s.failures >= PULL_FAILING_AFTER {
                became_failing = Some(s.failures);
            }
            s.failing = s.failures >= PULL_FAILING_AFTER;
            s.last_error = Some(error.to_owned());
            if s.failing {
                s.state = "failing".to_owned();
            }
        });
        became_failing
    }

    pub fn invalid(&self, id: &SourceId, why: &str) {
        self.update(id, |s| s.last_invalid = Some(why.to_owned()));
    }

    /// A batch read, stored and acknowledged (or a read that found nothing).
    pub fn read(&self, id: &SourceId, counts: BatchCounts, lag_ms: u64, backlog: Option<u64>, now: Millis) {
        self.update(id, |s| {
            s.state = "reading".to_owned();
            s.accepted += counts.accepted;
            s.duplicate += counts.duplicate;
            s.invalid += counts.invalid;
            s.failures = 0;
            s.failing = false;
            s.last_error = None;
            s.lag_ms = Some(lag_ms);
            if backlog.is_some() {
                s.backlog = backlog;
            }
            if counts != BatchCounts::default() {
                s.last_batch_at = Some(now);
            }
        });
    }

    fn update(&self, id: &SourceId, change: impl FnOnce(&mut PullStatus)) {
        change(self.lock().entry(id.clone()).or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SourceId, PullStatus>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_fails_after_attempts_in_a_row_and_a_good_batch_clears_it() {
        let statuses = Statuses::default();
        let id = SourceId::generate();
        for _ in 1..PULL_FAILING_AFTER {
            assert_eq!(statuses.failed(&id, "connection refused"), None);
        }
        assert!(!statuses.snapshot()[&id].failing);
        assert_eq!(statuses.failed(&id, "connection refused"), Some(PULL_FAILING_AFTER));
        assert_eq!(statuses.failed(&id, "connection refused"), None, "said once per run of failures");
        let failing = &statuses.snapshot()[&id];
        assert!(failing.failing);
        assert_eq!(
            (failing.state.as_str(), failing.last_error.as_deref()),
            ("failing", Some("connection refused"))
        );

        let counts = BatchCounts { accepted: 2, duplicate: 1, invalid: 1 };
        statuses.read(&id, counts, 40, Some(7), 1_000);
        let read = &statuses.snapshot()[&id];
        assert!(!read.failing && read.last_error.is_none());
        assert_eq!((read.accepted, read.duplicate, read.invalid, read.lag_ms), (2, 1, 1, Some(40)));
        assert_eq!((read.backlog, read.last_batch_at), (Some(7), Some(1_000)));
    }
}
