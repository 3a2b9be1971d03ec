//! `Idempotency-Key` records: a claim while the request runs, then its stored response.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::store::{IdempotencyClaim, StoreResult, StoredResponse};
use switchyard_core::time::Millis;

use super::{Args, Backend, Conn, Db, Repo, Row};
use crate::error::map_err;
use crate::rows::{IdempotencyRow, seal_body};
use crate::sql;

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<&'q str>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Vec<u8>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> IdempotencyRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: Millis,
        stale_before: Millis,
        abandoned_before: Millis,
    ) -> StoreResult<IdempotencyClaim> {
        let mut tx = self.0.begin_write().await?;
        // An expired response or an abandoned claim (its request crashed): either way the key
        // is free again.
        sqlx::query(sql::DELETE_STALE_IDEMPOTENCY_KEY)
            .bind(scope)
            .bind(key)
            .bind(stale_before)
            .bind(abandoned_before)
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
        let claim = if B::rows_affected(&inserted) > 0 {
            IdempotencyClaim::Claimed
        } else {
            sqlx::query_as::<_, IdempotencyRow>(sql::SELECT_IDEMPOTENCY_KEY)
                .bind(scope)
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?
                .into_claim(self.0.sealer(), scope, key)?
        };
        tx.commit().await.map_err(map_err)?;
        Ok(claim)
    }

    pub(crate) async fn complete_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        claimed_at: Millis,
        response: &StoredResponse,
    ) -> StoreResult<()> {
        // The body may show a secret (a rotated signing secret, a new API key's token).
        let body = seal_body(self.0.sealer(), scope, key, &response.body)?;
        let result = sqlx::query(sql::COMPLETE_IDEMPOTENCY_KEY)
            .bind(i64::from(response.status))
            .bind(response.location.as_deref())
            .bind(body)
            .bind(scope)
            .bind(key)
            .bind(claimed_at)
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)?;
        if B::rows_affected(&result) == 0 {
            // The claim went stale and was taken over (or released) while the request ran;
            // the request itself succeeded, so failing it now would only mislead the client.
            tracing::warn!(scope, key, "idempotency key completed after its claim was forgotten");
        }
        Ok(())
    }

    pub(crate) async fn release_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        claimed_at: Millis,
    ) -> StoreResult<()> {
        sqlx::query(sql::RELEASE_IDEMPOTENCY_KEY)
            .bind(scope)
            .bind(key)
            .bind(claimed_at)
            .execute(&mut *self.0.writer().await?)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
