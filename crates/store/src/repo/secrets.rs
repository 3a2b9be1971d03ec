//! Secrets at rest as a whole: which keys seal them, and resealing them (the plaintext left by
//! earlier versions, at start-up; everything, under a new master key, on rotation).

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::store::StoreResult;

use super::{Args, Backend, Conn, Db, Repo, Row};
use crate::error::{map_err, sealed, unreadable};
use crate::rows::{DESTINATION_SECRETS, IDEMPOTENCY_BODY, destination_place, idempotency_place, open_stored};
use crate::seal::{Reseal, SecretInventory, StoredForm};
use crate::sql;

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Vec<u8>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (Vec<u8>,): FromRow<'r, Row<B>>,
    for<'r> (String, String): FromRow<'r, Row<B>>,
    for<'r> (String, String, Vec<u8>): FromRow<'r, Row<B>>,
{
    /// How every stored secret is kept, read in one snapshot.
    pub(crate) async fn secret_inventory(&self) -> StoreResult<SecretInventory> {
        let mut tx = self.0.begin_read().await?;
        let destinations: Vec<(String, String)> =
            sqlx::query_as(sql::ALL_DESTINATION_SECRETS).fetch_all(&mut *tx).await.map_err(map_err)?;
        let bodies: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as(sql::IDEMPOTENCY_BODY_HEADS).fetch_all(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        let mut inventory = SecretInventory::default();
        for (_, stored) in destinations {
            inventory.count(StoredForm::of(stored.as_bytes()));
        }
        for (_, _, head) in bodies {
            inventory.count(StoredForm::of(&head));
        }
        Ok(inventory)
    }

    /// Seals the secrets `which` covers under the current key, all in one transaction: either
    /// every one of them is resealed or none is. Answers how many were.
    pub(crate) async fn reseal(&self, which: Reseal) -> StoreResult<u64> {
        let sealer = self.0.sealer();
        let current = sealer.current_key_id().clone();
        let mut resealed = 0;
        let mut tx = self.0.begin_write().await?;

        let destinations: Vec<(String, String)> =
            sqlx::query_as(sql::ALL_DESTINATION_SECRETS).fetch_all(&mut *tx).await.map_err(map_err)?;
        for (id, stored) in destinations {
            if !which.covers(&StoredForm::of(stored.as_bytes()), &current) {
                continue;
            }
            let at = destination_place(&id);
            let plaintext = open_stored(sealer, DESTINATION_SECRETS, &at, stored.as_bytes())?;
            // Plaintext from an earlier version is checked before it is sealed for good.
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&plaintext)
                .map_err(|e| unreadable(DESTINATION_SECRETS, e))?;
            let resealed_value = sealer.seal(&at, &plaintext).map_err(sealed(DESTINATION_SECRETS))?;
            sqlx::query(sql::RESEAL_DESTINATION_SECRETS)
                .bind(resealed_value)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            resealed += 1;
        }

        let heads: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as(sql::IDEMPOTENCY_BODY_HEADS).fetch_all(&mut *tx).await.map_err(map_err)?;
        for (scope, key, head) in heads {
            if !which.covers(&StoredForm::of(&head), &current) {
                continue;
            }
            let stored: Vec<u8> = sqlx::query_scalar(sql::IDEMPOTENCY_BODY)
                .bind(scope.as_str())
                .bind(key.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
            let at = idempotency_place(&scope, &key);
            let plaintext = open_stored(sealer, IDEMPOTENCY_BODY, &at, &stored)?;
            let resealed_value = sealer.seal(&at, &plaintext).map_err(sealed(IDEMPOTENCY_BODY))?;
            sqlx::query(sql::RESEAL_IDEMPOTENCY_BODY)
                .bind(resealed_value.into_bytes())
                .bind(scope.as_str())
                .bind(key.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            resealed += 1;
        }

        tx.commit().await.map_err(map_err)?;
        Ok(resealed)
    }
}
