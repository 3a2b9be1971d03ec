//! Events and the deliveries ingest creates with them.

use async_trait::async_trait;
use switchyard_core::delivery::Delivery;
use switchyard_core::event::{Event, EventFilter, EventId, EventLink, NewEvent};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{EventStore, FreshLease, Ingested, StoreResult};
use switchyard_core::time::Millis;

use super::PgStore;
use crate::repo::Repo;

#[async_trait]
impl EventStore for PgStore {
    async fn ingest_routed(
        &self,
        events: Vec<NewEvent>,
        now: Millis,
        lease: Option<FreshLease>,
    ) -> StoreResult<Ingested> {
        if events.is_empty() {
            return Ok(Ingested::default());
        }
        // Concurrent calls share a transaction (see `group`); each is answered after the
        // commit, with its own outcomes.
        let (written, leasing) = self.ingest_group.ingest(events, now, lease).await?;
        Ok(leasing.answer(Repo(self).outcomes_of(written).await?))
    }

    async fn get_event(&self, id: &EventId) -> StoreResult<Option<Event>> {
        Repo(self).get_event(id).await
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
