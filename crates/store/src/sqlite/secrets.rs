//! Secrets at rest as a whole: the shared repository ([`crate::repo`]) on this backend.

use switchyard_core::store::StoreResult;

use super::SqliteStore;
use crate::repo::Repo;
use crate::seal::{Reseal, SecretInventory};

impl SqliteStore {
    /// How every stored secret is kept, read in one snapshot.
    pub async fn secret_inventory(&self) -> StoreResult<SecretInventory> {
        Repo(self).secret_inventory().await
    }

    /// Seals the secrets `which` covers under the current key, all in one transaction: either
    /// every one of them is resealed or none is. Answers how many were.
    pub async fn reseal(&self, which: Reseal) -> StoreResult<u64> {
        Repo(self).reseal(which).await
    }
}
