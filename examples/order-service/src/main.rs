//! An order service that publishes its events through a transactional outbox, and Switchyard
//! relaying that outbox to a subscriber: the whole path in one command,
//! `examples/order-service/run` (which builds Switchyard and this program first).
//!
//! The problem it solves: a service that saves an order and then calls an API to publish
//! `order.created` has a dual write. A crash between the commit and the call loses the event; a
//! failed call after a commit leaves the order without it. Here the order and its event are
//! written in ONE database transaction (the event into an `outbox` table beside the `orders`
//! table), so there is either both or neither. Switchyard's `outbox` source reads that table,
//! stores each row as an event, delivers it to every subscriber, and deletes the row.
//!
//! What this program does, in order:
//!
//! 1. opens the service's own SQLite database and creates `orders` and `outbox`;
//! 2. starts a receiver on 127.0.0.1 standing in for the downstream service;
//! 3. starts Switchyard as a child process with a data directory of its own, and configures it
//!    over its REST API: a destination (the receiver), a subscription to `order.*`, and an
//!    outbox source reading the service's database;
//! 4. places an order (the order row and its event in one transaction);
//! 5. waits until the receiver has the event, prints it, checks the outbox is empty, and stops
//!    Switchyard. Any failure exits non-zero, saying what did not happen.
//!
//! Only steps 1 and 4 are what a real service does; [`hub`] and [`receiver`] are the stage.

mod hub;
mod receiver;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use switchyard_outbox::{OutboxEvent, create_table, enqueue};

use crate::hub::Hub;
use crate::receiver::Receiver;

/// How long the event may take from the order's commit to the receiver.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(about = "An order service relaying its outbox through Switchyard, end to end")]
struct Cli {
    /// Keep the service's database and Switchyard's data here, for a look afterwards: a new
    /// or empty directory (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("order-service: FAILED: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let switchyard = hub::find_binary()?;
    // A temporary directory lives as long as this guard: everything is removed at the end.
    let temporary = tempfile::tempdir().context("creating a temporary directory")?;
    let data_dir = match cli.data_dir {
        Some(dir) => std::path::absolute(dir)?,
        None => temporary.path().to_owned(),
    };
    // A second run in the same place would meet the first one's resources, named the same.
    if std::fs::read_dir(&data_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("--data-dir {} is not empty: give a new or empty directory", data_dir.display());
    }
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;

    // 1. The service's own database. Switchyard only needs to reach it, by URL.
    let database = data_dir.join("orders.db");
    let pool = open_database(&database).await?;
    println!("order service: database {}", database.display());

    // 2. The downstream service.
    let mut receiver = Receiver::start().await?;
    println!("receiver:      listening on {}", receiver.url());

    // 3. Switchyard, configured through its REST API.
    let hub = Hub::start(&switchyard, &data_dir.join("switchyard")).await?;
    println!("switchyard:    serving on {} (pid {})", hub.address(), hub.pid());
    hub.route("orders", &receiver.url(), "order.*").await?;
    let source_id = hub.relay_outbox("orders", &sqlite_url(&database)).await?;
    println!("switchyard:    relaying the outbox as source {source_id}");

    // 4. The business operation.
    let placed = Instant::now();
    let event_id = place_order(&pool, "c-42", 2550).await?;
    println!("order service: placed an order; its event {event_id} is in the outbox");

    // 5. The proof.
    let Some(delivery) = receiver.wait_for(&event_id, DELIVERY_TIMEOUT).await else {
        bail!(
            "the receiver did not get event {event_id} within {} s; the source's status: {}",
            DELIVERY_TIMEOUT.as_secs(),
            hub.source_status(&source_id).await
        );
    };
    println!("receiver:      got event {event_id} after {} ms:", placed.elapsed().as_millis());
    println!("{delivery}");
    wait_until_outbox_empty(&pool, Duration::from_secs(10)).await?;
    println!("order service: the outbox is empty: Switchyard deleted the relayed row");

    hub.stop().await?;
    println!("switchyard:    stopped");
    println!("delivered event {event_id} from the outbox to the receiver");
    Ok(())
}

/// Opens (creating it) the service's SQLite database, with its own table and the outbox.
async fn open_database(path: &Path) -> anyhow::Result<SqlitePool> {
    // WAL lets Switchyard, another process, read and delete outbox rows while the service
    // writes, instead of the two waiting for each other's whole-file locks.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS orders (
            id          TEXT NOT NULL PRIMARY KEY,
            customer    TEXT NOT NULL,
            total_cents INTEGER NOT NULL
        )",
    )
    .execute(&pool)
    .await?;
    // Normally among the service's migrations (`switchyard_outbox::SQLITE_DDL`); this creates
    // the same table if it is not there.
    create_table(&mut *pool.acquire().await?).await?;
    Ok(pool)
}

/// Saves an order and its `order.created` event in one transaction; answers the event's id.
async fn place_order(pool: &SqlitePool, customer: &str, total_cents: i64) -> anyhow::Result<String> {
    let order_id = format!("ord-{}", uuid::Uuid::now_v7().simple());
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO orders (id, customer, total_cents) VALUES (?, ?, ?)")
        .bind(&order_id)
        .bind(customer)
        .bind(total_cents)
        .execute(&mut *tx)
        .await?;
    // The aggregate id becomes the event's ordering key: the events of one order reach an
    // ordered subscription in the order they were written.
    let event = OutboxEvent::new(
        "order",
        &order_id,
        "order.created",
        json!({"order_id": order_id, "customer": customer, "total_cents": total_cents}),
    );
    enqueue(&mut *tx, &event).await?;
    // The order and its event, or neither: there is no moment where one exists alone.
    tx.commit().await?;
    Ok(event.id)
}

/// Waits until every outbox row is gone: Switchyard deletes a row once its event is stored.
async fn wait_until_outbox_empty(pool: &SqlitePool, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows: i64 = sqlx::query("SELECT COUNT(*) FROM outbox").fetch_one(pool).await?.get(0);
        if rows == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the outbox still holds {rows} row(s) {} s after delivery", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The URL Switchyard reads the database at: `sqlite://` and the absolute path.
fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}
