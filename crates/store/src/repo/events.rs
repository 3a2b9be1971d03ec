//! Reading events: one by id, a page of them, the deliveries of one. Ingest stays with each
//! backend (SQLite's group-commit writer, PostgreSQL's transaction).

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::delivery::Delivery;
use switchyard_core::event::{Event, EventFilter, EventId};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::StoreResult;

use super::{Args, Backend, Conn, Db, Repo, Row};
use crate::error::map_err;
use crate::rows::{DeliveryRow, EventRow, decode_all};
use crate::sql;

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> EventRow: FromRow<'r, Row<B>>,
    for<'r> DeliveryRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn get_event(&self, id: &EventId) -> StoreResult<Option<Event>> {
        sqlx::query_as::<_, EventRow>(sql::SELECT_EVENT)
            .bind(id.as_str())
            .fetch_optional(self.0.reader())
            .await
            .map_err(map_err)?
            .map(Event::try_from)
            .transpose()
    }

    pub(crate) async fn list_events(
        &self,
        filter: &EventFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<Event>> {
        self.list_page(
            request,
            |after, limit, offset| sql::list_events(filter, after, limit, offset),
            || sql::count_events(filter),
            decode_all::<EventRow, Event>,
            |event| event.seq,
        )
        .await
    }

    pub(crate) async fn deliveries_of_event(&self, id: &EventId) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query_as::<_, DeliveryRow>(sql::DELIVERIES_OF_EVENT)
            .bind(id.as_str())
            .fetch_all(self.0.reader())
            .await
            .map_err(map_err)?;
        decode_all(rows)
    }
}
