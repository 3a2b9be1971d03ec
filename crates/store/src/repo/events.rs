//! Reading events: one by id, a page of them, the deliveries of one; and the outcomes of an
//! ingest. Its writes stay with each backend's group writer.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::delivery::Delivery;
use switchyard_core::event::{Event, EventFilter, EventId, EventLink, EventType, IngestOutcome, NewEvent};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::time::Millis;

use super::{Args, Backend, Conn, Db, Repo, Row};
use crate::error::map_err;
use crate::rows::{DeliveryRow, EventRow, decode_all};
use crate::sql;

/// What an ingest wrote for one event, inside its transaction.
pub(crate) enum Written {
    Created(Event),
    /// The id is taken, by an earlier call or earlier in this one; compared once committed.
    Taken(NewEvent),
}

/// What became of one event in an ingest's transaction.
pub(crate) enum Fate {
    /// Stored with this `seq`.
    Created(i64),
    /// Its id was taken.
    Taken,
}

/// The events of an ingest with what became of each, once their transaction committed.
pub(crate) fn written(events: Vec<NewEvent>, fates: Vec<Fate>, now: Millis) -> Vec<Written> {
    events
        .into_iter()
        .zip(fates)
        .map(|(new, fate)| match fate {
            Fate::Created(seq) => Written::Created(new.stored(seq, now)),
            Fate::Taken => Written::Taken(new),
        })
        .collect()
}

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> (String, String, Option<String>, i64, i64): FromRow<'r, Row<B>>,
    for<'r> EventRow: FromRow<'r, Row<B>>,
    for<'r> DeliveryRow: FromRow<'r, Row<B>>,
{
    /// The outcome of each event an ingest wrote. Events are never changed, so the committed
    /// row an id was taken by is the one to compare with.
    pub(crate) async fn outcomes_of(&self, written: Vec<Written>) -> StoreResult<Vec<IngestOutcome>> {
        let mut outcomes = Vec::with_capacity(written.len());
        for written in written {
            outcomes.push(match written {
                Written::Created(event) => IngestOutcome::Created(event),
                Written::Taken(new) => {
                    let stored = self.get_event(&new.event_id).await?.ok_or_else(|| {
                        StoreError::Backend(format!("event {} was taken and is gone", new.event_id).into())
                    })?;
                    IngestOutcome::of_taken(stored, new)
                }
            });
        }
        Ok(outcomes)
    }

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

    pub(crate) async fn links_of_flow(
        &self,
        correlation_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<EventLink>> {
        let rows = sqlx::query_as::<_, (String, String, Option<String>, i64, i64)>(sql::LINKS_OF_FLOW)
            .bind(correlation_id)
            .bind(i64::from(limit))
            .fetch_all(self.0.reader())
            .await
            .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(event_id, event_type, causation_id, timestamp, received_at)| EventLink {
                event_id: EventId::from_trusted(event_id),
                event_type: EventType::from_trusted(event_type),
                causation_id,
                timestamp,
                received_at,
            })
            .collect())
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
