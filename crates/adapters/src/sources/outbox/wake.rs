//! Wake-ups from PostgreSQL: the outbox table's trigger runs `NOTIFY switchyard_outbox` (the
//! `switchyard-outbox` crate's DDL) and a task listening on one of the pool's connections wakes
//! the idle consumer at once. Polling stays the safety net: a listener that fails is retried
//! after a pause, and meanwhile the consumer reads at its poll interval.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The channel the outbox table's trigger notifies; the payload is the table's name.
pub const CHANNEL: &str = "switchyard_outbox";

/// How long a failed listener waits before listening again.
const RELISTEN_AFTER: Duration = Duration::from_secs(10);

/// A listening task; stopped when dropped.
#[derive(Debug)]
pub struct Wakeups {
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Wakeups {
    /// Listens on `pool` for inserts into the table named `table` (without its schema).
    pub fn listen(pool: PgPool, table: String) -> Self {
        let notify = Arc::new(Notify::new());
        let task = tokio::spawn(listen(pool, table, notify.clone()));
        Self { notify, task }
    }

    /// Waits until a row may have been inserted or `interval` passed. A notification that came
    /// while nobody waited is kept (one), so an insert during a read is not missed.
    pub async fn wait(&self, interval: Duration) {
        let _ = tokio::time::timeout(interval, self.notify.notified()).await;
    }

    /// Stops listening and gives the connection back to the pool.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(pool: PgPool, table: String, notify: Arc<Notify>) {
    while !pool.is_closed() {
        let Err(error) = listen_once(&pool, &table, &notify).await;
        if pool.is_closed() {
            return;
        }
        tracing::warn!(
            table = %table,
            %error,
            "listening for the outbox table's notifications failed; polling until listening again"
        );
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}

/// Listens until the connection fails for good (or the pool is closed).
async fn listen_once(pool: &PgPool, table: &str, notify: &Notify) -> Result<Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Rows inserted before the listener was there wake nobody: read once more.
    notify.notify_one();
    loop {
        let notification = listener.recv().await?;
        let payload = notification.payload();
        if payload.is_empty() || payload == table {
            notify.notify_one();
        }
    }
}
