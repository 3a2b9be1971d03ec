//! The group writer's turn: sqlx's one write connection, held while groups are written on the
//! writer's own connection, so that sqlx's writers (claims, the control plane) wait for it in
//! the process instead of meeting a locked file.
//!
//! sqlx takes a connection back on a task of the runtime, and under load that task waits its
//! turn behind the requests: taking the connection again right after giving it back waited
//! about 0.8 ms a group under `e2e`. So the writer keeps the turn from group to group, and
//! gives it back when another writer asks for it ([`TurnWanted`]: the store's write
//! transactions and single writes ask while they wait), when no call came for [`LINGER`], or,
//! checked after each group, once it has held it for [`LONGEST_HOLD`], so that a writer that
//! does not ask (migrations, tests) waits about that long plus the group in progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;
use switchyard_core::store::StoreResult;

use crate::error::map_err;

/// Longest the writer keeps the turn while calls keep coming and nobody asks for it.
pub(super) const LONGEST_HOLD: Duration = Duration::from_millis(20);
/// How long the writer waits, holding the turn, for the next call once its queue is empty.
pub(super) const LINGER: Duration = Duration::from_millis(1);

/// How many of sqlx's writers are waiting for the write connection. Cheap to clone: clones
/// share the count.
#[derive(Debug, Clone, Default)]
pub(crate) struct TurnWanted(Arc<AtomicUsize>);

impl TurnWanted {
    /// Counts a writer as waiting until the returned guard is dropped (once it has the
    /// connection, or gave up).
    pub(crate) fn announce(&self) -> Announced {
        self.0.fetch_add(1, Ordering::AcqRel);
        Announced(self.0.clone())
    }

    fn is_wanted(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

/// A writer counted as waiting for the turn.
#[must_use = "the writer counts as waiting while this lives"]
pub(crate) struct Announced(Arc<AtomicUsize>);

impl Drop for Announced {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The turn as the writer holds it, or not.
pub(super) struct Turn {
    writer: SqlitePool,
    wanted: TurnWanted,
    held: Option<(PoolConnection<Sqlite>, Instant)>,
}

impl Turn {
    pub(super) fn new(writer: SqlitePool, wanted: TurnWanted) -> Self {
        Self { writer, wanted, held: None }
    }

    pub(super) fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Takes the turn unless held, in line behind sqlx's other writers.
    pub(super) async fn take(&mut self) -> StoreResult<()> {
        if self.held.is_none() {
            let connection = self.writer.acquire().await.map_err(map_err)?;
            self.held = Some((connection, Instant::now()));
        }
        Ok(())
    }

    /// After a group, and before waiting for the next call: gives the turn back if another
    /// writer asked for it or it was held for [`LONGEST_HOLD`].
    pub(super) fn after_group(&mut self) {
        let overdue = self.held.as_ref().is_some_and(|(_, since)| since.elapsed() >= LONGEST_HOLD);
        if overdue || self.wanted.is_wanted() {
            self.give_back();
        }
    }

    /// Gives the turn back, if held.
    pub(super) fn give_back(&mut self) {
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    #[tokio::test]
    async fn the_turn_is_kept_after_a_group_unless_asked_for_or_held_too_long() {
        let pool =
            SqlitePoolOptions::new().max_connections(1).connect("sqlite::memory:").await.expect("pool");
        let wanted = TurnWanted::default();
        let mut turn = Turn::new(pool, wanted.clone());
        turn.take().await.expect("the turn");
        turn.after_group();
        assert!(turn.is_held(), "nobody asked: kept for the next group");

        let asking = wanted.announce();
        turn.after_group();
        assert!(!turn.is_held(), "given back to the writer that asked");
        drop(asking);

        turn.take().await.expect("the turn again");
        tokio::time::sleep(LONGEST_HOLD + Duration::from_millis(5)).await;
        turn.after_group();
        assert!(!turn.is_held(), "given back once held for the longest hold");
    }
}
