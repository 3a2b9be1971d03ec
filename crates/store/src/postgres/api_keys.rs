//! API keys, found by the SHA-256 of their token.

use async_trait::async_trait;
use switchyard_core::api_key::ApiKey;
use switchyard_core::id::ApiKeyId;
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{ApiKeyStore, StoreResult};
use switchyard_core::time::Millis;

use super::{PgStore, count, page_bounds};
use crate::error::{map_err, name_conflict};
use crate::rows::{ApiKeyRow, decode_all};
use crate::sql;

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        sqlx::query(sql::INSERT_API_KEY)
            .bind(key.id.as_str())
            .bind(key.name.as_str())
            .bind(key.role.as_str())
            .bind(key.prefix.as_str())
            .bind(key.token_hash.as_str())
            .bind(key.created_at)
            .bind(key.revoked_at)
            .execute(&self.pool)
            .await
            .map_err(map_err)
            // Never name the token hash: the id is enough to tell which key collided.
            .map_err(name_conflict(|| format!("API key {} already exists", key.id)))?;
        Ok(())
    }

    async fn find_active_api_key(&self, token_hash: &str) -> StoreResult<Option<ApiKey>> {
        sqlx::query_as::<_, ApiKeyRow>(sql::FIND_ACTIVE_API_KEY)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .map(ApiKey::try_from)
            .transpose()
    }

    async fn list_api_keys(&self, request: ListRequest) -> StoreResult<Listing<ApiKey>> {
        let (limit, offset) = page_bounds(request);
        let mut tx = self.begin_read().await?;
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

    async fn revoke_api_key(&self, id: &ApiKeyId, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(sql::REVOKE_API_KEY)
            .bind(now)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(result.rows_affected() > 0)
    }

    async fn count_active_api_keys(&self) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar(sql::COUNT_ACTIVE_API_KEYS).fetch_one(&self.pool).await.map_err(map_err)?;
        Ok(count(n))
    }
}
