//! Subscriptions: the routes ingest reads to create deliveries.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Transaction, Type};
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::subscription::{Subscription, SubscriptionFilter};

use super::{Args, Backend, Conn, Db, Repo, Row, count, page_bounds};
use crate::error::{map_err, name_conflict};
use crate::rows::{SubscriptionRow, decode_all, enum_name, to_json};
use crate::sql;

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<&'q str>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> bool: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> SubscriptionRow: FromRow<'r, Row<B>>,
{
    /// Checked explicitly, inside the writing transaction, so the caller learns which field is
    /// wrong; the foreign key stays as the backstop.
    async fn require_destination(
        tx: &mut Transaction<'static, Db<B>>,
        id: &DestinationId,
    ) -> StoreResult<()> {
        let found: i64 = sqlx::query_scalar(sql::DESTINATION_EXISTS)
            .bind(id.as_str())
            .fetch_one(&mut **tx)
            .await
            .map_err(map_err)?;
        if found == 0 {
            return Err(StoreError::InvalidReference {
                field: "destination_id",
                message: format!("no destination with id {id}"),
            });
        }
        Ok(())
    }

    pub(crate) async fn create_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        let event_types = to_json("subscriptions.event_types", &subscription.event_types)?;
        let ordering = enum_name("subscriptions.ordering", &subscription.ordering)?;
        let ordering_on_dead = enum_name("subscriptions.ordering_on_dead", &subscription.ordering_on_dead)?;
        let mut tx = self.0.begin_write().await?;
        Self::require_destination(&mut tx, &subscription.destination_id).await?;
        sqlx::query(sql::INSERT_SUBSCRIPTION)
            .bind(subscription.id.as_str())
            .bind(subscription.name.as_str())
            .bind(subscription.destination_id.as_str())
            .bind(event_types)
            .bind(subscription.filter.as_deref())
            .bind(subscription.transform.as_deref())
            .bind(ordering)
            .bind(ordering_on_dead)
            .bind(subscription.enabled)
            .bind(subscription.version)
            .bind(subscription.created_at)
            .bind(subscription.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)
            .map_err(name_conflict(|| format!("subscription {} already exists", subscription.id)))?;
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn get_subscription(&self, id: &SubscriptionId) -> StoreResult<Option<Subscription>> {
        sqlx::query_as::<_, SubscriptionRow>(sql::SELECT_SUBSCRIPTION)
            .bind(id.as_str())
            .fetch_optional(self.0.reader())
            .await
            .map_err(map_err)?
            .map(Subscription::try_from)
            .transpose()
    }

    pub(crate) async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<Subscription>> {
        let (limit, offset) = page_bounds(request);
        let mut tx = self.0.begin_read().await?;
        let (rows, total): (Vec<SubscriptionRow>, i64) = match &filter.destination_id {
            Some(destination_id) => {
                let rows = sqlx::query_as(sql::LIST_SUBSCRIPTIONS_OF_DESTINATION)
                    .bind(destination_id.as_str())
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let total = sqlx::query_scalar(sql::COUNT_SUBSCRIPTIONS_OF_DESTINATION)
                    .bind(destination_id.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                (rows, total)
            }
            None => {
                let rows = sqlx::query_as(sql::LIST_SUBSCRIPTIONS)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let total = sqlx::query_scalar(sql::COUNT_SUBSCRIPTIONS)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                (rows, total)
            }
        };
        tx.commit().await.map_err(map_err)?;
        Ok(Listing { items: decode_all(rows)?, total: Some(count(total)), next_cursor: None })
    }

    pub(crate) async fn update_subscription(
        &self,
        subscription: &Subscription,
        expected_version: i64,
    ) -> StoreResult<Subscription> {
        let event_types = to_json("subscriptions.event_types", &subscription.event_types)?;
        let ordering = enum_name("subscriptions.ordering", &subscription.ordering)?;
        let ordering_on_dead = enum_name("subscriptions.ordering_on_dead", &subscription.ordering_on_dead)?;
        let mut tx = self.0.begin_write().await?;
        let updated = sqlx::query_as::<_, SubscriptionRow>(sql::UPDATE_SUBSCRIPTION)
            .bind(subscription.name.as_str())
            .bind(subscription.destination_id.as_str())
            .bind(event_types)
            .bind(subscription.filter.as_deref())
            .bind(subscription.transform.as_deref())
            .bind(ordering)
            .bind(ordering_on_dead)
            .bind(subscription.enabled)
            .bind(subscription.updated_at)
            .bind(subscription.id.as_str())
            .bind(expected_version)
            .fetch_optional(&mut *tx)
            .await;
        let updated = match updated {
            Ok(updated) => updated,
            // Only a moved destination can break the foreign key; say which one is missing.
            Err(e) => {
                return Err(match map_err(e) {
                    StoreError::InvalidReference { .. } => StoreError::InvalidReference {
                        field: "destination_id",
                        message: format!("no destination with id {}", subscription.destination_id),
                    },
                    other => other,
                });
            }
        };
        let Some(row) = updated else {
            let current: Option<i64> = sqlx::query_scalar(sql::SUBSCRIPTION_VERSION)
                .bind(subscription.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            return Err(match current {
                Some(current) => StoreError::VersionMismatch { current },
                None => StoreError::NotFound("subscription"),
            });
        };
        tx.commit().await.map_err(map_err)?;
        Subscription::try_from(row)
    }

    pub(crate) async fn delete_subscription(&self, id: &SubscriptionId) -> StoreResult<bool> {
        let result = sqlx::query(sql::DELETE_SUBSCRIPTION)
            .bind(id.as_str())
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)?;
        Ok(B::rows_affected(&result) > 0)
    }
}
