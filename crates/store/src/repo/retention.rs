//! Retention: everything that grows with traffic is deleted past its cutoff in bounded
//! batches, one transaction each, taken in turn ([`Backend::take_prune_turn`]) so that only one
//! node of a shared database prunes at a time.

use sqlx::{Encode, Executor, IntoArguments, Type};
use switchyard_core::store::StoreResult;
use switchyard_core::time::Millis;

use super::{Args, Backend, Conn, Db, Repo};
use crate::error::map_err;
use crate::sql::deliveries;

/// One statement of a prune, bound to the cutoff (`$1`) and the batch size (`$2`).
struct Deletion {
    sql: &'static str,
    /// Whether its rows count in the prune's answer (attempts go with their deliveries).
    counted: bool,
}

/// Attempts first: they reference the deliveries the next statement selects again.
const FINISHED_DELIVERIES: [Deletion; 3] = [
    Deletion { sql: deliveries::PRUNE_ATTEMPTS, counted: false },
    Deletion { sql: deliveries::PRUNE_DELIVERIES, counted: true },
    Deletion { sql: deliveries::PRUNE_EVENTS, counted: true },
];

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
{
    /// Succeeded and filtered deliveries with their attempts, then events left without a
    /// delivery.
    pub(crate) async fn prune(&self, before: Millis, limit: u32) -> StoreResult<u64> {
        self.prune_in_turn(&FINISHED_DELIVERIES, before, limit).await
    }

    pub(crate) async fn prune_audit_log(&self, before: Millis, limit: u32) -> StoreResult<u64> {
        self.prune_in_turn(&[Deletion { sql: B::PRUNE_AUDIT_LOG, counted: true }], before, limit).await
    }

    pub(crate) async fn prune_idempotency_keys(&self, before: Millis, limit: u32) -> StoreResult<u64> {
        self.prune_in_turn(&[Deletion { sql: B::PRUNE_IDEMPOTENCY_KEYS, counted: true }], before, limit).await
    }

    /// Runs `deletions` in order in one transaction if no other node is pruning; answers how
    /// many counted rows went (0 when it was not this node's turn).
    async fn prune_in_turn(&self, deletions: &[Deletion], before: Millis, limit: u32) -> StoreResult<u64> {
        if limit == 0 {
            return Ok(0);
        }
        let limit = i64::from(limit);
        let mut tx = self.0.begin_write().await?;
        // Each statement sees what committed before it, so a batch committed by another node
        // between two of them would make the later one select the next batch, whose attempts
        // are still there. The others have nothing to do meanwhile.
        if !B::take_prune_turn(&mut tx).await? {
            tx.rollback().await.map_err(map_err)?;
            return Ok(0);
        }
        let mut deleted = 0;
        for deletion in deletions {
            let result = sqlx::query(deletion.sql)
                .bind(before)
                .bind(limit)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            if deletion.counted {
                deleted += B::rows_affected(&result);
            }
        }
        tx.commit().await.map_err(map_err)?;
        Ok(deleted)
    }
}
