//! Secrets at rest as a whole (`destinations.secrets`, `sources.secrets`,
//! `idempotency_keys.body`): which keys seal them, and resealing them (the plaintext left by
//! earlier versions, at start-up; everything, under a new master key, on rotation).

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::store::StoreResult;

use super::{Args, Backend, Conn, Db, Repo, Row};
use crate::error::{map_err, sealed, unreadable};
use crate::rows::sources::{SOURCE_SECRETS, source_place};
use crate::rows::{
    DESTINATION_SECRETS, IDEMPOTENCY_BODY, destination_place, idempotency_place, open_sealed, open_stored,
};
use crate::seal::{Reseal, Sealer, SecretInventory, StoredForm};
use crate::sql;

/// A column holding one sealed map of secrets per row, keyed by the row's `id`.
struct SecretsColumn {
    column: &'static str,
    /// `id, secrets` of every row.
    all: &'static str,
    /// Writes `$1` as the secrets of row `$2`.
    reseal: &'static str,
    place: fn(&str) -> Vec<u8>,
    /// Whether versions before sealing wrote it in clear (read, then sealed at start-up); where
    /// none did, a value in clear is refused.
    legacy_plaintext: bool,
}

impl SecretsColumn {
    /// The plaintext of the value `stored` at `at`.
    fn open(&self, sealer: &Sealer, at: &[u8], stored: &[u8]) -> StoreResult<Vec<u8>> {
        if self.legacy_plaintext {
            open_stored(sealer, self.column, at, stored)
        } else {
            open_sealed(sealer, self.column, at, stored)
        }
    }
}

const SECRETS_COLUMNS: [SecretsColumn; 2] = [
    SecretsColumn {
        column: DESTINATION_SECRETS,
        all: sql::ALL_DESTINATION_SECRETS,
        reseal: sql::RESEAL_DESTINATION_SECRETS,
        place: destination_place,
        legacy_plaintext: true,
    },
    SecretsColumn {
        column: SOURCE_SECRETS,
        all: sql::sources::ALL_SOURCE_SECRETS,
        reseal: sql::sources::RESEAL_SOURCE_SECRETS,
        place: source_place,
        legacy_plaintext: false,
    },
];

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
        let mut inventory = SecretInventory::default();
        for secrets in &SECRETS_COLUMNS {
            let rows: Vec<(String, String)> =
                sqlx::query_as(secrets.all).fetch_all(&mut *tx).await.map_err(map_err)?;
            for (_, stored) in rows {
                inventory.count(StoredForm::of(stored.as_bytes()));
            }
        }
        let bodies: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as(sql::IDEMPOTENCY_BODY_HEADS).fetch_all(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
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

        for secrets in &SECRETS_COLUMNS {
            let rows: Vec<(String, String)> =
                sqlx::query_as(secrets.all).fetch_all(&mut *tx).await.map_err(map_err)?;
            for (id, stored) in rows {
                if !which.covers(&StoredForm::of(stored.as_bytes()), &current) {
                    continue;
                }
                let at = (secrets.place)(&id);
                let plaintext = secrets.open(sealer, &at, stored.as_bytes())?;
                // Plaintext from an earlier version is checked before it is sealed for good.
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&plaintext)
                    .map_err(|e| unreadable(secrets.column, e))?;
                let resealed_value = sealer.seal(&at, &plaintext).map_err(sealed(secrets.column))?;
                sqlx::query(secrets.reseal)
                    .bind(resealed_value)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                resealed += 1;
            }
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
