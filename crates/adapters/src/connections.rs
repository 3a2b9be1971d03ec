//! One connection per destination, for the transports that keep one open (brokers): opened by
//! the first delivery that needs it, shared by the rest, replaced when the destination changes
//! (its version), dropped after an error so the next delivery opens a new one, closed after
//! [`IDLE_FOR`] unused (the destination may be gone) and when the node stops.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::destination::Destination;
use switchyard_core::error::Violations;
use switchyard_core::id::DestinationId;
use switchyard_core::transport::DeliveryError;
use url::Url;

use crate::ssrf::UrlPolicy;

/// A connection no delivery used for this long is closed.
pub const IDLE_FOR: Duration = Duration::from_secs(600);
/// How long a write or a connect waits for DNS to say where a broker's host name points.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The SSRF guard's write-time look-up of a validated broker config's `url`: under
/// [`UrlPolicy::PublicOnly`] a name that now resolves to a forbidden address is refused.
pub async fn check_written_url(policy: UrlPolicy, config: &Value) -> Result<(), ValidationError> {
    let url = config.get("url").and_then(Value::as_str).and_then(|raw| Url::parse(raw).ok());
    let Some(url) = url.filter(|_| policy == UrlPolicy::PublicOnly) else { return Ok(()) };
    let mut violations = Violations::default();
    if let Err(forbidden) = policy.check_resolved(&url, LOOKUP_TIMEOUT).await {
        violations.push("config.url", forbidden.to_string());
    }
    violations.into_result()
}

/// The guard before connecting to a broker at `url`; answers `host:port` for messages (never
/// the whole URL). A refusal is permanent: retrying would reach the same address.
pub async fn check_broker_url(
    policy: UrlPolicy,
    url: &Url,
    default_port: u16,
) -> Result<String, DeliveryError> {
    let host = format!("{}:{}", url.host_str().unwrap_or_default(), url.port().unwrap_or(default_port));
    policy.check_resolved(url, LOOKUP_TIMEOUT).await.map_err(|forbidden| {
        DeliveryError::permanent(format!("refused to connect to {host}: {forbidden}"))
    })?;
    Ok(host)
}

/// What a transport keeps open for a destination; cheap to clone (a handle).
#[async_trait]
pub trait Connection: Clone + Send + Sync + 'static {
    /// Closes the connection, letting what it still sends finish.
    async fn close(self);
}

/// The open connections of one transport, by destination.
pub struct Connections<C> {
    slots: Mutex<HashMap<DestinationId, Arc<Slot<C>>>>,
}

struct Slot<C> {
    /// The connection and the destination version it was opened for.
    open: tokio::sync::Mutex<Option<(i64, C)>>,
    last_used: Mutex<Instant>,
}

impl<C> Default for Connections<C> {
    fn default() -> Self {
        Self { slots: Mutex::default() }
    }
}

impl<C: Connection> Connections<C> {
    /// The connection of `destination`, opened with `open` when it has none, or one for an
    /// earlier version of it. Deliveries to the same destination wait for one opening.
    pub async fn get_or_open<F, Fut>(&self, destination: &Destination, open: F) -> Result<C, DeliveryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C, DeliveryError>>,
    {
        let slot = self.slot(&destination.id);
        let mut current = slot.open.lock().await;
        if let Some((_, connection)) = current.as_ref().filter(|(version, _)| *version == destination.version)
        {
            return Ok(connection.clone());
        }
        if let Some((_, stale)) = current.take() {
            tokio::spawn(stale.close());
        }
        let connection = open().await?;
        *current = Some((destination.version, connection.clone()));
        Ok(connection)
    }

    /// Drops the connection of `destination` after it failed; the next delivery opens another.
    pub async fn forget(&self, destination: &DestinationId) {
        let slot = self.slots.lock().unwrap_or_else(PoisonError::into_inner).get(destination).cloned();
        if let Some(slot) = slot
            && let Some((_, connection)) = slot.open.lock().await.take()
        {
            tokio::spawn(connection.close());
        }
    }

    /// Closes every connection (the node is stopping).
    pub async fn close_all(&self) {
        let slots: Vec<Arc<Slot<C>>> =
            self.slots.lock().unwrap_or_else(PoisonError::into_inner).drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            if let Some((_, connection)) = slot.open.lock().await.take() {
                connection.close().await;
            }
        }
    }

    /// The slot of `destination`; closes the connections idle past [`IDLE_FOR`] on the way.
    fn slot(&self, destination: &DestinationId) -> Arc<Slot<C>> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|id, slot| {
            let idle = now.duration_since(*slot.last_used.lock().unwrap_or_else(PoisonError::into_inner));
            let keep = id == destination || idle < IDLE_FOR || Arc::strong_count(slot) > 1;
            if !keep
                && let Ok(mut open) = slot.open.try_lock()
                && let Some((_, connection)) = open.take()
            {
                tokio::spawn(connection.close());
            }
            keep
        });
        let slot = slots.entry(destination.clone()).or_insert_with(|| {
            Arc::new(Slot { open: tokio::sync::Mutex::new(None), last_used: Mutex::new(now) })
        });
        *slot.last_used.lock().unwrap_or_else(PoisonError::into_inner) = now;
        Arc::clone(slot)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;
    use switchyard_core::destination::DestinationKind;

    use super::*;

    /// A connection that counts how often connections were closed.
    #[derive(Clone)]
    struct Counted {
        number: usize,
        closed: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl Connection for Counted {
        async fn close(self) {
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn destination(version: i64) -> Destination {
        crate::testing::destination(DestinationKind::Nats, json!({}), version)
    }

    async fn settle() {
        // Closing happens on a spawned task.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn one_connection_per_destination_version_until_forgotten_or_closed() {
        let (connections, closed, opened) =
            (Connections::default(), Arc::new(AtomicUsize::new(0)), AtomicUsize::new(0));
        let open = || async {
            Ok(Counted { number: opened.fetch_add(1, Ordering::SeqCst), closed: Arc::clone(&closed) })
        };
        let first = connections.get_or_open(&destination(1), open).await.unwrap();
        let again = connections.get_or_open(&destination(1), open).await.unwrap();
        assert_eq!((first.number, again.number), (0, 0), "reused");

        let changed = connections.get_or_open(&destination(2), open).await.unwrap();
        settle().await;
        assert_eq!((changed.number, closed.load(Ordering::SeqCst)), (1, 1), "a new version replaces the old");

        connections.forget(&destination(2).id).await;
        settle().await;
        assert_eq!(closed.load(Ordering::SeqCst), 2, "forgotten is closed");
        let reopened = connections.get_or_open(&destination(2), open).await.unwrap();
        assert_eq!(reopened.number, 2, "and opened anew by the next delivery");

        let failed = connections
            .get_or_open(&destination(3), || async { Err(DeliveryError::retryable("down")) })
            .await;
        assert!(failed.is_err());
        settle().await;
        assert_eq!(closed.load(Ordering::SeqCst), 3, "the version-2 connection was replaced");
        connections.get_or_open(&destination(3), open).await.unwrap();
        connections.close_all().await;
        assert_eq!(closed.load(Ordering::SeqCst), 4, "closing all closes the last one");
    }
}
