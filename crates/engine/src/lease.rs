//! Lease renewal: while a node lives, the leases of the deliveries its workers are running are
//! extended a third of a lease at a time, so an attempt slower than `lease_ms` (a destination's
//! timeout may be longer) is never claimed by another node meanwhile. A delivery no worker
//! runs any more (its record failed, its task panicked) is not renewed: its lease expires and
//! any node takes it again, as after a crash.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use switchyard_core::id::DeliveryId;
use switchyard_core::store::Store;
use switchyard_core::time::now_millis;
use tokio::sync::watch;

/// The deliveries this node's workers are running.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<HashSet<DeliveryId>>>);

/// Marks a delivery as running until dropped, however its worker ends.
pub struct RunningGuard {
    running: Running,
    id: DeliveryId,
}

impl Running {
    pub fn track(&self, id: DeliveryId) -> RunningGuard {
        self.ids().insert(id.clone());
        RunningGuard { running: self.clone(), id }
    }

    pub(crate) fn snapshot(&self) -> Vec<DeliveryId> {
        self.ids().iter().cloned().collect()
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<DeliveryId>> {
        // The set stays consistent whatever a panicking holder did: inserts and removes are
        // single calls.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.running.ids().remove(&self.id);
    }
}

/// Stops the renewer; dropping it stops it too.
pub struct StopRenewing {
    _stop: watch::Sender<()>,
}

/// Renews the leases of `running` every third of `lease_ms` until the returned handle is
/// dropped.
pub fn spawn_renewer(
    store: Arc<dyn Store>,
    owner: String,
    lease_ms: u64,
    running: Running,
) -> (StopRenewing, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(());
    let every = Duration::from_millis((lease_ms / 3).max(1));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let ids = running.snapshot();
            if ids.is_empty() {
                continue;
            }
            let lease_until = now_millis() + lease_ms as i64;
            if let Err(error) = store.renew_leases(&owner, &ids, lease_until).await {
                tracing::warn!(%error, "renewing leases failed; trying again shortly");
            }
        }
    });
    (StopRenewing { _stop: stop }, task)
}
