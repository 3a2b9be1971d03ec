//! The application side of Switchyard's outbox relay.
//!
//! A service that publishes events by calling an API after committing its business data has a
//! dual write: a crash between the commit and the call loses the event. Instead, write the event
//! into an outbox table in the same transaction as the business data; Switchyard's `outbox`
//! source relays the table's rows into the hub, in order and idempotently (a row's `id` is the
//! event's id), then deletes or marks them.
//!
//! ```no_run
//! # async fn place_order(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use serde_json::json;
//! use switchyard_outbox::{OutboxEvent, enqueue};
//!
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id, total_cents) VALUES ($1, $2)")
//!     .bind("ord-1001")
//!     .bind(2550_i64)
//!     .execute(&mut *tx)
//!     .await?;
//! let event = OutboxEvent::new("order", "ord-1001", "order.created", json!({"order_id": "ord-1001"}));
//! enqueue(&mut *tx, &event).await?;
//! tx.commit().await?; // the order and its event, or neither
//! # Ok(())
//! # }
//! ```
//!
//! The table (Debezium's column names, which the source reads by default) is created by
//! [`POSTGRES_DDL`] or [`SQLITE_DDL`]; put it among your own migrations, or run
//! [`create_table`] once.

use std::future::Future;

use serde_json::Value;
use sqlx::{PgConnection, SqliteConnection};

/// The outbox table for PostgreSQL, with a trigger that wakes the relay at once (`NOTIFY
/// switchyard_outbox`). Safe to run again.
pub const POSTGRES_DDL: &str = include_str!("../migrations/postgres/0001_outbox.sql");
/// The outbox table for SQLite. Safe to run again.
pub const SQLITE_DDL: &str = include_str!("../migrations/sqlite/0001_outbox.sql");

/// The table [`enqueue`] writes to.
pub const DEFAULT_TABLE: &str = "outbox";

/// What the hub accepts of an event, checked before a row is written so a bad event fails the
/// business transaction instead of being refused by the relay later.
const MAX_ID: usize = 128;
const MAX_EVENT_TYPE: usize = 128;
const MAX_AGGREGATE_ID: usize = 256;
const MAX_AGGREGATE_TYPE: usize = 256;

/// One event to relay. `aggregate_id` becomes its ordering key: the events of one aggregate
/// reach ordered subscriptions in the order they were written.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// The event's id in the hub: a row relayed twice is one event. A UUIDv7 by default.
    pub id: String,
    /// What kind of thing the event is about (`order`).
    pub aggregate_type: String,
    /// Which one (`ord-1001`).
    pub aggregate_id: String,
    /// The hub's event type: dotted lowercase segments (`order.created`).
    pub event_type: String,
    /// A JSON object.
    pub payload: Value,
}

impl OutboxEvent {
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            event_type: event_type.into(),
            payload,
        }
    }

    /// Names the event yourself, e.g. after something the retry of a request reproduces.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Every rule of the hub's event contract this row would break, first one first.
    pub fn validate(&self) -> Result<(), OutboxError> {
        let invalid = |field: &'static str, message: &str| {
            Err(OutboxError::Invalid { field, message: message.to_owned() })
        };
        let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if self.id.is_empty()
            || self.id.len() > MAX_ID
            || !self.id.chars().all(id_char)
            || matches!(self.id.as_str(), "." | "..")
        {
            return invalid("id", "must be 1 to 128 characters of letters, digits and . _ : - (not . or ..)");
        }
        if !is_event_type(&self.event_type) {
            return invalid(
                "event_type",
                "must be dotted lowercase segments of a-z, 0-9 and _ (e.g. order.created)",
            );
        }
        if self.aggregate_type.is_empty() || self.aggregate_type.len() > MAX_AGGREGATE_TYPE {
            return invalid("aggregate_type", "must be 1 to 256 bytes");
        }
        if self.aggregate_id.is_empty() || self.aggregate_id.len() > MAX_AGGREGATE_ID {
            return invalid("aggregate_id", "must be 1 to 256 bytes");
        }
        if !self.payload.is_object() {
            return invalid("payload", "must be a JSON object");
        }
        Ok(())
    }
}

fn is_event_type(raw: &str) -> bool {
    let segment = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    !raw.is_empty() && raw.len() <= MAX_EVENT_TYPE && raw.split('.').all(segment)
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The event breaks the hub's contract; nothing was written.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The table name is not a plain SQL identifier.
    #[error("the table name {0:?} must be letters, digits and _, starting with a letter or _")]
    TableName(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A connection (or transaction: `&mut *tx`) an outbox row can be written on.
pub trait OutboxConnection: Send {
    /// Inserts `event` into `table`, already checked to be a plain identifier.
    fn insert(
        &mut self,
        table: &str,
        event: &OutboxEvent,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Creates the outbox table ([`POSTGRES_DDL`] or [`SQLITE_DDL`]) if it is not there.
    fn create_table(&mut self) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

impl OutboxConnection for PgConnection {
    async fn insert(&mut self, table: &str, event: &OutboxEvent) -> Result<(), sqlx::Error> {
        // `table` is a checked identifier, the only text spliced in; the values are bound.
        let sql = format!(
            "INSERT INTO {table} (id, aggregatetype, aggregateid, type, payload) \
             VALUES ($1, $2, $3, $4, $5::jsonb)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event.id.as_str())
            .bind(event.aggregate_type.as_str())
            .bind(event.aggregate_id.as_str())
            .bind(event.event_type.as_str())
            .bind(event.payload.to_string())
            .execute(self)
            .await
            .map(drop)
    }

    async fn create_table(&mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(POSTGRES_DDL).execute(self).await.map(drop)
    }
}

impl OutboxConnection for SqliteConnection {
    async fn insert(&mut self, table: &str, event: &OutboxEvent) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO {table} (id, aggregatetype, aggregateid, type, payload) VALUES (?, ?, ?, ?, ?)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event.id.as_str())
            .bind(event.aggregate_type.as_str())
            .bind(event.aggregate_id.as_str())
            .bind(event.event_type.as_str())
            .bind(event.payload.to_string())
            .execute(self)
            .await
            .map(drop)
    }

    async fn create_table(&mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(SQLITE_DDL).execute(self).await.map(drop)
    }
}

/// Writes `event` into the `outbox` table on `connection`: pass your transaction (`&mut *tx`)
/// so the event commits with your business data, or not at all.
pub async fn enqueue<C: OutboxConnection + ?Sized>(
    connection: &mut C,
    event: &OutboxEvent,
) -> Result<(), OutboxError> {
    enqueue_into(connection, DEFAULT_TABLE, event).await
}

/// [`enqueue`] into a table of another name (created from the DDL with its name changed).
pub async fn enqueue_into<C: OutboxConnection + ?Sized>(
    connection: &mut C,
    table: &str,
    event: &OutboxEvent,
) -> Result<(), OutboxError> {
    if !is_identifier(table) {
        return Err(OutboxError::TableName(table.to_owned()));
    }
    event.validate()?;
    connection.insert(table, event).await?;
    Ok(())
}

/// Creates the `outbox` table on `connection` if it is not there.
pub async fn create_table<C: OutboxConnection + ?Sized>(connection: &mut C) -> Result<(), OutboxError> {
    connection.create_table().await?;
    Ok(())
}

/// Table names are spliced into the statement, so only plain identifiers are allowed.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> OutboxEvent {
        OutboxEvent::new("order", "ord-1", "order.created", json!({"total": 1}))
    }

    #[test]
    fn a_new_event_is_named_by_a_uuid_and_valid() {
        let event = event();
        assert!(uuid::Uuid::parse_str(&event.id).is_ok());
        event.validate().expect("valid");
    }

    #[test]
    fn events_the_hub_would_refuse_are_refused_before_they_are_written() {
        let field = |event: OutboxEvent| match event.validate() {
            Err(OutboxError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(event().with_id("has space")), "id");
        assert_eq!(field(event().with_id("..")), "id");
        assert_eq!(field(OutboxEvent { event_type: "Order.Created".into(), ..event() }), "event_type");
        assert_eq!(field(OutboxEvent { event_type: "order..created".into(), ..event() }), "event_type");
        assert_eq!(field(OutboxEvent { aggregate_id: String::new(), ..event() }), "aggregate_id");
        assert_eq!(field(OutboxEvent { payload: json!([1]), ..event() }), "payload");
    }

    #[test]
    fn only_plain_identifiers_name_tables() {
        assert!(is_identifier("outbox") && is_identifier("_app_outbox2"));
        for bad in ["", "1outbox", "outbox; DROP TABLE orders", "public.outbox", "out-box"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
