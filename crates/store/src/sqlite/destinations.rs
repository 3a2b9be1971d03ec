//! Destinations and their delivery policies: the shared repository ([`crate::repo`]) on this
//! backend.

use async_trait::async_trait;
use switchyard_core::destination::Destination;
use switchyard_core::id::DestinationId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{DestinationStore, StoreResult};

use super::SqliteStore;
use super::reads::Direct;
use crate::repo::Repo;
use crate::rows::DestinationRow;
use crate::sql;

#[async_trait]
impl DestinationStore for SqliteStore {
    async fn create_destination(&self, destination: &Destination) -> StoreResult<()> {
        Repo(self).create_destination(destination).await
    }

    async fn get_destination(&self, id: &DestinationId) -> StoreResult<Option<Destination>> {
        match self.read_row(sql::SELECT_DESTINATION, id.as_str(), DestinationRow::from_direct) {
            Direct::Read(row) => row?.map(|row| row.decode(&self.sealer)).transpose(),
            Direct::Busy => Repo(self).get_destination(id).await,
        }
    }

    async fn list_destinations(&self, request: ListRequest) -> StoreResult<Listing<Destination>> {
        Repo(self).list_destinations(request).await
    }

    async fn update_destination(
        &self,
        destination: &Destination,
        expected_version: i64,
    ) -> StoreResult<Destination> {
        Repo(self).update_destination(destination, expected_version).await
    }

    async fn delete_destination(&self, id: &DestinationId) -> StoreResult<bool> {
        Repo(self).delete_destination(id).await
    }
}
