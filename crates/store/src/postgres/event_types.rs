//! The event-type registry: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use switchyard_core::event::EventType;
use switchyard_core::event_type::EventTypeDefinition;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{EventTypeStore, StoreResult};

use super::PgStore;
use crate::repo::Repo;

#[async_trait]
impl EventTypeStore for PgStore {
    async fn create_event_type(&self, definition: &EventTypeDefinition) -> StoreResult<()> {
        Repo(self).create_event_type(definition).await
    }

    async fn get_event_type(&self, name: &EventType) -> StoreResult<Option<EventTypeDefinition>> {
        Repo(self).get_event_type(name).await
    }

    async fn list_event_types(&self, request: ListRequest) -> StoreResult<Listing<EventTypeDefinition>> {
        Repo(self).list_event_types(request).await
    }

    async fn update_event_type(
        &self,
        definition: &EventTypeDefinition,
        expected_version: i64,
    ) -> StoreResult<EventTypeDefinition> {
        Repo(self).update_event_type(definition, expected_version).await
    }

    async fn delete_event_type(&self, name: &EventType) -> StoreResult<bool> {
        Repo(self).delete_event_type(name).await
    }
}
