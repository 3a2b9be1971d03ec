//! Lease renewal: while a node lives, the leases of its in-flight deliveries are extended a
//! third of a lease at a time, so an attempt slower than `lease_ms` (a destination's timeout
//! may be longer) is never claimed by another node meanwhile. Only a dead node's leases expire.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::store::Store;
use switchyard_core::time::now_millis;
use tokio::sync::watch;

/// Stops the renewer; dropping it stops it too.
pub struct StopRenewing {
    _stop: watch::Sender<()>,
}

/// Renews `owner`'s leases every third of `lease_ms` until the returned handle is dropped.
pub fn spawn_renewer(
    store: Arc<dyn Store>,
    owner: String,
    lease_ms: u64,
) -> (StopRenewing, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(());
    let every = Duration::from_millis((lease_ms / 3).max(1));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let lease_until = now_millis() + lease_ms as i64;
            if let Err(error) = store.renew_leases(&owner, lease_until).await {
                tracing::warn!(%error, "renewing leases failed; trying again shortly");
            }
        }
    });
    (StopRenewing { _stop: stop }, task)
}
