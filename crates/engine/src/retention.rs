//! The store's upkeep in the background: whatever grows with traffic is pruned past its
//! retention, in small batches (succeeded and filtered deliveries with their attempts and
//! finished events after `retention_days`, audit entries after `audit_retention_days`,
//! `Idempotency-Key` answers after a day), and flow outcomes the store holds in memory are
//! written within about a second even when no attempt follows them.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::store::{IDEMPOTENCY_RETENTION_MS, Store, StoreResult};
use switchyard_core::time::{Millis, now_millis};

use crate::EngineSettings;
use crate::shutdown::Shutdown;

const BATCH: u32 = 500;
const DAY_MS: i64 = 86_400_000;

/// How often held flow outcomes are looked at, and how old the oldest of a destination's must
/// be to be written: together, none waits much more than a second, as an attempt would see to.
const HELD_OUTCOMES_EVERY: Duration = Duration::from_millis(250);
const HELD_OUTCOMES_AGE_MS: Millis = 750;

/// What is pruned, each past its own cutoff.
#[derive(Debug, Clone, Copy)]
enum Kept {
    FinishedDeliveries,
    AuditLog,
    IdempotencyKeys,
}

impl Kept {
    const ALL: [Kept; 3] = [Kept::FinishedDeliveries, Kept::AuditLog, Kept::IdempotencyKeys];

    fn retention_ms(self, settings: &EngineSettings) -> Millis {
        match self {
            Kept::FinishedDeliveries => i64::from(settings.retention_days) * DAY_MS,
            Kept::AuditLog => i64::from(settings.audit_retention_days) * DAY_MS,
            Kept::IdempotencyKeys => IDEMPOTENCY_RETENTION_MS,
        }
    }

    async fn prune(self, store: &dyn Store, before: Millis) -> StoreResult<u64> {
        match self {
            Kept::FinishedDeliveries => store.prune(before, BATCH).await,
            Kept::AuditLog => store.prune_audit_log(before, BATCH).await,
            Kept::IdempotencyKeys => store.prune_idempotency_keys(before, BATCH).await,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kept::FinishedDeliveries => "finished deliveries and events",
            Kept::AuditLog => "audit entries",
            Kept::IdempotencyKeys => "idempotency keys",
        }
    }
}

pub async fn run(store: Arc<dyn Store>, settings: EngineSettings, shutdown: Shutdown) {
    tokio::join!(
        prune_periodically(store.as_ref(), &settings, shutdown.clone()),
        write_held_outcomes_periodically(store.as_ref(), shutdown),
    );
}

async fn prune_periodically(store: &dyn Store, settings: &EngineSettings, mut shutdown: Shutdown) {
    let every = Duration::from_millis(settings.prune_interval_ms.max(1_000));
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = now_millis();
        for kept in Kept::ALL {
            prune_until_done(store, kept, now - kept.retention_ms(settings), &shutdown).await;
        }
    }
}

/// Prunes `kept` batch after batch until nothing is left before `before` (or another node is
/// pruning, which also answers 0), a batch fails, or shutdown is requested.
async fn prune_until_done(store: &dyn Store, kept: Kept, before: Millis, shutdown: &Shutdown) {
    let mut pruned = 0;
    while !shutdown.is_requested() {
        match kept.prune(store, before).await {
            Ok(0) => break,
            Ok(rows) => pruned += rows,
            Err(error) => {
                tracing::warn!(%error, what = kept.name(), "pruning failed; trying again later");
                break;
            }
        }
    }
    if pruned > 0 {
        tracing::info!(rows = pruned, what = kept.name(), "pruned data past retention");
    }
}

async fn write_held_outcomes_periodically(store: &dyn Store, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tokio::time::sleep(HELD_OUTCOMES_EVERY) => {}
        }
        if let Err(error) = store.write_held_outcomes(now_millis() - HELD_OUTCOMES_AGE_MS).await {
            tracing::warn!(%error, "writing held flow outcomes failed; trying again shortly");
        }
    }
}
