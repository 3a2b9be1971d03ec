//! Subscriptions: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use switchyard_core::id::SubscriptionId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{StoreResult, SubscriptionStore};
use switchyard_core::subscription::{Subscription, SubscriptionFilter};

use super::SqliteStore;
use super::reads::Direct;
use crate::repo::Repo;
use crate::rows::SubscriptionRow;
use crate::sql;

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        Repo(self).create_subscription(subscription).await
    }

    async fn get_subscription(&self, id: &SubscriptionId) -> StoreResult<Option<Subscription>> {
        match self.read_row(sql::SELECT_SUBSCRIPTION, id.as_str(), SubscriptionRow::from_direct) {
            Direct::Read(row) => row?.map(Subscription::try_from).transpose(),
            Direct::Busy => Repo(self).get_subscription(id).await,
        }
    }

    async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<Subscription>> {
        Repo(self).list_subscriptions(filter, request).await
    }

    async fn update_subscription(
        &self,
        subscription: &Subscription,
        expected_version: i64,
    ) -> StoreResult<Subscription> {
        Repo(self).update_subscription(subscription, expected_version).await
    }

    async fn delete_subscription(&self, id: &SubscriptionId) -> StoreResult<bool> {
        Repo(self).delete_subscription(id).await
    }
}
