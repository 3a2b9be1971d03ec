//! `Idempotency-Key` records: a claim while the request runs, then its stored response.

use async_trait::async_trait;
use switchyard_core::store::{IdempotencyClaim, IdempotencyStore, StoreResult, StoredResponse};
use switchyard_core::time::Millis;

use super::PgStore;
use crate::error::map_err;
use crate::rows::{IdempotencyRow, seal_body};
use crate::sql;

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: Millis,
        stale_before: Millis,
    ) -> StoreResult<IdempotencyClaim> {
        let mut tx = self.begin_write().await?;
        // One cutoff covers both an abandoned claim (its request crashed) and an expired
        // response: either way the key is free again.
        sqlx::query(sql::DELETE_STALE_IDEMPOTENCY_KEY)
            .bind(scope)
            .bind(key)
            .bind(stale_before)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let inserted = sqlx::query(sql::CLAIM_IDEMPOTENCY_KEY)
            .bind(scope)
            .bind(key)
            .bind(request_hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let claim = if inserted.rows_affected() > 0 {
            IdempotencyClaim::Claimed
        } else {
            sqlx::query_as::<_, IdempotencyRow>(sql::SELECT_IDEMPOTENCY_KEY)
                .bind(scope)
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?
                .into_claim(&self.sealer, scope, key)?
        };
        tx.commit().await.map_err(map_err)?;
        Ok(claim)
    }

    async fn complete_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> StoreResult<()> {
        // The body may show a secret (a rotated signing secret, a new API key's token).
        let body = seal_body(&self.sealer, scope, key, &response.body)?;
        let result = sqlx::query(sql::COMPLETE_IDEMPOTENCY_KEY)
            .bind(i64::from(response.status))
            .bind(response.location.as_deref())
            .bind(body)
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if result.rows_affected() == 0 {
            // The claim went stale and was taken over (or released) while the request ran;
            // the request itself succeeded, so failing it now would only mislead the client.
            tracing::warn!(scope, key, "idempotency key completed after its claim was forgotten");
        }
        Ok(())
    }

    async fn release_idempotency_key(&self, scope: &str, key: &str) -> StoreResult<()> {
        sqlx::query(sql::RELEASE_IDEMPOTENCY_KEY)
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
