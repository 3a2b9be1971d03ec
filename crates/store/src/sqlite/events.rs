//! Events and the deliveries ingest creates with them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqliteConnection;
use switchyard_core::delivery::{Delivery, DeliveryStatus};
use switchyard_core::event::{Event, EventFilter, EventId, IngestOutcome, NewEvent};
use switchyard_core::id::DeliveryId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{EventStore, StoreResult};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::Millis;

use super::SqliteStore;
use super::group::Shared;
use crate::error::map_err;
use crate::repo::Repo;
use crate::rows::{EventRow, SubscriptionRow, decode_all, to_json};
use crate::sql;

#[async_trait]
impl EventStore for SqliteStore {
    async fn ingest(&self, events: Vec<NewEvent>, now: Millis) -> StoreResult<Vec<IngestOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // Concurrent calls share a transaction and its fsync; each is answered after the
        // commit, with its own outcomes or its own error.
        let weight = events.len();
        self.group.write(weight, move |conn, shared| Box::pin(ingest_into(conn, shared, events, now))).await
    }

    async fn get_event(&self, id: &EventId) -> StoreResult<Option<Event>> {
        Repo(self).get_event(id).await
    }

    async fn list_events(&self, filter: &EventFilter, request: ListRequest) -> StoreResult<Listing<Event>> {
        Repo(self).list_events(filter, request).await
    }

    async fn deliveries_of_event(&self, id: &EventId) -> StoreResult<Vec<Delivery>> {
        Repo(self).deliveries_of_event(id).await
    }
}

/// Events in one `INSERT` statement, at most (twelve parameters each).
const ROWS_PER_INSERT: usize = 100;

/// `sql::INSERT_EVENT` for many rows: the head, then one group of twelve parameters (the same
/// columns) per event, then the tail; answers the id and sequence number of each row inserted.
const INSERT_EVENTS_HEAD: &str = "INSERT INTO events (event_id, event_type, timestamp, payload, \
     correlation_id, causation_id, ordering_key, source, received_at, content_hash, traceparent, \
     request_id) VALUES";
const INSERT_EVENTS_TAIL: &str = " ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq";

/// Stores `events` and their deliveries on `conn`, inside the caller's transaction.
async fn ingest_into(
    conn: &mut SqliteConnection,
    shared: &mut Shared,
    events: Vec<NewEvent>,
    now: Millis,
) -> StoreResult<Vec<IngestOutcome>> {
    // Read inside the transaction, once for its group, so a subscription created
    // concurrently either routes the whole call or none of it.
    let subscriptions = match &shared.subscriptions {
        Some(subscriptions) => Arc::clone(subscriptions),
        None => {
            let rows = sqlx::query_as::<_, SubscriptionRow>(sql::ENABLED_SUBSCRIPTIONS)
                .fetch_all(&mut *conn)
                .await
                .map_err(map_err)?;
            let subscriptions: Arc<Vec<Subscription>> = Arc::new(decode_all(rows)?);
            shared.subscriptions = Some(Arc::clone(&subscriptions));
            subscriptions
        }
    };

    let mut outcomes = Vec::with_capacity(events.len());
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<NewEvent> = events.by_ref().take(ROWS_PER_INSERT).collect();
        let mut inserted = insert_events(conn, &chunk, now).await?;
        for new in chunk {
            // A second event with the same id in one call finds the id taken by the first.
            let Some(seq) = inserted.remove(new.event_id.as_str()) else {
                outcomes.push(taken(conn, new).await?);
                continue;
            };
            insert_deliveries(conn, &subscriptions, &new, now).await?;
            outcomes.push(IngestOutcome::Created(new.stored(seq, now)));
        }
    }
    Ok(outcomes)
}

/// Inserts `events` with one statement, skipping ids that are taken; answers the sequence
/// number of each one inserted, by id. A statement is a round trip to the connection's thread,
/// which costs more than the rows: a batch of a hundred events goes in one.
async fn insert_events(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    now: Millis,
) -> StoreResult<HashMap<String, i64>> {
    if let [new] = events {
        let seq: Option<i64> = sqlx::query_scalar(sql::INSERT_EVENT)
            .bind(new.event_id.as_str())
            .bind(new.event_type.as_str())
            .bind(new.timestamp)
            .bind(to_json("events.payload", &new.payload)?)
            .bind(new.metadata.correlation_id.as_str())
            .bind(new.metadata.causation_id.as_deref())
            .bind(new.ordering_key.as_deref())
            .bind(new.source.as_str())
            .bind(now)
            .bind(new.content_hash.as_str())
            .bind(new.metadata.traceparent.as_deref())
            .bind(new.metadata.request_id.as_deref())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)?;
        return Ok(seq.map(|seq| (new.event_id.as_str().to_owned(), seq)).into_iter().collect());
    }
    // Anonymous `?` parameters: SQLite finds a numbered `$n` by walking the list of names,
    // which makes binding a thousand of them quadratic.
    let mut statement = String::from(INSERT_EVENTS_HEAD);
    for i in 0..events.len() {
        statement.push_str(if i == 0 {
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        });
    }
    statement.push_str(INSERT_EVENTS_TAIL);
    let mut query = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(statement));
    for new in events {
        query = query
            .bind(new.event_id.as_str().to_owned())
            .bind(new.event_type.as_str().to_owned())
            .bind(new.timestamp)
            .bind(to_json("events.payload", &new.payload)?)
            .bind(new.metadata.correlation_id.clone())
            .bind(new.metadata.causation_id.clone())
            .bind(new.ordering_key.clone())
            .bind(new.source.as_str().to_owned())
            .bind(now)
            .bind(new.content_hash.clone())
            .bind(new.metadata.traceparent.clone())
            .bind(new.metadata.request_id.clone());
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(map_err)?;
    Ok(rows.into_iter().collect())
}

/// The outcome of an event whose id is taken, by an earlier call or earlier in this one (the
/// transaction sees its own writes): compare what was sent.
async fn taken(conn: &mut SqliteConnection, new: NewEvent) -> StoreResult<IngestOutcome> {
    let row = sqlx::query_as::<_, EventRow>(sql::SELECT_EVENT)
        .bind(new.event_id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(IngestOutcome::of_taken(Event::try_from(row)?, new))
}

/// One delivery of `new` per subscription that routes it.
async fn insert_deliveries(
    conn: &mut SqliteConnection,
    subscriptions: &[Subscription],
    new: &NewEvent,
    now: Millis,
) -> StoreResult<()> {
    let pending = DeliveryStatus::Pending.as_str();
    for subscription in subscriptions.iter().filter(|s| s.routes(&new.event_type)) {
        let (ordered, block_on_dead) = subscription.delivery_ordering(new.ordering_key.as_deref());
        sqlx::query(sql::INSERT_DELIVERY)
            .bind(DeliveryId::generate().as_str())
            .bind(new.event_id.as_str())
            .bind(subscription.id.as_str())
            .bind(subscription.destination_id.as_str())
            .bind(pending)
            .bind(ordered)
            .bind(new.ordering_key.as_deref())
            .bind(block_on_dead)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}
