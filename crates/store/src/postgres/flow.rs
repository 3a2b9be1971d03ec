//! Flow control: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use switchyard_core::flow::{Admission, AdmitRequest, Deferral, DestinationFlow, FlowStore};
use switchyard_core::id::DestinationId;
use switchyard_core::store::StoreResult;
use switchyard_core::time::Millis;

use super::PgStore;
use crate::repo::Repo;
pub(super) use crate::repo::Unwritten;

#[async_trait]
impl FlowStore for PgStore {
    async fn admit(&self, request: &AdmitRequest<'_>, now: Millis) -> StoreResult<Admission> {
        Repo(self).admit(request, now).await
    }

    async fn defer_deliveries(&self, owner: &str, deferrals: &[Deferral], now: Millis) -> StoreResult<u64> {
        Repo(self).defer_deliveries(owner, deferrals, now).await
    }

    async fn destination_flow(&self, id: &DestinationId) -> StoreResult<Option<DestinationFlow>> {
        Repo(self).destination_flow(id).await
    }

    async fn destination_flows(&self) -> StoreResult<Vec<DestinationFlow>> {
        Repo(self).destination_flows().await
    }

    async fn next_unblock_at(&self, now: Millis) -> StoreResult<Option<Millis>> {
        Repo(self).next_unblock_at(now).await
    }
}
