//! Events and the deliveries ingest creates with them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use switchyard_core::delivery::{Delivery, DeliveryStatus};
use switchyard_core::event::{Event, EventFilter, EventId, EventLink, NewEvent};
use switchyard_core::id::DeliveryId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{EventStore, FreshLease, Ingested, StoreResult};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::Millis;

use super::SqliteStore;
use super::direct::Binder;
use super::reads::Direct;
use crate::error::map_direct_err;
use crate::fresh::Leasing;
use crate::repo::{Fate, Repo, written};
use crate::rows::{EventRow, headers_json, to_json};
use crate::sql;

#[async_trait]
impl EventStore for SqliteStore {
    async fn ingest_routed(
        &self,
        events: Vec<NewEvent>,
        now: Millis,
        lease: Option<FreshLease>,
    ) -> StoreResult<Ingested> {
        if events.is_empty() {
            return Ok(Ingested::default());
        }
        // Concurrent calls share a transaction and its fsync; each is answered after the
        // commit, with its own outcomes or its own error. The write may run more than once,
        // so it borrows the events, which come back whole once it is done.
        let weight = events.len();
        let events = Arc::new(events);
        let writing = events.clone();
        let (fates, leasing) = self
            .group
            .write(weight, true, move |conn, shared| {
                let routing = Routing { subscriptions: shared.subscriptions()?, paused: shared.paused()? };
                ingest_into(conn, routing, &writing, now, Leasing::new(lease.clone()))
            })
            .await?;
        let written = written(Arc::unwrap_or_clone(events), fates, now);
        Ok(leasing.answer(Repo(self).outcomes_of(written).await?))
    }

    async fn get_event(&self, id: &EventId) -> StoreResult<Option<Event>> {
        // A claimed delivery's attempt reads its event: on the delivery path.
        match self.read_row(sql::SELECT_EVENT, id.as_str(), EventRow::from_direct) {
            Direct::Read(row) => row?.map(Event::try_from).transpose(),
            Direct::Busy => Repo(self).get_event(id).await,
        }
    }

    async fn list_events(&self, filter: &EventFilter, request: ListRequest) -> StoreResult<Listing<Event>> {
        Repo(self).list_events(filter, request).await
    }

    async fn links_of_flow(&self, correlation_id: &str, limit: u32) -> StoreResult<Vec<EventLink>> {
        Repo(self).links_of_flow(correlation_id, limit).await
    }

    async fn deliveries_of_event(&self, id: &EventId) -> StoreResult<Vec<Delivery>> {
        Repo(self).deliveries_of_event(id).await
    }

    async fn stream_events(
        &self,
        after: switchyard_core::stream::StreamCursor,
        filter: &switchyard_core::stream::EventStreamFilter,
        limit: u32,
    ) -> StoreResult<switchyard_core::stream::StreamPage<Event>> {
        Repo(self).stream_events(after, filter, limit).await
    }

    async fn stream_head_events(&self) -> StoreResult<switchyard_core::stream::StreamCursor> {
        Repo(self).stream_head(<Self as crate::repo::Backend>::STREAM_HEAD_EVENTS).await
    }
}

/// What a group routes events by, read once for all its calls.
struct Routing<'g> {
    subscriptions: &'g [Subscription],
    /// The paused destinations, by id.
    paused: &'g HashSet<String>,
}

/// Events in one `INSERT` statement, at most (fourteen parameters each).
const ROWS_PER_INSERT: usize = 100;

/// The insert of many events: the head, then one group of fourteen parameters (the same columns)
/// per event, then the tail; answers the id and sequence number of each row inserted. `OR
/// FAIL` rather than the default `ABORT` for the constraints the `ON CONFLICT` does not cover:
/// a statement of many rows that may abort half-way gets a journal of its own, a copy of every
/// page it writes, so that it can be undone alone; the group writer undoes a failed job whole.
const INSERT_EVENTS_HEAD: &str = "INSERT OR FAIL INTO events (event_id, event_type, timestamp, payload, \
     correlation_id, causation_id, ordering_key, source, received_at, content_hash, traceparent, \
     request_id, published_by, headers) VALUES";
const INSERT_EVENTS_TAIL: &str = " ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq";

/// Stores `events` and their deliveries on `conn`, inside the group's transaction; `leasing`
/// says which deliveries are written leased. Answers what became of each event, in order.
fn ingest_into(
    conn: &rusqlite::Connection,
    routing: Routing<'_>,
    events: &[NewEvent],
    now: Millis,
    mut leasing: Leasing,
) -> StoreResult<(Vec<Fate>, Leasing)> {
    let mut fates = Vec::with_capacity(events.len());
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut inserted = insert_events(conn, chunk, now)?;
        for new in chunk {
            // A second event with the same id in one call finds the id taken by the first.
            let Some(seq) = inserted.remove(new.event_id.as_str()) else {
                fates.push(Fate::Taken);
                continue;
            };
            insert_deliveries(conn, &routing, new, now, &mut leasing)?;
            fates.push(Fate::Created(seq));
        }
    }
    Ok((fates, leasing))
}

/// Inserts `events` with one statement, skipping ids that are taken; answers the sequence
/// number of each one inserted, by id.
fn insert_events(
    conn: &rusqlite::Connection,
    events: &[NewEvent],
    now: Millis,
) -> StoreResult<HashMap<String, i64>> {
    // Anonymous `?` parameters: SQLite finds a numbered `$n` by walking the list of names,
    // which makes binding a thousand of them quadratic.
    let mut text = String::from(INSERT_EVENTS_HEAD);
    for i in 0..events.len() {
        text.push_str(if i == 0 {
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        });
    }
    text.push_str(INSERT_EVENTS_TAIL);
    let mut statement = conn.prepare_cached(&text).map_err(map_direct_err)?;
    let mut binder = Binder::new(&mut statement);
    for new in events {
        binder.bind(new.event_id.as_str())?;
        binder.bind(new.event_type.as_str())?;
        binder.bind(new.timestamp)?;
        binder.bind(to_json("events.payload", &new.payload)?)?;
        binder.bind(new.metadata.correlation_id.as_str())?;
        binder.bind(new.metadata.causation_id.as_deref())?;
        binder.bind(new.ordering_key.as_deref())?;
        binder.bind(new.source.as_str())?;
        binder.bind(now)?;
        binder.bind(new.content_hash.as_str())?;
        binder.bind(new.metadata.traceparent.as_deref())?;
        binder.bind(new.metadata.request_id.as_deref())?;
        binder.bind(new.publisher.as_deref())?;
        binder.bind(headers_json(new)?)?;
    }
    let mut inserted = HashMap::with_capacity(events.len());
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(map_direct_err)? {
        inserted.insert(row.get(0).map_err(map_direct_err)?, row.get(1).map_err(map_direct_err)?);
    }
    Ok(inserted)
}

/// One delivery of `new` per subscription that routes it, leased or pending as `leasing`
/// decides.
fn insert_deliveries(
    conn: &rusqlite::Connection,
    routing: &Routing<'_>,
    new: &NewEvent,
    now: Millis,
    leasing: &mut Leasing,
) -> StoreResult<()> {
    let pending = DeliveryStatus::Pending.as_str();
    for subscription in routing.subscriptions.iter().filter(|s| s.routes(&new.event_type)) {
        let (ordered, block_on_dead) = subscription.delivery_ordering(new.ordering_key.as_deref());
        let for_claims = ordered || routing.paused.contains(subscription.destination_id.as_str());
        if let Some(leased) = leasing.lease(new, subscription, for_claims, now) {
            insert_leased(conn, leased)?;
            continue;
        }
        let mut statement = conn.prepare_cached(sql::SQLITE_INSERT_DELIVERY).map_err(map_direct_err)?;
        let mut binder = Binder::new(&mut statement);
        binder.bind(DeliveryId::generate().as_str())?;
        binder.bind(new.event_id.as_str())?;
        binder.bind(subscription.id.as_str())?;
        binder.bind(subscription.destination_id.as_str())?;
        binder.bind(pending)?;
        binder.bind(ordered)?;
        binder.bind(new.ordering_key.as_deref())?;
        binder.bind(block_on_dead)?;
        binder.bind(now)?;
        statement.raw_execute().map_err(map_direct_err)?;
    }
    Ok(())
}

/// Writes `delivery`, leased at its creation (`Leasing::lease`).
fn insert_leased(conn: &rusqlite::Connection, delivery: &Delivery) -> StoreResult<()> {
    let mut statement = conn.prepare_cached(sql::INSERT_LEASED_DELIVERY).map_err(map_direct_err)?;
    let mut binder = Binder::new(&mut statement);
    binder.bind(delivery.id.as_str())?;
    binder.bind(delivery.event_id.as_str())?;
    binder.bind(delivery.subscription_id.as_str())?;
    binder.bind(delivery.destination_id.as_str())?;
    binder.bind(delivery.created_at)?;
    binder.bind(delivery.lease_owner.as_deref())?;
    binder.bind(delivery.lease_expires_at)?;
    binder.bind(delivery.ordering_key.as_deref())?;
    statement.raw_execute().map_err(map_direct_err)?;
    Ok(())
}
