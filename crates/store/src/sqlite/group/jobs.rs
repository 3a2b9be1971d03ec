//! A group's jobs and how they run in its transaction.
//!
//! A failed job must leave no write behind, and the jobs before it keep theirs. A savepoint
//! around each job does that, but costs every job a copy of each page it touches (into the
//! savepoint's sub-journal), though jobs almost never fail. So on the writer's own connection
//! the jobs first run together with no savepoint ([`run_together`]); when one fails, the
//! transaction is rolled back and begun again, and the others run once more, each inside a
//! savepoint of its own ([`run_each_alone`]), which is how a borrowed connection always runs
//! them. A job may therefore run twice: its work is `FnMut`, and keeps nothing of a run that
//! was rolled back ([`Call::undo`]).

use switchyard_core::store::{StorageFailure, StoreError, StoreResult};
use tokio::sync::oneshot;

use super::{Shared, WriterHealth, not_run, run_cached};
use crate::error::map_direct_err;

/// A caller's writes, which may run more than once, and the answer it waits for.
pub(super) trait Call: Send {
    /// Runs the writes on `conn`, keeping what they answer until the group's fate is known. A
    /// failure is answered at once; `Err` carries the storage failure behind it, if that was why.
    fn run(&mut self, conn: &rusqlite::Connection, shared: &Shared) -> Result<(), Option<StorageFailure>>;
    /// The writes of the last run were rolled back: drops what it kept.
    fn undo(&mut self);
    /// Answers the caller: what the last run kept if `committed` holds, its error otherwise.
    fn finish(self: Box<Self>, committed: StoreResult<()>);
}

/// The [`Call`] of a closure whose answer is `T`.
pub(super) struct Answered<T, F> {
    work: F,
    kept: Option<T>,
    /// Taken when the caller is answered.
    answer: Option<oneshot::Sender<StoreResult<T>>>,
}

impl<T, F> Answered<T, F> {
    pub(super) fn new(work: F, answer: oneshot::Sender<StoreResult<T>>) -> Self {
        Self { work, kept: None, answer: Some(answer) }
    }
}

impl<T, F> Call for Answered<T, F>
where
    T: Send + 'static,
    F: FnMut(&rusqlite::Connection, &Shared) -> StoreResult<T> + Send + 'static,
{
    fn run(&mut self, conn: &rusqlite::Connection, shared: &Shared) -> Result<(), Option<StorageFailure>> {
        match (self.work)(conn, shared) {
            Ok(value) => {
                self.kept = Some(value);
                Ok(())
            }
            Err(error) => {
                let storage = error.storage_failure().cloned();
                if let Some(answer) = self.answer.take() {
                    let _ = answer.send(Err(error));
                }
                Err(storage)
            }
        }
    }

    fn undo(&mut self) {
        self.kept = None;
    }

    fn finish(self: Box<Self>, committed: StoreResult<()>) {
        let Self { work, kept, answer } = *self;
        // What the work holds goes before the caller wakes, so that the caller is the only
        // owner left of anything it shared with the work.
        drop(work);
        if let Some(answer) = answer {
            let _ = answer.send(committed.and_then(|()| kept.ok_or_else(not_run)));
        }
    }
}

/// A queued call with what the writer sizes groups by.
pub(super) struct Job {
    pub(super) call: Box<dyn Call>,
    /// Rows the job writes, roughly, to bound a group's size.
    pub(super) weight: usize,
    /// Whether the job routes events, so the group reads the subscriptions first.
    pub(super) routes: bool,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("weight", &self.weight).finish_non_exhaustive()
    }
}

impl Job {
    /// Answers the job: with its kept result if `committed` holds and it wrote, otherwise with
    /// the error.
    pub(super) fn finish(self, committed: StoreResult<()>) {
        self.call.finish(committed);
    }
}

/// Why [`run_together`] stopped short.
pub(super) enum Apart {
    /// A job failed and was answered (and removed); the writes of the others must be rolled
    /// back, and they run again alone.
    Failed,
    /// The transaction cannot go on.
    Broken(StoreError),
}

/// Runs `jobs` in order on `conn` with no savepoint. On `Ok`, every job wrote. On
/// [`Apart::Failed`] the failed job is answered and gone from `jobs`, and the others keep
/// nothing of their run; their writes are still in the transaction, to be rolled back.
pub(super) fn run_together(
    conn: &rusqlite::Connection,
    jobs: &mut Vec<Job>,
    shared: &Shared,
    health: &WriterHealth,
) -> Result<(), Apart> {
    for index in 0..jobs.len() {
        if let Err(storage) = run_one(conn, &mut jobs[index], shared) {
            jobs.remove(index);
            went_on_after(conn, storage, health).map_err(Apart::Broken)?;
            for job in jobs.iter_mut() {
                job.call.undo();
            }
            return Err(Apart::Failed);
        }
    }
    Ok(())
}

/// Runs `jobs` each inside the savepoint `job`: a failed job's own writes are undone, those of
/// the jobs before it stay. One savepoint is open at a time; `COMMIT` releases the last. On
/// `Ok`, `jobs` holds those that wrote; the others were answered and removed. On `Err` the
/// transaction cannot go on, and `jobs` holds every job not answered yet, to be given up.
pub(super) fn run_each_alone(
    conn: &rusqlite::Connection,
    jobs: &mut Vec<Job>,
    shared: &Shared,
    health: &WriterHealth,
) -> StoreResult<()> {
    run_cached(conn, "SAVEPOINT job").map_err(map_direct_err)?;
    let mut index = 0;
    while index < jobs.len() {
        let kept = match run_one(conn, &mut jobs[index], shared) {
            Ok(()) => {
                index += 1;
                run_cached(conn, "RELEASE job").and_then(|()| run_cached(conn, "SAVEPOINT job"))
            }
            Err(storage) => {
                jobs.remove(index);
                went_on_after(conn, storage, health)?;
                run_cached(conn, "ROLLBACK TO job")
            }
        };
        kept.map_err(map_direct_err)?;
    }
    Ok(())
}

/// Runs one job. One that panics is a failed job, its caller answered as not run when it is
/// dropped: the group, and the writer that later groups need, go on.
fn run_one(
    conn: &rusqlite::Connection,
    job: &mut Job,
    shared: &Shared,
) -> Result<(), Option<StorageFailure>> {
    let call = &mut job.call;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.run(conn, shared))).unwrap_or(Err(None))
}

/// After a failed job: whether the transaction is still open. SQLite may have rolled it all
/// back with the failed statement (for lack of space, on an I/O error).
fn went_on_after(
    conn: &rusqlite::Connection,
    storage: Option<StorageFailure>,
    health: &WriterHealth,
) -> StoreResult<()> {
    if let Some(failure) = &storage {
        health.failed(failure);
    }
    if !conn.is_autocommit() {
        return Ok(());
    }
    Err(match storage {
        Some(failure) => StoreError::Unavailable(Box::new(failure)),
        None => StoreError::Backend("SQLite rolled back the group's transaction".into()),
    })
}
