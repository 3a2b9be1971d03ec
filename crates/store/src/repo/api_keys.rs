//! API keys, found by the SHA-256 of their token.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::api_key::ApiKey;
use switchyard_core::id::ApiKeyId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::StoreResult;
use switchyard_core::time::Millis;

use super::{Args, Backend, Conn, Db, Repo, Row, count, page_bounds};
use crate::error::{map_err, name_conflict};
use crate::rows::{ApiKeyRow, decode_all};
use crate::sql;

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<i64>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> ApiKeyRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        sqlx::query(sql::INSERT_API_KEY)
            .bind(key.id.as_str())
            .bind(key.name.as_str())
            .bind(key.role.as_str())
            .bind(key.prefix.as_str())
            .bind(key.token_hash.as_str())
            .bind(key.created_at)
            .bind(key.revoked_at)
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)
            // Never name the token hash: the id is enough to tell which key collided.
            .map_err(name_conflict(|| format!("API key {} already exists", key.id)))?;
        Ok(())
    }

    pub(crate) async fn find_active_api_key(&self, token_hash: &str) -> StoreResult<Option<ApiKey>> {
        sqlx::query_as::<_, ApiKeyRow>(sql::FIND_ACTIVE_API_KEY)
            .bind(token_hash)
            .fetch_optional(self.0.reader())
            .await
            .map_err(map_err)?
            .map(ApiKey::try_from)
            .transpose()
    }

    pub(crate) async fn list_api_keys(&self, request: ListRequest) -> StoreResult<Listing<ApiKey>> {
        let (limit, offset) = page_bounds(request);
        let mut tx = self.0.begin_read().await?;
        let rows = sqlx::query_as::<_, ApiKeyRow>(sql::LIST_ACTIVE_API_KEYS)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let total: i64 =
            sqlx::query_scalar(sql::COUNT_ACTIVE_API_KEYS).fetch_one(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Listing { items: decode_all(rows)?, total: Some(count(total)), next_cursor: None })
    }

    pub(crate) async fn revoke_api_key(&self, id: &ApiKeyId, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(sql::REVOKE_API_KEY)
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)?;
        Ok(B::rows_affected(&result) > 0)
    }

    pub(crate) async fn count_active_api_keys(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(sql::COUNT_ACTIVE_API_KEYS)
            .fetch_one(self.0.reader())
            .await
            .map_err(map_err)?;
        Ok(count(n))
    }
}
