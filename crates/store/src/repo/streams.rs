//! The reads of the live streams (`sql::streams`): rows after a position in commit order,
//! filtered here so a read advances past rows that do not match.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::delivery::Delivery;
use switchyard_core::event::Event;
use switchyard_core::store::StoreResult;
use switchyard_core::stream::{DeliveryStreamFilter, EventStreamFilter, StreamCursor, StreamPage};

use super::{Args, Backend, Conn, Db, Repo, Row};
use crate::error::map_err;
use crate::rows::{StreamedDeliveryRow, StreamedEventRow};

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64, i64): FromRow<'r, Row<B>>,
    for<'r> StreamedEventRow: FromRow<'r, Row<B>>,
    for<'r> StreamedDeliveryRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn stream_events(
        &self,
        after: StreamCursor,
        filter: &EventStreamFilter,
        limit: u32,
    ) -> StoreResult<StreamPage<Event>> {
        let rows = sqlx::query_as::<_, StreamedEventRow>(B::STREAM_EVENTS)
            .bind(after.position())
            .bind(after.seq())
            .bind(i64::from(limit.max(1)))
            .fetch_all(self.0.reader())
            .await
            .map_err(map_err)?;
        let more = rows.len() >= usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        let mut page = StreamPage { items: Vec::new(), end: None, more };
        for row in rows {
            let event = Event::try_from(row.event)?;
            let at = StreamCursor::new(row.position, event.seq);
            page.end = Some(at);
            if filter.matches(&event) {
                page.items.push((at, event));
            }
        }
        Ok(page)
    }

    pub(crate) async fn stream_deliveries(
        &self,
        after: StreamCursor,
        filter: &DeliveryStreamFilter,
        limit: u32,
    ) -> StoreResult<StreamPage<Delivery>> {
        let rows = sqlx::query_as::<_, StreamedDeliveryRow>(B::STREAM_DELIVERIES)
            .bind(after.position())
            .bind(after.seq())
            .bind(i64::from(limit.max(1)))
            .fetch_all(self.0.reader())
            .await
            .map_err(map_err)?;
        let more = rows.len() >= usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        let mut page = StreamPage { items: Vec::new(), end: None, more };
        for row in rows {
            let at = StreamCursor::new(row.position, row.delivery.seq());
            let delivery = Delivery::try_from(row.delivery)?;
            page.end = Some(at);
            if filter.matches(&delivery) {
                page.items.push((at, delivery));
            }
        }
        Ok(page)
    }

    pub(crate) async fn stream_head(&self, query: &'static str) -> StoreResult<StreamCursor> {
        let (position, seq) =
            sqlx::query_as::<_, (i64, i64)>(query).fetch_one(self.0.reader()).await.map_err(map_err)?;
        Ok(StreamCursor::new(position, seq))
    }
}
