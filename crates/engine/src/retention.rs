//! Retention: succeeded deliveries, their attempts and finished events older than
//! `retention_days` are pruned in the background, in small batches.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::store::Store;
use switchyard_core::time::now_millis;

use crate::EngineSettings;
use crate::shutdown::Shutdown;

const BATCH: u32 = 500;
const DAY_MS: i64 = 86_400_000;

pub async fn run(store: Arc<dyn Store>, settings: EngineSettings, mut shutdown: Shutdown) {
    let every = Duration::from_millis(settings.prune_interval_ms.max(1_000));
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let before = now_millis() - i64::from(settings.retention_days) * DAY_MS;
        let mut pruned = 0;
        while !shutdown.is_requested() {
            match store.prune(before, BATCH).await {
                Ok(0) => break,
                Ok(rows) => pruned += rows,
                Err(error) => {
                    tracing::warn!(%error, "pruning failed; trying again later");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(rows = pruned, "pruned data past retention");
        }
    }
}
