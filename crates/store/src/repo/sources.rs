//! Sources: where events enter other than through the API, stored as destinations are.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::id::SourceId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::source::Source;
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::time::Millis;

use super::{Args, Backend, Conn, Db, Repo, Row, count, page_bounds};
use crate::error::{map_err, name_conflict};
use crate::rows::sources::{SourceRow, seal_source_secrets};
use crate::rows::to_json;
use crate::seal::Sealer;
use crate::sql::sources as sql;

/// The columns a source is written with, encoded once for insert and update alike; the
/// secrets sealed.
struct Encoded {
    config: String,
    secrets: String,
}

fn encode(sealer: &Sealer, source: &Source) -> StoreResult<Encoded> {
    Ok(Encoded {
        config: to_json("sources.config", &source.config)?,
        secrets: seal_source_secrets(sealer, source.id.as_str(), &source.secrets)?,
    })
}

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> bool: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> SourceRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn create_source(&self, source: &Source) -> StoreResult<()> {
        let encoded = encode(self.0.sealer(), source)?;
        sqlx::query(sql::INSERT_SOURCE)
            .bind(source.id.as_str())
            .bind(source.name.as_str())
            .bind(source.kind.as_str())
            .bind(encoded.config)
            .bind(encoded.secrets)
            .bind(source.enabled)
            .bind(source.version)
            .bind(source.created_at)
            .bind(source.updated_at)
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)
            .map_err(name_conflict(|| format!("source {} already exists", source.id)))?;
        Ok(())
    }

    pub(crate) async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>> {
        sqlx::query_as::<_, SourceRow>(sql::SELECT_SOURCE)
            .bind(id.as_str())
            .fetch_optional(self.0.reader())
            .await
            .map_err(map_err)?
            .map(|row| row.decode(self.0.sealer()))
            .transpose()
    }

    pub(crate) async fn list_sources(&self, request: ListRequest) -> StoreResult<Listing<Source>> {
        let (limit, offset) = page_bounds(request);
        let mut tx = self.0.begin_read().await?;
        let rows = sqlx::query_as::<_, SourceRow>(sql::LIST_SOURCES)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let total: i64 = sqlx::query_scalar(sql::COUNT_SOURCES).fetch_one(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        let items = rows.into_iter().map(|row| row.decode(self.0.sealer())).collect::<StoreResult<_>>()?;
        Ok(Listing { items, total: Some(count(total)), next_cursor: None })
    }

    /// Writes `source` over the stored one if that is still at `expected_version`; the stored
    /// version becomes `expected_version + 1` (the store counts versions, `source.version` is
    /// not written).
    pub(crate) async fn update_source(&self, source: &Source, expected_version: i64) -> StoreResult<Source> {
        let encoded = encode(self.0.sealer(), source)?;
        let mut tx = self.0.begin_write().await?;
        let updated = sqlx::query_as::<_, SourceRow>(sql::UPDATE_SOURCE)
            .bind(source.name.as_str())
            .bind(source.kind.as_str())
            .bind(encoded.config)
            .bind(encoded.secrets)
            .bind(source.enabled)
            .bind(source.updated_at)
            .bind(source.id.as_str())
            .bind(expected_version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = updated else {
            let current: Option<i64> = sqlx::query_scalar(sql::SOURCE_VERSION)
                .bind(source.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            return Err(match current {
                Some(current) => StoreError::VersionMismatch { current },
                None => StoreError::NotFound("source"),
            });
        };
        tx.commit().await.map_err(map_err)?;
        row.decode(self.0.sealer())
    }

    pub(crate) async fn delete_source(&self, id: &SourceId) -> StoreResult<bool> {
        let result = sqlx::query(sql::DELETE_SOURCE)
            .bind(id.as_str())
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)?;
        Ok(B::rows_affected(&result) > 0)
    }

    pub(crate) async fn lease_source(
        &self,
        id: &SourceId,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> StoreResult<bool> {
        let result = sqlx::query(sql::LEASE_SOURCE)
            .bind(owner)
            .bind(until)
            .bind(id.as_str())
            .bind(now)
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)?;
        Ok(B::rows_affected(&result) > 0)
    }

    pub(crate) async fn release_source(&self, id: &SourceId, owner: &str) -> StoreResult<()> {
        sqlx::query(sql::RELEASE_SOURCE)
            .bind(id.as_str())
            .bind(owner)
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
