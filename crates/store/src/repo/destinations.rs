//! Destinations and their delivery policies.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::destination::Destination;
use switchyard_core::id::DestinationId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{StoreError, StoreResult};

use super::{Args, Backend, Conn, Db, Repo, Row, count, page_bounds};
use crate::error::{map_err, name_conflict};
use crate::rows::{DestinationRow, seal_secrets, to_json, u64_to_i64};
use crate::seal::Sealer;
use crate::sql;

/// The columns a destination is written with, encoded once for insert and update alike; the
/// secrets sealed.
struct Encoded {
    config: String,
    secrets: String,
    timeout_ms: i64,
    connect_timeout_ms: i64,
    retry: String,
    rate_limit: Option<String>,
    circuit_breaker: String,
}

fn encode(sealer: &Sealer, destination: &Destination) -> StoreResult<Encoded> {
    Ok(Encoded {
        config: to_json("destinations.config", &destination.config)?,
        secrets: seal_secrets(sealer, destination.id.as_str(), &destination.secrets)?,
        timeout_ms: u64_to_i64("timeout_ms", destination.timeout_ms)?,
        connect_timeout_ms: u64_to_i64("connect_timeout_ms", destination.connect_timeout_ms)?,
        retry: to_json("destinations.retry", &destination.retry)?,
        rate_limit: destination
            .rate_limit
            .as_ref()
            .map(|r| to_json("destinations.rate_limit", r))
            .transpose()?,
        circuit_breaker: to_json("destinations.circuit_breaker", &destination.circuit_breaker)?,
    })
}

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<String>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> bool: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> DestinationRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn create_destination(&self, destination: &Destination) -> StoreResult<()> {
        let encoded = encode(self.0.sealer(), destination)?;
        sqlx::query(sql::INSERT_DESTINATION)
            .bind(destination.id.as_str())
            .bind(destination.name.as_str())
            .bind(destination.kind.as_str())
            .bind(encoded.config)
            .bind(encoded.secrets)
            .bind(encoded.timeout_ms)
            .bind(encoded.connect_timeout_ms)
            .bind(encoded.retry)
            .bind(encoded.rate_limit)
            .bind(encoded.circuit_breaker)
            .bind(destination.enabled)
            .bind(destination.version)
            .bind(destination.created_at)
            .bind(destination.updated_at)
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)
            .map_err(name_conflict(|| format!("destination {} already exists", destination.id)))?;
        Ok(())
    }

    pub(crate) async fn get_destination(&self, id: &DestinationId) -> StoreResult<Option<Destination>> {
        sqlx::query_as::<_, DestinationRow>(sql::SELECT_DESTINATION)
            .bind(id.as_str())
            .fetch_optional(self.0.reader())
            .await
            .map_err(map_err)?
            .map(|row| row.decode(self.0.sealer()))
            .transpose()
    }

    pub(crate) async fn list_destinations(&self, request: ListRequest) -> StoreResult<Listing<Destination>> {
        let (limit, offset) = page_bounds(request);
        let mut tx = self.0.begin_read().await?;
        let rows = sqlx::query_as::<_, DestinationRow>(sql::LIST_DESTINATIONS)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let total: i64 =
            sqlx::query_scalar(sql::COUNT_DESTINATIONS).fetch_one(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        let items = rows.into_iter().map(|row| row.decode(self.0.sealer())).collect::<StoreResult<_>>()?;
        Ok(Listing { items, total: Some(count(total)), next_cursor: None })
    }

    pub(crate) async fn update_destination(
        &self,
        destination: &Destination,
        expected_version: i64,
    ) -> StoreResult<Destination> {
        let encoded = encode(self.0.sealer(), destination)?;
        let mut tx = self.0.begin_write().await?;
        let updated = sqlx::query_as::<_, DestinationRow>(sql::UPDATE_DESTINATION)
            .bind(destination.name.as_str())
            .bind(destination.kind.as_str())
            .bind(encoded.config)
            .bind(encoded.secrets)
            .bind(encoded.timeout_ms)
            .bind(encoded.connect_timeout_ms)
            .bind(encoded.retry)
            .bind(encoded.rate_limit)
            .bind(encoded.circuit_breaker)
            .bind(destination.enabled)
            .bind(destination.updated_at)
            .bind(destination.id.as_str())
            .bind(expected_version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = updated else {
            let current: Option<i64> = sqlx::query_scalar(sql::DESTINATION_VERSION)
                .bind(destination.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            return Err(match current {
                Some(current) => StoreError::VersionMismatch { current },
                None => StoreError::NotFound("destination"),
            });
        };
        if destination.enabled {
            // Resumed (or changed): its waiting deliveries may go now, on any node.
            B::notify_work(&mut tx).await?;
        }
        tx.commit().await.map_err(map_err)?;
        row.decode(self.0.sealer())
    }

    pub(crate) async fn delete_destination(&self, id: &DestinationId) -> StoreResult<bool> {
        let mut tx = self.0.begin_write().await?;
        let subscriptions: i64 = sqlx::query_scalar(sql::COUNT_SUBSCRIPTIONS_OF_DESTINATION)
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        if subscriptions > 0 {
            return Err(StoreError::Conflict(format!(
                "destination {id} still has {subscriptions} subscription(s); delete them first"
            )));
        }
        let result = sqlx::query(sql::DELETE_DESTINATION)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(B::rows_affected(&result) > 0)
    }
}
