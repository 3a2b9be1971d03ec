//! Sources: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use switchyard_core::id::SourceId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::source::Source;
use switchyard_core::store::{SourceStore, StoreResult};
use switchyard_core::time::Millis;

use super::PgStore;
use crate::repo::Repo;

#[async_trait]
impl SourceStore for PgStore {
    async fn create_source(&self, source: &Source) -> StoreResult<()> {
        Repo(self).create_source(source).await
    }

    async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>> {
        Repo(self).get_source(id).await
    }

    async fn list_sources(&self, request: ListRequest) -> StoreResult<Listing<Source>> {
        Repo(self).list_sources(request).await
    }

    async fn update_source(&self, source: &Source, expected_version: i64) -> StoreResult<Source> {
        Repo(self).update_source(source, expected_version).await
    }

    async fn delete_source(&self, id: &SourceId) -> StoreResult<bool> {
        Repo(self).delete_source(id).await
    }
    async fn lease_source(
        &self,
        id: &SourceId,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> StoreResult<bool> {
        Repo(self).lease_source(id, owner, now, until).await
    }

    async fn release_source(&self, id: &SourceId, owner: &str) -> StoreResult<()> {
        Repo(self).release_source(id, owner).await
    }
}
