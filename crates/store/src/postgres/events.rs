//! Events and the deliveries ingest creates with them.

use async_trait::async_trait;
use switchyard_core::delivery::{Delivery, DeliveryStatus};
use switchyard_core::event::{Event, EventFilter, EventId, IngestOutcome, NewEvent};
use switchyard_core::id::DeliveryId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{EventStore, StoreResult};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::Millis;

use super::{PgStore, notify_work};
use crate::error::map_err;
use crate::repo::Repo;
use crate::rows::{EventRow, SubscriptionRow, decode_all, to_json};
use crate::sql;

#[async_trait]
impl EventStore for PgStore {
    async fn ingest(&self, events: Vec<NewEvent>, now: Millis) -> StoreResult<Vec<IngestOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        // Read inside the transaction, so a subscription created concurrently either routes
        // the whole call or none of it.
        let rows = sqlx::query_as::<_, SubscriptionRow>(sql::ENABLED_SUBSCRIPTIONS)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let subscriptions: Vec<Subscription> = decode_all(rows)?;
        let pending = DeliveryStatus::Pending.as_str();

        let mut outcomes = Vec::with_capacity(events.len());
        let mut routed = false;
        for new in events {
            let payload = to_json("events.payload", &new.payload)?;
            let seq: Option<i64> = sqlx::query_scalar(sql::INSERT_EVENT)
                .bind(new.event_id.as_str())
                .bind(new.event_type.as_str())
                .bind(new.timestamp)
                .bind(payload)
                .bind(new.metadata.correlation_id.as_str())
                .bind(new.metadata.causation_id.as_deref())
                .bind(new.ordering_key.as_deref())
                .bind(new.source.as_str())
                .bind(now)
                .bind(new.content_hash.as_str())
                .bind(new.metadata.traceparent.as_deref())
                .bind(new.metadata.request_id.as_deref())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;

            let Some(seq) = seq else {
                // The id is taken, by an earlier call or earlier in this one (the transaction
                // sees its own writes): compare what was sent.
                let row = sqlx::query_as::<_, EventRow>(sql::SELECT_EVENT)
                    .bind(new.event_id.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                outcomes.push(IngestOutcome::of_taken(Event::try_from(row)?, new));
                continue;
            };

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
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                routed = true;
            }
            outcomes.push(IngestOutcome::Created(new.stored(seq, now)));
        }
        if routed {
            notify_work(&mut tx).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(outcomes)
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
