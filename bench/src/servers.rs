//! The two servers of the harness, each on a runtime and thread of its own so that neither
//! competes with the load generator's workers for the same scheduler: the bare server (the
//! ceiling: the same framework as Switchyard, answering 204 to everything) and the counting
//! sink that the deliveries go to. Every thread of a server bears its name, so that its CPU
//! time can be told apart from the rest of the process's ([`crate::cpu::of_threads_named`]).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use tokio::sync::oneshot;

use crate::latency::{self, Latencies};

/// A server running on its own thread until dropped.
pub struct Background {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    pub(crate) fn start(name: &str, threads: usize, router: Router) -> anyhow::Result<Background> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                // Stopping drops the runtime and with it every open connection: kept-alive
                // clients cannot hold the server open the way a graceful shutdown would let them.
                tokio::select! {
                    _ = axum::serve(listener, router) => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Background { addr, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The name of the bare server's threads.
pub const BARE_SERVER: &str = "bare-server";

/// The ceiling: answers 204 to any request, reading the body first as Switchyard does.
pub fn start_bare(threads: usize) -> anyhow::Result<Background> {
    async fn no_content(_body: axum::body::Bytes) -> StatusCode {
        StatusCode::NO_CONTENT
    }
    Background::start(BARE_SERVER, threads, Router::new().fallback(any(no_content)))
}

/// Counts the deliveries that reach it, by `webhook-id` (a retry of a delivery counts once).
#[derive(Default)]
pub struct Counts {
    received: Mutex<Received>,
    requests: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Received {
    /// 64-bit hashes of the delivery ids: 16 bytes a delivery, where a million ids as strings
    /// would cost the harness tens of MiB.
    ids: HashSet<u64>,
    /// Microseconds from each stamped event's send to its delivery's first arrival.
    latencies: Vec<u32>,
}

impl Counts {
    pub fn unique(&self) -> u64 {
        self.received.lock().expect("not poisoned").ids.len() as u64
    }

    /// From the send of each event to the first arrival of each of its deliveries, for the
    /// events that carried a send stamp ([`latency::SENT_AT_KEY`]).
    pub fn latencies(&self) -> Latencies {
        Latencies::from_micros(self.received.lock().expect("not poisoned").latencies.clone())
    }

    /// Counts one arrival of delivery `id` at `arrived_us` ([`latency::now_us`]).
    pub fn record(&self, id: &[u8], arrived_us: u64, body: &[u8]) {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        let mut received = self.received.lock().expect("not poisoned");
        if received.ids.insert(hasher.finish())
            && let Some(sent_us) = latency::sent_at_us(body)
        {
            let micros = arrived_us.saturating_sub(sent_us);
            received.latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `expected` distinct deliveries arrived; answers when the last one did, or
    /// `None` when `timeout` passed first.
    pub async fn wait_for(
        &self,
        expected: u64,
        timeout: Duration,
        mut tick: impl FnMut(u64),
    ) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let unique = self.unique();
            tick(unique);
            if unique >= expected {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct Sink {
    pub server: Background,
    pub counts: Arc<Counts>,
}

/// The counting sink: answers 204 to every delivery.
pub fn start_sink(threads: usize) -> anyhow::Result<Sink> {
    async fn receive(
        State(counts): State<Arc<Counts>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let arrived_us = latency::now_us();
        counts.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(id) = headers.get("webhook-id") {
            counts.record(id.as_bytes(), arrived_us, &body);
        }
        StatusCode::NO_CONTENT
    }
    let counts = Arc::new(Counts::default());
    let router = Router::new().fallback(any(receive)).with_state(Arc::clone(&counts));
    Ok(Sink { server: Background::start("sink", threads, router)?, counts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_times_the_first_arrival_of_each_stamped_delivery() {
        let counts = Counts::default();
        counts.record(b"d-1", 5_000, br#"{"n":1,"sent_at_us":1000}"#);
        // A retry of the same delivery arrives later: counted once, timed once.
        counts.record(b"d-1", 9_000, br#"{"n":1,"sent_at_us":1000}"#);
        counts.record(b"d-2", 7_500, br#"{"n":2,"sent_at_us":5000}"#);
        counts.record(b"d-3", 8_000, br#"{"n":3}"#);

        assert_eq!(counts.unique(), 3);
        let latencies = counts.latencies();
        assert_eq!(latencies.len(), 2, "the unstamped delivery is counted but not timed");
        assert_eq!((latencies.ms(0.0), latencies.max_ms()), (2.5, 4.0));
    }
}
