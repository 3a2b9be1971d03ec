//! The HTTP server: an accept loop over hyper's HTTP/1 connections, so that slow and idle
//! clients cannot exhaust the node.
//!
//! - At most `server.max_connections` connections are held; past it the loop stops accepting
//!   and new connections wait in the kernel's listen backlog (a warning says so, at most once
//!   a minute).
//! - Each connection runs on its own task ([`connection`]) under the deadlines of
//!   [`activity`]: `server.header_read_timeout_ms` for a request head (and a TLS handshake),
//!   `server.idle_timeout_ms` between requests and for an answer its client does not read.
//!   Body pauses and slow handlers are timed by the API itself (`switchyard_api::deadline`).
//! - `accept` failures such as running out of file descriptors back off (10 ms, doubling up to
//!   1 s) instead of spinning.
//! - On shutdown the listener closes, idle connections close, and requests in flight finish.
//!
//! hyper answers by itself, with a bare status and no envelope, only what it cannot parse into a
//! request: a malformed request line or header (a control byte in a value, say; 400), a head
//! over its buffer (about 400 KiB; 431), a URL over 64 KiB (414) or more than
//! [`HYPER_MAX_HEADERS`] headers (431). The API's own limits, answered in the envelope, are lower.

mod activity;
mod connection;
mod descriptors;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use switchyard_engine::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

pub(crate) use activity::ConnectionLimits;
pub(crate) use descriptors::descriptors_beside_connections;
pub use descriptors::raise_open_files_limit;

/// hyper refuses more headers than this (bare 431); above the API's own
/// `switchyard_api::admission::MAX_HEADER_COUNT`, so a few too many get the envelope.
pub const HYPER_MAX_HEADERS: usize = 2 * switchyard_api::admission::MAX_HEADER_COUNT;
/// The longest pause between two failed `accept` calls.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// The shortest interval between two warnings that the connection cap is reached.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// How the listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerSettings {
    pub(crate) limits: ConnectionLimits,
    pub(crate) max_connections: u32,
}

/// Accepts and serves connections until `stopping`, then waits for them to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    settings: ServerSettings,
    mut stopping: Shutdown,
) {
    let mut http = http1::Builder::new();
    // Deadlines are the watchdog's (see `activity`), so hyper needs no timer of its own.
    http.header_read_timeout(None).max_headers(HYPER_MAX_HEADERS);
    let served = Arc::new(connection::Served {
        // Turns every route into its service once, not per request.
        router: router.with_state(()),
        http,
        limits: settings.limits,
        tls: tls.map(TlsAcceptor::from),
    });
    let slots = Arc::new(Semaphore::new(settings.max_connections as usize));
    let mut cap = CapWarning::default();
    let mut backoff = AcceptBackoff::default();
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                cap.reached(settings.max_connections);
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = stopping.requested() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(err) => {
                    if let Some(pause) = backoff.failed(&err) {
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stopping.requested() => break,
                        }
                    }
                    continue;
                }
            },
            () = stopping.requested() => break,
        };
        let served = Arc::clone(&served);
        let stopping = stopping.clone();
        tokio::spawn(async move {
            connection::run(stream, peer, &served, stopping).await;
            drop(slot);
        });
    }
    // New connections are refused from here on; those open finish their request and close.
    drop(listener);
    let _every_connection_closed = slots.acquire_many(settings.max_connections).await;
}

/// Warns when the connection cap is reached: once per episode, at most once a minute.
#[derive(Debug, Default)]
struct CapWarning {
    last: Option<Instant>,
    unreported: u64,
}

impl CapWarning {
    fn reached(&mut self, max_connections: u32) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < CAP_WARNING_EVERY) {
            self.unreported += 1;
            return;
        }
        warn!(
            max_connections,
            times_since_last_warning = self.unreported,
            "server.max_connections reached: new connections wait in the listen backlog until one closes"
        );
        self.last = Some(now);
        self.unreported = 0;
    }
}

/// How long to pause after `accept` failed, doubling while it keeps failing.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u64,
    pause: Duration,
}

impl AcceptBackoff {
    /// `None` for an error about one connection (its client gave up), which says nothing of the
    /// listener; otherwise the pause before the next try.
    fn failed(&mut self, err: &io::Error) -> Option<Duration> {
        if is_connection_error(err) {
            return None;
        }
        if self.failures == 0 {
            warn!(error = %err, "accepting connections failed; backing off until it works again");
        }
        self.failures += 1;
        self.pause = (self.pause * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
        Some(self.pause)
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            info!(failures = self.failures, "accepting connections again");
            *self = Self::default();
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_doubling_to_a_second_and_reset_on_success() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<u128> =
            (0..9).filter_map(|_| backoff.failed(&emfile)).map(|p| p.as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(backoff.failed(&io::Error::from(io::ErrorKind::ConnectionAborted)), None);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), Some(Duration::from_millis(10)));
    }
}
