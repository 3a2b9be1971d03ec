//! The event-type registry.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::event::EventType;
use switchyard_core::event_type::EventTypeDefinition;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{StoreError, StoreResult};

use super::{Args, Backend, Conn, Db, Repo, Row, count, page_bounds};
use crate::error::{map_err, name_conflict};
use crate::rows::{EventTypeRow, decode_all, to_json};
use crate::sql;

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<&'q str>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<String>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> bool: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> EventTypeRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn create_event_type(&self, definition: &EventTypeDefinition) -> StoreResult<()> {
        let schema = definition.schema.as_ref().map(|s| to_json("event_types.schema", s)).transpose()?;
        sqlx::query(sql::INSERT_EVENT_TYPE)
            .bind(definition.name.as_str())
            .bind(definition.description.as_deref())
            .bind(schema)
            .bind(definition.deprecated)
            .bind(definition.version)
            .bind(definition.created_at)
            .bind(definition.updated_at)
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)
            .map_err(name_conflict(|| format!("event type {} already exists", definition.name)))?;
        Ok(())
    }

    pub(crate) async fn get_event_type(&self, name: &EventType) -> StoreResult<Option<EventTypeDefinition>> {
        sqlx::query_as::<_, EventTypeRow>(sql::SELECT_EVENT_TYPE)
            .bind(name.as_str())
            .fetch_optional(self.0.reader())
            .await
            .map_err(map_err)?
            .map(EventTypeDefinition::try_from)
            .transpose()
    }

    pub(crate) async fn list_event_types(
        &self,
        request: ListRequest,
    ) -> StoreResult<Listing<EventTypeDefinition>> {
        let (limit, offset) = page_bounds(request);
        let mut tx = self.0.begin_read().await?;
        let rows = sqlx::query_as::<_, EventTypeRow>(sql::LIST_EVENT_TYPES)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let total: i64 =
            sqlx::query_scalar(sql::COUNT_EVENT_TYPES).fetch_one(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Listing { items: decode_all(rows)?, total: Some(count(total)), next_cursor: None })
    }

    pub(crate) async fn update_event_type(
        &self,
        definition: &EventTypeDefinition,
        expected_version: i64,
    ) -> StoreResult<EventTypeDefinition> {
        let schema = definition.schema.as_ref().map(|s| to_json("event_types.schema", s)).transpose()?;
        let mut tx = self.0.begin_write().await?;
        let updated = sqlx::query_as::<_, EventTypeRow>(sql::UPDATE_EVENT_TYPE)
            .bind(definition.description.as_deref())
            .bind(schema)
            .bind(definition.deprecated)
            .bind(definition.updated_at)
            .bind(definition.name.as_str())
            .bind(expected_version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = updated else {
            let current: Option<i64> = sqlx::query_scalar(sql::EVENT_TYPE_VERSION)
                .bind(definition.name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            return Err(match current {
                Some(current) => StoreError::VersionMismatch { current },
                None => StoreError::NotFound("event type"),
            });
        };
        tx.commit().await.map_err(map_err)?;
        EventTypeDefinition::try_from(row)
    }

    pub(crate) async fn delete_event_type(&self, name: &EventType) -> StoreResult<bool> {
        let result = sqlx::query(sql::DELETE_EVENT_TYPE)
            .bind(name.as_str())
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)?;
        Ok(B::rows_affected(&result) > 0)
    }
}
