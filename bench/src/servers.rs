//! The two servers of the harness, each on a runtime and thread of its own so that neither
//! competes with the load generator's workers for the same scheduler: the bare server (the
//! ceiling: the same framework as Switchyard, answering 204 to everything) and the counting
//! sink that the deliveries go to.

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

/// A server running on its own thread until dropped.
pub struct Background {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(name: &str, threads: usize, router: Router) -> anyhow::Result<Background> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
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

/// The ceiling: answers 204 to any request, reading the body first as Switchyard does.
pub fn start_bare(threads: usize) -> anyhow::Result<Background> {
    async fn no_content(_body: axum::body::Bytes) -> StatusCode {
        StatusCode::NO_CONTENT
    }
    Background::start("bare-server", threads, Router::new().fallback(any(no_content)))
}

/// Counts the deliveries that reach it, by `webhook-id` (a retry of a delivery counts once).
#[derive(Default)]
pub struct Counts {
    /// 64-bit hashes of the delivery ids: 16 bytes a delivery, where a million ids as strings
    /// would cost the harness tens of MiB.
    unique: Mutex<HashSet<u64>>,
    requests: std::sync::atomic::AtomicU64,
}

impl Counts {
    pub fn unique(&self) -> u64 {
        self.unique.lock().expect("not poisoned").len() as u64
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
        _body: axum::body::Bytes,
    ) -> StatusCode {
        counts.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(id) = headers.get("webhook-id") {
            let mut hasher = DefaultHasher::new();
            id.as_bytes().hash(&mut hasher);
            counts.unique.lock().expect("not poisoned").insert(hasher.finish());
        }
        StatusCode::NO_CONTENT
    }
    let counts = Arc::new(Counts::default());
    let router = Router::new().fallback(any(receive)).with_state(Arc::clone(&counts));
    Ok(Sink { server: Background::start("sink", threads, router)?, counts })
}
