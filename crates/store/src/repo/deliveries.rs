//! Reading the outbox: a delivery, a page of them, its attempts, the dead count and the next
//! due time. Claims, settling, lease renewal and pruning stay with each backend: they lock,
//! batch and commit differently on purpose.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::delivery::{Attempt, Delivery, DeliveryFilter};
use switchyard_core::id::DeliveryId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::StoreResult;
use switchyard_core::time::Millis;

use super::{Args, Backend, Conn, Db, Repo, Row, bind_scalar, count};
use crate::error::map_err;
use crate::rows::{AttemptRow, DeliveryRow, decode_all};
use crate::sql::deliveries as q;

/// Decodes rows that carry their creation sequence, keeping it alongside.
pub(crate) fn decode_sequenced(rows: Vec<DeliveryRow>) -> StoreResult<Vec<(i64, Delivery)>> {
    rows.into_iter().map(|row| Ok((row.seq(), Delivery::try_from(row)?))).collect()
}

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> (Option<i64>,): FromRow<'r, Row<B>>,
    for<'r> DeliveryRow: FromRow<'r, Row<B>>,
    for<'r> AttemptRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn next_due_at(&self) -> StoreResult<Option<Millis>> {
        sqlx::query_scalar::<_, Option<i64>>(q::NEXT_DUE_AT).fetch_one(self.0.reader()).await.map_err(map_err)
    }

    pub(crate) async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<Delivery>> {
        sqlx::query_as::<_, DeliveryRow>(q::SELECT_DELIVERY)
            .bind(id.as_str())
            .fetch_optional(self.0.reader())
            .await
            .map_err(map_err)?
            .map(Delivery::try_from)
            .transpose()
    }

    pub(crate) async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<Delivery>> {
        let listing = self
            .list_page(
                request,
                |after, limit, offset| q::list(filter, after, limit, offset),
                || q::count(filter),
                decode_sequenced,
                |(seq, _)| *seq,
            )
            .await?;
        Ok(listing.map(|(_, delivery)| delivery))
    }

    pub(crate) async fn attempts_of(&self, id: &DeliveryId) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query_as::<_, AttemptRow>(q::ATTEMPTS_OF)
            .bind(id.as_str())
            .fetch_all(self.0.reader())
            .await
            .map_err(map_err)?;
        decode_all(rows)
    }

    pub(crate) async fn count_dead(&self, filter: &DeliveryFilter) -> StoreResult<u64> {
        let query = q::count_dead(filter);
        let n: i64 = bind_scalar(sqlx::query_scalar(sqlx::AssertSqlSafe(query.sql)), query.binds)
            .fetch_one(self.0.reader())
            .await
            .map_err(map_err)?;
        Ok(count(n))
    }
}
