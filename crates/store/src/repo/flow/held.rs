//! Held outcomes written on their own: a destination that goes quiet has no next attempt to
//! carry what its last ones left in [`Unwritten`], which would then be lost on a restart and
//! never seen by other nodes. The node's upkeep calls [`Repo::write_held_outcomes`] often
//! enough that nothing stays held much longer than `FLUSH_AFTER_MS`.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::id::DestinationId;
use switchyard_core::store::StoreResult;
use switchyard_core::time::{Millis, now_millis};

use super::{Taken, Unwritten};
use crate::error::map_err;
use crate::repo::{Args, Backend, Conn, Db, Repo, Row};
use crate::rows::flow::FlowRow;

/// Records written in one transaction, at most: the write lock is not held for long.
const RECORDS_PER_WRITE: usize = 64;

impl Unwritten {
    /// The destinations whose oldest held outcome was recorded before `held_before`, in id
    /// order: the order every writer locks records in.
    fn held_before(&self, held_before: Millis) -> Vec<DestinationId> {
        let mut due: Vec<DestinationId> = self
            .lock()
            .iter()
            .filter(|(_, held)| held.since < held_before)
            .map(|(id, _)| id.clone())
            .collect();
        due.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        due
    }
}

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<String>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<i64>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<f64>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (Option<i64>,): FromRow<'r, Row<B>>,
    for<'r> FlowRow: FromRow<'r, Row<B>>,
{
    /// Adds to their records the outcomes held since before `held_before`, each record read
    /// under its lock and written over its version; answers how many records it wrote. What
    /// an attempt wrote meanwhile is no longer held and is skipped; a destination deleted
    /// meanwhile takes its held outcomes with it.
    pub(crate) async fn write_held_outcomes(&self, held_before: Millis) -> StoreResult<u64> {
        let unwritten = self.0.unwritten();
        let due = unwritten.held_before(held_before);
        let mut written = 0;
        for chunk in due.chunks(RECORDS_PER_WRITE) {
            let mut tx = self.0.begin_write().await?;
            let mut taken = Vec::with_capacity(chunk.len());
            for id in chunk {
                let stored = Self::select_flow(&mut tx, B::SELECT_FLOW_LOCKED, id).await?;
                // Taken under the record's lock: an attempt deciding on this record now
                // waits, and finds them written.
                let Some(held) = unwritten.take(id) else { continue };
                let Some(mut flow) = stored else { continue };
                let now = now_millis();
                flow.outcomes.merge(&held.outcomes, held.window_ms, now);
                let window_ms = held.window_ms;
                // Put back unless the write commits.
                let guard = Taken(Some((unwritten.clone(), id.clone(), held, window_ms, now)));
                if Self::write_flow(&mut tx, &flow, now).await? {
                    taken.push(guard);
                }
            }
            tx.commit().await.map_err(map_err)?;
            written += taken.len() as u64;
            taken.into_iter().for_each(Taken::written);
        }
        Ok(written)
    }
}
