//! The application's side of the `relay` scenario: an outbox table filled through
//! `switchyard-outbox` as an application fills it (one `enqueue` per row, many rows a
//! transaction), on a SQLite file of the harness's or in a schema of the `--postgres` database;
//! and the reads and deletes of the bare relay.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
use switchyard_outbox::{OutboxEvent, create_table, enqueue};

/// The schema of the outbox table on PostgreSQL, dropped and made anew for each run, apart
/// from the server's own ([`crate::node::POSTGRES_SCHEMA`]).
pub const POSTGRES_SCHEMA: &str = "switchyard_bench_outbox";
/// Rows an application transaction writes while the table is filled.
const ROWS_PER_TRANSACTION: u64 = 10_000;
/// Ids in one SQLite `DELETE … IN (…)`: under its 999 host parameters, as the server's relay.
const SQLITE_DELETE_CHUNK: usize = 500;

/// One row as the bare relay reads it.
pub struct OutboxRow {
    pub id: String,
    pub event_type: String,
    pub payload: String,
}

/// The outbox table of the run.
pub enum Outbox {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Outbox {
    /// A new, empty table in a new SQLite file in `dir`; answers it with the source's
    /// `database_url` and `table`.
    pub async fn sqlite(dir: &Path) -> anyhow::Result<(Outbox, String, String)> {
        let path = std::path::absolute(dir.join("outbox.db"))?;
        // WAL as an application would use with a relay in another process (readers and the
        // writer do not block each other); FULL as the server's own database, so the table's
        // commits cost what they cost the application.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        create_table(&mut *pool.acquire().await?).await?;
        Ok((Outbox::Sqlite(pool), format!("sqlite://{}", path.display()), "outbox".to_owned()))
    }

    /// A new, empty table in the schema [`POSTGRES_SCHEMA`] of the database at `url`.
    pub async fn postgres(url: &str) -> anyhow::Result<(Outbox, String, String)> {
        let admin = PgPool::connect(url).await.with_context(|| format!("connecting to {url}"))?;
        for statement in [
            format!("DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE"),
            format!("CREATE SCHEMA {POSTGRES_SCHEMA}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&admin).await?;
        }
        admin.close().await;
        // The outbox crate's DDL names the table unqualified: it lands in the schema first on
        // the search path.
        let options = PgConnectOptions::from_str(url)?.options([("search_path", POSTGRES_SCHEMA)]);
        let pool = PgPoolOptions::new().max_connections(2).connect_with(options).await?;
        create_table(&mut *pool.acquire().await?).await?;
        Ok((Outbox::Postgres(pool), url.to_owned(), format!("{POSTGRES_SCHEMA}.outbox")))
    }

    /// Writes `rows` events, [`ROWS_PER_TRANSACTION`] a transaction, one `enqueue` each.
    pub async fn fill(&self, rows: u64) -> anyhow::Result<()> {
        let bar = ProgressBar::new(rows).with_style(
            ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix("filling");
        let mut n = 0;
        while n < rows {
            let last = (n + ROWS_PER_TRANSACTION).min(rows);
            match self {
                Outbox::Sqlite(pool) => {
                    let mut tx = pool.begin().await?;
                    for i in n..last {
                        enqueue(&mut *tx, &row(i)).await?;
                    }
                    tx.commit().await?;
                }
                Outbox::Postgres(pool) => {
                    let mut tx = pool.begin().await?;
                    for i in n..last {
                        enqueue(&mut *tx, &row(i)).await?;
                    }
                    tx.commit().await?;
                }
            }
            bar.set_position(last);
            n = last;
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// The rows in the table.
    pub async fn count(&self) -> anyhow::Result<u64> {
        const COUNT: &str = "SELECT count(*) FROM outbox";
        let count: i64 = match self {
            Outbox::Sqlite(pool) => sqlx::query(COUNT).fetch_one(pool).await?.get(0),
            Outbox::Postgres(pool) => sqlx::query(COUNT).fetch_one(pool).await?.get(0),
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The first `limit` rows in the server's read order (`created_at`, `id`).
    pub async fn first(&self, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        let limit = i64::try_from(limit)?;
        let read = |id: String, event_type: String, payload: String| OutboxRow { id, event_type, payload };
        Ok(match self {
            Outbox::Sqlite(pool) => {
                sqlx::query("SELECT id, type, payload FROM outbox ORDER BY created_at, id LIMIT ?")
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|r| read(r.get(0), r.get(1), r.get(2)))
                    .collect()
            }
            Outbox::Postgres(pool) => {
                sqlx::query("SELECT id, type, payload::text FROM outbox ORDER BY created_at, id LIMIT $1")
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|r| read(r.get(0), r.get(1), r.get(2)))
                    .collect()
            }
        })
    }

    /// Deletes the rows of `ids`, in one transaction.
    pub async fn delete(&self, ids: &[String]) -> anyhow::Result<()> {
        match self {
            Outbox::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for chunk in ids.chunks(SQLITE_DELETE_CHUNK) {
                    let sql =
                        format!("DELETE FROM outbox WHERE id IN ({})", vec!["?"; chunk.len()].join(", "));
                    let mut delete = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        delete = delete.bind(id);
                    }
                    delete.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Outbox::Postgres(pool) => {
                sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(ids).execute(pool).await?;
            }
        }
        Ok(())
    }

    pub async fn close(self) {
        match self {
            Outbox::Sqlite(pool) => pool.close().await,
            Outbox::Postgres(pool) => pool.close().await,
        }
    }
}

/// The n-th row: the payload of the other scenarios' n-th event, its customer as the aggregate
/// (977 ordering keys).
fn row(n: u64) -> OutboxEvent {
    let customer = format!("c-{}", n % 977);
    let payload = json!({"n": n, "customer": customer, "amount_cents": 4200, "currency": "EUR"});
    OutboxEvent::new("customer", customer, "bench.item", payload)
}
