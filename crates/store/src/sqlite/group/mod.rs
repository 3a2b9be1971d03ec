//! Group commit: writes queued by many callers share one transaction and one fsync.
//!
//! With `synchronous = FULL` every commit waits for the disk, so a writer that commits each
//! request on its own is bound by the fsync rate, whatever the request size. The group writer
//! is one task that takes the first queued job, everything else queued behind it (up to a
//! bound), and runs them in one `BEGIN IMMEDIATE … COMMIT`. A job that fails is undone alone
//! (see `jobs.rs` for how) and answered with its error at once; the others go on. Each caller
//! is answered only after the commit that holds its writes, with its own result; a failed
//! commit fails every job of the group. So does a job that failed for lack of space or on an
//! I/O error when SQLite rolled the whole transaction back for it, as it may: the jobs before
//! it lost their writes with it.
//!
//! The queue is bounded: when it is full, callers wait to enqueue, which is back-pressure on
//! the requests that make them.
//!
//! Through sqlx, each statement is a round trip to the connection's own thread, which costs
//! more than the statement's work; and statements prepared on a handle sqlx owns must be
//! finalized before sqlx may close it, so they cannot outlive a group. A database file gets a
//! write connection of the writer's own ([`Writes::Own`], rusqlite): every group's `BEGIN`,
//! statements and `COMMIT` run on it, its statements stay prepared from group to group
//! (preparing them for each group cost about a seventh of the write path's CPU), and `COMMIT`,
//! which waits for the fsync, runs on a blocking thread so that it does not hold up a runtime
//! worker. While it writes groups the writer also holds sqlx's one write connection (the turn,
//! `turn.rs`, kept from group to group until another writer asks for it): sqlx's own writers
//! (claims, the control plane) wait for it in the process, as they wait for each other,
//! instead of meeting a locked file. An in-memory database cannot be
//! opened twice, so there the group takes sqlx's connection's handle once (`lock_handle`:
//! sqlx's thread waits meanwhile) and runs the group on it, `BEGIN` and `COMMIT` through sqlx
//! ([`Writes::Borrowed`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::subscription::Subscription;
use tokio::sync::{mpsc, oneshot};

use super::writer_health::WriterHealth;
use crate::gather::gather_after;
use jobs::{Answered, Job, run_each_alone};
use own::commit_own;

mod jobs;
mod own;
mod turn;
use crate::error::{map_direct_err, map_err};
use crate::rows::{SubscriptionRow, decode_all};
use crate::sql;

/// Jobs waiting for the writer, at most; further callers wait to enqueue.
const QUEUE: usize = 256;
/// Jobs in one transaction, at most.
const MAX_JOBS: usize = 256;
/// Rows (events) in one transaction, at most: the jobs run on a runtime worker without
/// yielding, so this bounds how long it is taken (a few milliseconds), and one commit stays
/// short for those in it. One call may weigh more (a batch of 1 000); it then runs alone.
const MAX_WEIGHT: usize = 5_000;

/// What the jobs of one group read once for all of them. The transaction holds the write
/// lock throughout and no job writes what is here, so a value read by one job holds for the
/// rest of the group (a job rolled back undoes only its own writes).
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The enabled subscriptions, which route every ingested event; read before the first
    /// job that routes.
    subscriptions: Option<Arc<Vec<Subscription>>>,
    /// The paused destinations' ids, read with the subscriptions.
    paused: Option<HashSet<String>>,
}

impl Shared {
    /// The enabled subscriptions, as read for this group.
    pub(super) fn subscriptions(&self) -> StoreResult<&[Subscription]> {
        self.subscriptions
            .as_deref()
            .map(Vec::as_slice)
            .ok_or_else(|| StoreError::Backend("the group did not read the subscriptions".into()))
    }

    /// The paused destinations' ids, as read for this group (with the subscriptions).
    pub(super) fn paused(&self) -> StoreResult<&HashSet<String>> {
        self.paused
            .as_ref()
            .ok_or_else(|| StoreError::Backend("the group did not read the subscriptions".into()))
    }

    /// Reads the subscriptions and the paused destinations inside the group's transaction,
    /// once, if `needed`.
    fn read_subscriptions(&mut self, conn: &rusqlite::Connection, needed: bool) -> StoreResult<()> {
        if needed && self.subscriptions.is_none() {
            let rows = conn
                .prepare_cached(sql::ENABLED_SUBSCRIPTIONS)
                .and_then(|mut statement| {
                    statement.query_map([], SubscriptionRow::from_direct)?.collect::<Result<Vec<_>, _>>()
                })
                .map_err(map_direct_err)?;
            let paused = conn
                .prepare_cached(sql::PAUSED_DESTINATIONS)
                .and_then(|mut statement| {
                    statement.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<HashSet<_>, _>>()
                })
                .map_err(map_direct_err)?;
            self.subscriptions = Some(Arc::new(decode_all(rows)?));
            self.paused = Some(paused);
        }
        Ok(())
    }
}

/// The queue in front of the group writer. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct GroupWriter {
    queue: mpsc::Sender<Job>,
    health: WriterHealth,
    /// sqlx's writers waiting for the write connection, which the writer holds from group to
    /// group while nobody else wants it (`turn.rs`).
    wanted: turn::TurnWanted,
}

/// Where a group's statements run.
pub(super) enum Writes {
    /// On the handle of sqlx's write connection, for each group anew.
    Borrowed,
    /// On a connection of the writer's own to the database file at `path`, opened with
    /// `busy_timeout`; `None` until opened, and while a commit has it.
    Own { path: PathBuf, busy_timeout: Duration, conn: Option<rusqlite::Connection> },
}

impl Writes {
    /// A connection of the writer's own to the database file at `path` (opened when first
    /// needed).
    pub(super) fn own(path: PathBuf, busy_timeout: Duration) -> Self {
        Self::Own { path, busy_timeout, conn: None }
    }
}

impl GroupWriter {
    /// Starts the writer task on `writer`, the pool of the one write connection, running the
    /// groups as `writes` says; it ends when the last clone of the returned queue is dropped.
    pub(super) fn start(writer: SqlitePool, writes: Writes) -> GroupWriter {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let health = WriterHealth::default();
        let wanted = turn::TurnWanted::default();
        tokio::spawn(run(writer, writes, jobs, health.clone(), wanted.clone()));
        GroupWriter { queue, health, wanted }
    }

    /// Counts a writer of sqlx's as waiting for the write connection until the guard is
    /// dropped, so that the group writer gives it back after its group.
    pub(super) fn want_turn(&self) -> turn::Announced {
        self.wanted.announce()
    }

    /// Caps the database at `pages` pages on the connection the groups write with
    /// (`SqliteStore::cap_writer_pages`); answers the cap in force.
    pub(super) async fn cap_pages(&self, pages: u32) -> StoreResult<u32> {
        self.write(1, false, move |conn, _| {
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |row| row.get(0))
                .map_err(map_direct_err)
        })
        .await
    }

    /// Whether the writer can write: yes, unless a write failed for lack of storage since the
    /// last time this found room. Then this tries a write of its own ([`probe`]), and answers
    /// the remembered failure while that fails.
    pub(super) async fn ready(&self) -> StoreResult<()> {
        if !self.health.is_failing() {
            return Ok(());
        }
        match self.write(1, false, probe).await {
            Ok(()) => {
                self.health.recovered();
                Ok(())
            }
            Err(error) => Err(self.health.error().unwrap_or(error)),
        }
    }

    /// Runs `work` in the next group transaction; answers its result once that committed.
    /// `work` may run more than once, the writes of all but its last run rolled back (see
    /// `jobs.rs`). `weight` is about how many rows it writes; `routes` says whether `work`
    /// reads [`Shared::subscriptions`].
    pub(super) async fn write<T, F>(&self, weight: usize, routes: bool, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&rusqlite::Connection, &Shared) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        let call = Box::new(Answered::new(work, answer));
        self.queue.send(Job { call, weight, routes }).await.map_err(|_| not_run())?;
        answered.await.map_err(|_| not_run())?
    }
}

/// The room readiness wants before it reports the writer ready again: a write that fits in the
/// room pages have left proves nothing, and this is more than most requests write.
const PROBE_BYTES: usize = 64 * 1024;

/// Readiness's write: a table holding [`PROBE_BYTES`] of zeroes, created and dropped in one
/// commit. It needs that much room in the database (free pages, or the file's growth, up to the
/// disk or `max_page_count`) and a commit, and leaves only free pages behind.
fn probe(conn: &rusqlite::Connection, _: &Shared) -> StoreResult<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE switchyard_write_probe (filler BLOB); \
         INSERT INTO switchyard_write_probe VALUES (zeroblob({PROBE_BYTES})); \
         DROP TABLE switchyard_write_probe"
    ))
    .map_err(map_direct_err)
}

pub(super) fn not_run() -> StoreError {
    StoreError::Backend(
        "the write was not run: the group writer stopped, or the write panicked (see the log)".into(),
    )
}

async fn run(
    writer: SqlitePool,
    mut writes: Writes,
    mut jobs: mpsc::Receiver<Job>,
    health: WriterHealth,
    wanted: turn::TurnWanted,
) {
    let mut turn = turn::Turn::new(writer.clone(), wanted);
    while let Some(first) = next_call(&mut jobs, &mut turn).await {
        let group = gather_after(first, &mut jobs, MAX_JOBS, MAX_WEIGHT, |job| job.weight).await;
        match &mut writes {
            Writes::Borrowed => commit_group(&writer, group, &health).await,
            Writes::Own { path, busy_timeout, conn } => {
                commit_own(&mut turn, conn, path, *busy_timeout, group, &health).await;
            }
        }
    }
}

/// The next call from `jobs`, `None` once every sender is gone. While the writer holds the
/// turn it waits for one for at most [`turn::LINGER`], then gives the turn back and waits as
/// long as it takes.
async fn next_call(jobs: &mut mpsc::Receiver<Job>, turn: &mut turn::Turn) -> Option<Job> {
    // A writer may have asked while the last group committed or its callers were answered.
    turn.after_group();
    if turn.is_held() {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        if let Ok(job) = tokio::time::timeout(turn::LINGER, jobs.recv()).await {
            return job;
        }
        turn.give_back();
    }
    jobs.recv().await
}

/// Runs `group` in one transaction. Whatever fails, the transaction is given up (dropping it
/// rolls it back; see `abandoned.rs` for when SQLite already did) and every job is answered.
async fn commit_group(writer: &SqlitePool, group: Vec<Job>, health: &WriterHealth) {
    let mut tx = match writer.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(error) => return fail_all(group, &map_err(error), health),
    };
    let routes = group.iter().any(|job| job.routes);
    let mut jobs = group;
    let ran = match tx.lock_handle().await {
        // SAFETY: the handle is open, and sqlx's thread leaves it alone while `handle` is
        // held, which outlives `conn`; a connection made by `from_handle` never closes the
        // handle, and dropping it finalizes the statements it prepared.
        Ok(mut handle) => match unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }
        {
            // sqlx's transaction is not this connection's to roll back and begin again: each
            // job runs inside a savepoint of its own.
            Ok(conn) => {
                let mut shared = Shared::default();
                shared
                    .read_subscriptions(&conn, routes)
                    .and_then(|()| run_each_alone(&conn, &mut jobs, &shared, health))
            }
            Err(error) => Err(map_direct_err(error)),
        },
        Err(error) => Err(map_err(error)),
    };
    if let Err(error) = ran {
        return give_up(&error, jobs, health);
    }
    // COMMIT releases the open savepoint with the transaction.
    let committed = tx.commit().await.map_err(map_err);
    answer_committed(&committed, jobs, health);
}

/// Answers the jobs that wrote in a group once its commit is known.
fn answer_committed(committed: &StoreResult<()>, wrote: Vec<Job>, health: &WriterHealth) {
    if let Err(error) = committed {
        tracing::error!(%error, jobs = wrote.len(), "a group commit failed");
        health.note(error);
    }
    for job in wrote {
        job.finish(committed.as_ref().map(|_| ()).map_err(like));
    }
}

/// Answers the jobs of a group given up for `error`, those that wrote and those not run.
fn give_up(error: &StoreError, jobs: Vec<Job>, health: &WriterHealth) {
    tracing::error!(%error, "a group transaction was given up");
    health.note(error);
    for job in jobs {
        job.finish(Err(like(error)));
    }
}

/// Runs a statement without parameters, prepared once per connection.
fn run_cached(conn: &rusqlite::Connection, statement: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.raw_execute().map(drop)
}

/// Answers every job of a group that could not run with `error`: unavailability when the
/// database was busy, unreachable or out of space, so callers may try again.
fn fail_all(group: Vec<Job>, error: &StoreError, health: &WriterHealth) {
    tracing::error!(%error, jobs = group.len(), "a group write could not run");
    health.note(error);
    for job in group {
        job.finish(Err(like(error)));
    }
}

/// An error of the same kind and message as `error`, for each of the callers it concerns.
fn like(error: &StoreError) -> StoreError {
    if let Some(failure) = error.storage_failure() {
        return StoreError::Unavailable(Box::new(failure.clone()));
    }
    match error {
        StoreError::Unavailable(source) => StoreError::Unavailable(source.to_string().into()),
        other => StoreError::Backend(other.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;

    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    async fn writer() -> GroupWriter {
        let pool =
            SqlitePoolOptions::new().max_connections(1).connect("sqlite::memory:").await.expect("pool");
        sqlx::query("CREATE TABLE marks (name TEXT NOT NULL)").execute(&pool).await.expect("table");
        GroupWriter::start(pool, Writes::Borrowed)
    }

    fn mark(conn: &rusqlite::Connection, name: &str) -> StoreResult<i64> {
        conn.execute("INSERT INTO marks (name) VALUES (?1)", [name]).map_err(map_direct_err)?;
        conn.query_row("SELECT COUNT(*) FROM marks", [], |row| row.get(0)).map_err(map_direct_err)
    }

    #[tokio::test]
    async fn a_job_that_panics_fails_alone_and_the_writer_goes_on() {
        let (_dir, _pool, own) = own_writer().await;
        for writer in [writer().await, own] {
            let panicked = writer
                .write(1, false, |conn, _| {
                    mark(conn, "before the panic")?;
                    panic!("a bug in a job");
                    #[allow(unreachable_code)]
                    Ok(())
                })
                .await;
            assert!(matches!(panicked, Err(StoreError::Backend(_))), "{panicked:?}");
            // The panicking job's own row was rolled back.
            let count =
                writer.write(1, false, |conn, _| mark(conn, "after")).await.expect("the next job runs");
            assert_eq!(count, 1);
        }
    }

    /// Queues, behind a job that holds the writer for a while, a job that writes `a`, one that
    /// writes `b` and then fails, and one that writes `c`, so that the three share a group;
    /// answers their results and how often the first one ran.
    async fn a_group_with_a_failure(writer: &GroupWriter) -> (Vec<StoreResult<i64>>, usize) {
        let holding = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(1, false, |conn, _| {
                        std::thread::sleep(Duration::from_millis(300));
                        mark(conn, "holding")
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let runs = Arc::new(AtomicUsize::new(0));
        let mut jobs = Vec::new();
        for name in ["a", "b", "c"] {
            let (writer, runs) = (writer.clone(), runs.clone());
            jobs.push(tokio::spawn(async move {
                writer
                    .write(1, false, move |conn, _| {
                        if name == "a" {
                            runs.fetch_add(1, SeqCst);
                        }
                        let count = mark(conn, name)?;
                        if name == "b" {
                            return Err(StoreError::Backend("b fails after its write".into()));
                        }
                        Ok(count)
                    })
                    .await
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        holding.await.expect("the task").expect("the holding job");
        let mut results = Vec::new();
        for job in jobs {
            results.push(job.await.expect("the task"));
        }
        (results, runs.load(SeqCst))
    }

    async fn names(writer: &GroupWriter) -> Vec<String> {
        writer
            .write(1, false, |conn, _| {
                let mut statement =
                    conn.prepare("SELECT name FROM marks ORDER BY rowid").map_err(map_direct_err)?;
                let names = statement.query_map([], |row| row.get(0)).map_err(map_direct_err)?;
                names.collect::<Result<Vec<String>, _>>().map_err(map_direct_err)
            })
            .await
            .expect("the names")
    }

    fn assert_only_the_failed_job_wrote_nothing(results: &[StoreResult<i64>]) {
        assert_eq!(results[0].as_ref().ok(), Some(&2), "a wrote after the holding job: {results:?}");
        assert!(
            matches!(&results[1], Err(StoreError::Backend(m)) if m.to_string().contains("b fails")),
            "b answers its own error: {results:?}"
        );
        assert_eq!(results[2].as_ref().ok(), Some(&3), "c counts a, not b: {results:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_its_own_connection_a_failed_job_makes_the_others_of_its_group_run_again_alone() {
        let (_dir, _pool, writer) = own_writer().await;
        let (results, runs) = a_group_with_a_failure(&writer).await;
        assert_only_the_failed_job_wrote_nothing(&results);
        // Its first run, with b's, was rolled back; the second stands, and only it.
        assert_eq!(runs, 2, "a ran again after b failed in their group");
        assert_eq!(names(&writer).await, ["holding", "a", "c"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_borrowed_connection_a_failed_job_is_undone_alone() {
        let writer = writer().await;
        let (results, runs) = a_group_with_a_failure(&writer).await;
        assert_only_the_failed_job_wrote_nothing(&results);
        assert_eq!(runs, 1, "each job ran once, inside a savepoint of its own");
        assert_eq!(names(&writer).await, ["holding", "a", "c"]);
    }

    /// A writer with a connection of its own to a fresh database file, and sqlx's pool.
    async fn own_writer() -> (tempfile::TempDir, SqlitePool, GroupWriter) {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("db.sqlite");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("pool");
        sqlx::query("CREATE TABLE marks (name TEXT NOT NULL)").execute(&pool).await.expect("table");
        let writer = GroupWriter::start(pool.clone(), Writes::own(path, std::time::Duration::from_secs(5)));
        (dir, pool, writer)
    }

    #[tokio::test]
    async fn the_own_connection_waits_for_a_lock_another_process_holds() {
        let (dir, _pool, writer) = own_writer().await;
        let other = rusqlite::Connection::open(dir.path().join("db.sqlite")).expect("another connection");
        other.execute_batch("BEGIN IMMEDIATE; INSERT INTO marks VALUES ('other')").expect("its lock");
        let mine = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write(1, false, |conn, _| mark(conn, "mine")).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!mine.is_finished(), "the group waits while the lock is held");
        other.execute_batch("COMMIT").expect("commit");
        assert_eq!(mine.await.expect("the task").expect("the write"), 2, "then it writes after the other");
    }

    #[tokio::test]
    async fn the_own_connection_is_set_as_sqlx_connections_are() {
        let (_dir, _pool, writer) = own_writer().await;
        let settings = writer
            .write(1, false, |conn, _| {
                let read = |pragma: &str| conn.pragma_query_value(None, pragma, |row| row.get::<_, i64>(0));
                Ok([
                    read("synchronous"),
                    read("foreign_keys"),
                    read("temp_store"),
                    read("wal_autocheckpoint"),
                ])
            })
            .await
            .expect("a write");
        // FULL, ON, MEMORY, 4 000 pages.
        assert_eq!(settings.map(Result::ok), [Some(2), Some(1), Some(2), Some(4000)]);
    }

    #[tokio::test]
    async fn sqlx_writers_take_turns_with_the_own_connection() {
        let (_dir, pool, writer) = own_writer().await;
        let mut writes = tokio::task::JoinSet::new();
        for n in 0..50 {
            let (pool, writer) = (pool.clone(), writer.clone());
            writes.spawn(async move {
                if n % 2 == 0 {
                    writer.write(1, false, move |conn, _| mark(conn, &format!("group {n}"))).await.map(drop)
                } else {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
                    sqlx::query("INSERT INTO marks VALUES ('sqlx')")
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    tx.commit().await.map_err(map_err)
                }
            });
        }
        while let Some(done) = writes.join_next().await {
            done.expect("the task").expect("no write meets a locked file");
        }
        assert_eq!(count_marks(&pool).await, 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlx_writers_get_the_turn_while_groups_keep_coming() {
        let (_dir, pool, writer) = own_writer().await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut load = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (writer, stop) = (writer.clone(), stop.clone());
            load.spawn(async move {
                while !stop.load(SeqCst) {
                    writer.write(1, false, |conn, _| mark(conn, "load")).await.expect("a group write");
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let written_before = count_marks(&pool).await;
        let insert_sqlx = |pool: SqlitePool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
            sqlx::query("INSERT INTO marks VALUES ('sqlx')").execute(&mut *tx).await.map_err(map_err)?;
            tx.commit().await.map_err(map_err)
        };
        // One that asks for the turn, as the store's writes do, and one that does not: each
        // gets it while the groups go on (no group writer goes idle here), the second once
        // the writer has held it for long enough. (`turn.rs` tests which one it gives to.)
        let asking = writer.want_turn();
        let asked = tokio::time::timeout(Duration::from_secs(5), insert_sqlx(pool.clone())).await;
        drop(asking);
        let plain = tokio::time::timeout(Duration::from_secs(5), insert_sqlx(pool.clone())).await;
        let written_after = count_marks(&pool).await;
        stop.store(true, SeqCst);
        while let Some(done) = load.join_next().await {
            done.expect("a load task");
        }
        asked.expect("the writer that asked got the turn").expect("its insert");
        plain.expect("the writer that did not ask got the turn").expect("its insert");
        assert!(written_after > written_before + 2, "groups were written meanwhile");
    }

    async fn count_marks(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM marks").fetch_one(pool).await.expect("count")
    }

    #[tokio::test]
    async fn an_idle_writer_gives_the_turn_back() {
        let (_dir, pool, writer) = own_writer().await;
        writer.write(1, false, |conn, _| mark(conn, "one")).await.expect("a write");
        // Given back after LINGER, then taken back by sqlx on a task of its own.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while pool.try_acquire().is_none() {
            assert!(tokio::time::Instant::now() < deadline, "sqlx's write connection is idle again");
            tokio::time::sleep(turn::LINGER).await;
        }
    }

    #[tokio::test]
    async fn a_job_that_reads_subscriptions_without_saying_so_gets_an_error() {
        let writer = writer().await;
        let result = writer.write(1, false, |_, shared| shared.subscriptions().map(<[_]>::len)).await;
        assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
    }
}
