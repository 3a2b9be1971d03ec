//! Whether SQLite's writer can write: what `ping`, hence `/health/ready`, reports of it.
//!
//! Nothing short of a write shows that the database has room for one, and a write on every
//! readiness probe would cost an fsync each time. So the group writer remembers its last
//! failure for lack of storage (out of space, or an I/O error on the database's files); only
//! while one is remembered does readiness try a write of its own, and it forgets the failure
//! when that write commits ([`super::group::GroupWriter::ready`]). Other writes do not clear
//! it: a small one may fit in the room pages have left while larger ones still fail, and a node
//! taken out of rotation, which receives no writes, still sees space come back.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use switchyard_core::store::{StorageFailure, StoreError};

/// The writer's last failure for lack of storage, until readiness finds room again. Cheap to
/// clone: clones share it.
#[derive(Debug, Clone, Default)]
pub(super) struct WriterHealth(Arc<Mutex<Option<Failing>>>);

#[derive(Debug, Clone)]
struct Failing {
    failure: StorageFailure,
    /// The first failure of this stretch.
    since: Instant,
}

impl WriterHealth {
    /// Remembers that a write failed with `failure`.
    pub(super) fn failed(&self, failure: &StorageFailure) {
        let mut failing = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let since = failing.as_ref().map_or_else(Instant::now, |f| f.since);
        *failing = Some(Failing { failure: failure.clone(), since });
    }

    /// Forgets the last failure: readiness's write found room.
    pub(super) fn recovered(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Remembers the storage failure `error` reports, if it reports one.
    pub(super) fn note(&self, error: &StoreError) {
        if let Some(failure) = error.storage_failure() {
            self.failed(failure);
        }
    }

    /// Whether a failure is remembered.
    pub(super) fn is_failing(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// The remembered failure, as the error readiness answers; `None` when there is none.
    pub(super) fn error(&self) -> Option<StoreError> {
        let failing = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()?;
        let error = WriterFailing { seconds: failing.since.elapsed().as_secs(), failure: failing.failure };
        Some(StoreError::Unavailable(Box::new(error)))
    }
}

/// The writer has failed to write since `seconds` ago, the last time with `failure`.
#[derive(Debug, thiserror::Error)]
#[error("the writer cannot write (failing for {seconds} s): {failure}")]
struct WriterFailing {
    seconds: u64,
    failure: StorageFailure,
}
