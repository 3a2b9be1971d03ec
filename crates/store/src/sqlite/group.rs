//! Group commit: writes queued by many callers share one transaction and one fsync.
//!
//! With `synchronous = FULL` every commit waits for the disk, so a writer that commits each
//! request on its own is bound by the fsync rate, whatever the request size. The group writer
//! is one task that takes the first queued job, everything else queued behind it (up to a
//! bound), and runs them in one `BEGIN IMMEDIATE … COMMIT`, each inside a savepoint of its
//! own: a job that fails is rolled back to its savepoint and answered with its error at once,
//! the others go on. Each caller is answered only after the commit that holds its writes, with
//! its own result; a failed commit fails every job of the group.
//!
//! The queue is bounded: when it is full, callers wait to enqueue, which is back-pressure on
//! the requests that make them.

use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnection, SqlitePool};
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::subscription::Subscription;
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the writer, at most; further callers wait to enqueue.
const QUEUE: usize = 256;
/// Jobs in one transaction, at most.
const MAX_JOBS: usize = 256;
/// Rows (events) in one transaction, at most, so one commit stays short for those in it.
const MAX_WEIGHT: usize = 20_000;

type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;
/// Answers a job's caller once the fate of the transaction is known.
type Finish = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A job's writes; `None` when they failed and the caller was answered already.
type Work =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection, &'c mut Shared) -> BoxFuture<'c, Option<Finish>> + Send>;

/// What the jobs of one group read once for all of them. The transaction holds the write
/// lock throughout and no job writes what is here, so a value read by one job holds for the
/// rest of the group (a job rolled back to its savepoint undoes only its own writes).
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The enabled subscriptions, which route every ingested event.
    pub(super) subscriptions: Option<Arc<Vec<Subscription>>>,
}

struct Job {
    work: Work,
    /// Rows the job writes, roughly, to bound a group's size.
    weight: usize,
}

/// The queue in front of the group writer. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct GroupWriter {
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("weight", &self.weight).finish_non_exhaustive()
    }
}

impl GroupWriter {
    /// Starts the writer task on `writer`, the pool of the one write connection; it ends when
    /// the last clone of the returned queue is dropped.
    pub(super) fn start(writer: SqlitePool) -> GroupWriter {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, jobs));
        GroupWriter { queue }
    }

    /// Runs `work` in the next group transaction; answers its result once that committed.
    /// `weight` is about how many rows it writes.
    pub(super) async fn write<T, F>(&self, weight: usize, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection, &'c mut Shared) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        let work: Work = Box::new(move |conn, shared| {
            Box::pin(async move {
                match work(conn, shared).await {
                    Ok(value) => {
                        let finish: Finish = Box::new(move |committed| {
                            let _ = answer.send(committed.map(|()| value));
                        });
                        Some(finish)
                    }
                    Err(error) => {
                        let _ = answer.send(Err(error));
                        None
                    }
                }
            })
        });
        self.queue.send(Job { work, weight }).await.map_err(|_| not_run())?;
        answered.await.map_err(|_| not_run())?
    }
}

fn not_run() -> StoreError {
    StoreError::Backend("the write was not run: its group transaction failed to start (see the log)".into())
}

async fn run(writer: SqlitePool, mut jobs: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(MAX_JOBS);
    while let Some(first) = jobs.recv().await {
        let mut weight = first.weight;
        group.push(first);
        while group.len() < MAX_JOBS && weight < MAX_WEIGHT {
            match jobs.try_recv() {
                Ok(job) => {
                    weight += job.weight;
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&writer, group.drain(..)).await;
    }
}

async fn commit_group(writer: &SqlitePool, group: impl Iterator<Item = Job>) {
    let mut tx = match writer.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(error) => {
            let message = error.to_string();
            for job in group {
                fail(job, &message);
            }
            return;
        }
    };
    // One savepoint is open at a time. Releasing a job's and opening the next one's is one
    // call to the connection's thread, which is what a statement costs here, more than its work.
    if let Err(error) = sqlx::raw_sql("SAVEPOINT job").execute(&mut *tx).await {
        let message = error.to_string();
        for job in group {
            fail(job, &message);
        }
        return;
    }
    let mut finishes = Vec::new();
    let mut shared = Shared::default();
    for job in group {
        let kept = match (job.work)(&mut tx, &mut shared).await {
            Some(finish) => {
                finishes.push(finish);
                sqlx::raw_sql("RELEASE job; SAVEPOINT job").execute(&mut *tx).await
            }
            // The failed job's own writes are undone, those of the jobs before it stay, and
            // the savepoint stays open for the next.
            None => sqlx::raw_sql("ROLLBACK TO job").execute(&mut *tx).await,
        };
        if let Err(error) = kept {
            // The transaction is in an unknown state: give it up (dropping it rolls it back)
            // with every job of the group; the rest are answered as not run.
            tracing::error!(%error, "a savepoint of a group transaction failed");
            let message = error.to_string();
            for finish in finishes {
                finish(Err(StoreError::Backend(message.clone().into())));
            }
            return;
        }
    }
    // COMMIT releases the open savepoint with the transaction.
    let committed = tx.commit().await.map_err(|e| e.to_string());
    for finish in finishes {
        finish(committed.clone().map_err(|message| StoreError::Backend(message.into())));
    }
}

/// Drops a job that never ran: its caller's answer channel closes, which the caller reports
/// as [`not_run`]; the cause goes to the log.
fn fail(job: Job, message: &str) {
    tracing::error!(error = message, "a group write could not run");
    drop(job);
}
