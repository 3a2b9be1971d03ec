//! The reader of one outbox table: pending rows in order, in batches; committed rows deleted
//! or marked; rows that are not events left in place and read past.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use switchyard_core::source::pull::{Consumer, PullError, Pulled};

use super::config::OutboxConfig;
use super::database::{self, OutboxRow, Pool};
use super::sql::Statements;
use super::wake::Wakeups;

/// At most this many rows that are not events are remembered and skipped.
pub const MAX_HELD: usize = 10_000;

/// How long the database may take to answer when the consumer starts, or to lend a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read, relay or count may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a count of the backlog may take before it is left out.
const COUNT_TIMEOUT: Duration = Duration::from_secs(5);
/// The pool: one connection for statements, one for PostgreSQL's listener.
const MAX_CONNECTIONS: u32 = 2;

/// An open reader of an outbox table.
#[derive(Debug)]
pub struct OutboxConsumer {
    pool: Pool,
    statements: Statements,
    table: String,
    /// Kept only to be scrubbed from messages.
    password: Option<String>,
    batch_size: usize,
    poll_interval: Duration,
    /// The ids of the last batch, by position.
    batch: Vec<String>,
    held: Held,
    /// The last read found nothing: the next one waits for a wake-up or the poll interval.
    idle: bool,
    wakeups: Option<Wakeups>,
}

impl OutboxConsumer {
    /// Connects to the database of `config`, checks its table and, on PostgreSQL, listens
    /// for inserts.
    pub async fn connect(config: OutboxConfig) -> Result<Self, PullError> {
        let password = config.password.clone();
        let failed = |what: &str, error: &dyn std::fmt::Display| {
            PullError::new(scrub(format!("{what}: {error}"), password.as_deref()))
        };
        let target =
            config.target().map_err(|reason| PullError::new(format!("the database_url {reason}")))?;
        let shape = tokio::time::timeout(CONNECT_TIMEOUT, database::inspect(&target, &config.table))
            .await
            .map_err(|_| PullError::new("the outbox database did not answer in time"))?
            .map_err(|e| failed("reaching the outbox database", &e))?;
        shape.check(&config).map_err(|error| {
            PullError::new(format!("the outbox table does not fit the configuration: {error}"))
        })?;
        let pool = Pool::open(&target, MAX_CONNECTIONS, CONNECT_TIMEOUT);
        let statements = Statements::new(&config, pool.dialect(), shape.id_match(&config));
        let wakeups = match &pool {
            Pool::Postgres(pg) => {
                let bare = config.table.rsplit('.').next().unwrap_or(&config.table).to_owned();
                Some(Wakeups::listen(pg.clone(), bare))
            }
            Pool::Sqlite(_) => None,
        };
        Ok(Self {
            pool,
            statements,
            table: config.table,
            password,
            batch_size: usize::try_from(config.batch_size).unwrap_or(1),
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            batch: Vec::new(),
            held: Held::default(),
            idle: false,
            wakeups,
        })
    }

    fn failed(&self, what: &str, error: &dyn std::fmt::Display) -> PullError {
        PullError::new(scrub(format!("{what} {}: {error}", self.table), self.password.as_deref()))
    }

    async fn wait(&self) {
        match &self.wakeups {
            Some(wakeups) => wakeups.wait(self.poll_interval).await,
            None => tokio::time::sleep(self.poll_interval).await,
        }
    }

    /// The pending rows after the held ones, at most a batch.
    async fn read(&mut self) -> Result<Vec<OutboxRow>, PullError> {
        let limit = self.batch_size + self.held.len();
        let rows = tokio::time::timeout(STATEMENT_TIMEOUT, self.pool.fetch(&self.statements, limit))
            .await
            .map_err(|_| PullError::new(format!("reading {} timed out", self.table)))?
            .map_err(|e| self.failed("reading", &e))?;
        if rows.len() < limit {
            // Every pending row was read: held rows not among them are gone (deleted or fixed).
            self.held.keep_only(rows.iter().map(|row| row.id.as_str()));
        }
        Ok(rows.into_iter().filter(|row| !self.held.contains(&row.id)).take(self.batch_size).collect())
    }
}

#[async_trait]
impl Consumer for OutboxConsumer {
    async fn next_batch(&mut self) -> Result<Vec<Pulled>, PullError> {
        if self.idle {
            self.wait().await;
        }
        let rows = self.read().await?;
        self.idle = rows.is_empty();
        self.batch.clear();
        let mut batch = Vec::with_capacity(rows.len());
        for (position, row) in (0u64..).zip(rows) {
            batch.push(Pulled {
                position,
                event_id: Some(row.id.clone()),
                event_type: row.event_type,
                ordering_key: row.ordering_key,
                body: row.payload.map(String::into_bytes).unwrap_or_default(),
                written_at: row.written_at,
            });
            self.batch.push(row.id);
        }
        Ok(batch)
    }

    async fn acknowledge(&mut self, committed: &[u64], invalid: &[u64]) -> Result<(), PullError> {
        let id_at = |position: &u64| usize::try_from(*position).ok().and_then(|i| self.batch.get(i));
        let relayed: Vec<String> = committed.iter().filter_map(id_at).cloned().collect();
        let held: Vec<String> = invalid.iter().filter_map(id_at).cloned().collect();
        for id in held {
            self.held.hold(id, &self.table);
        }
        self.batch.clear();
        tokio::time::timeout(STATEMENT_TIMEOUT, self.pool.relay(&self.statements, &relayed))
            .await
            .map_err(|_| PullError::new(format!("relaying rows of {} timed out", self.table)))?
            .map_err(|e| self.failed("relaying rows of", &e))
    }

    async fn backlog(&mut self) -> Option<u64> {
        let count = tokio::time::timeout(COUNT_TIMEOUT, self.pool.count(&self.statements)).await;
        count.ok()?.ok().and_then(|n| u64::try_from(n).ok())
    }

    async fn close(self: Box<Self>) {
        let Self { pool, wakeups, .. } = *self;
        if let Some(wakeups) = wakeups {
            wakeups.stop().await;
        }
        let _ = tokio::time::timeout(COUNT_TIMEOUT, pool.close()).await;
    }
}

/// The ids of rows that are not events: left in the table, skipped by later reads.
#[derive(Debug, Default)]
struct Held {
    ids: HashSet<String>,
    /// Whether the warning that the set is full was logged since it last had room.
    full_said: bool,
}

impl Held {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Skips `id` from now on, saying so once.
    fn hold(&mut self, id: String, table: &str) {
        if self.ids.contains(&id) {
            return;
        }
        if self.ids.len() >= MAX_HELD {
            if !self.full_said {
                self.full_said = true;
                tracing::warn!(
                    table,
                    id = %id,
                    "{MAX_HELD} outbox rows that are not events are skipped already; this one and \
                     later ones are read again until the table is cleaned up"
                );
            }
            return;
        }
        tracing::warn!(
            table,
            id = %id,
            "the outbox row is not an event; it stays in the table and is skipped from now on"
        );
        self.ids.insert(id);
    }

    /// Forgets the held ids not in `pending`.
    fn keep_only<'a>(&mut self, pending: impl Iterator<Item = &'a str>) {
        if self.ids.is_empty() {
            return;
        }
        let pending: HashSet<&str> = pending.collect();
        self.ids.retain(|id| pending.contains(id.as_str()));
        if self.ids.len() < MAX_HELD {
            self.full_said = false;
        }
    }
}

/// `message` with `password` replaced, should an error ever repeat it.
pub(super) fn scrub(message: String, password: Option<&str>) -> String {
    match password {
        Some(password) if !password.is_empty() => message.replace(password, "***"),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_rows_are_bounded_and_forgotten_once_gone() {
        let mut held = Held::default();
        held.hold("a".into(), "outbox");
        held.hold("a".into(), "outbox");
        held.hold("b".into(), "outbox");
        assert_eq!(held.len(), 2);
        held.keep_only(["b", "c"].into_iter());
        assert!(held.contains("b") && !held.contains("a"));
        for i in 0..MAX_HELD + 5 {
            held.hold(format!("x{i}"), "outbox");
        }
        assert_eq!(held.len(), MAX_HELD);
    }

    #[test]
    fn passwords_are_scrubbed_from_messages() {
        assert_eq!(scrub("auth failed for s3cret".into(), Some("s3cret")), "auth failed for ***");
        assert_eq!(scrub("no password".into(), None), "no password");
    }
}
