//! The pooled HTTP clients and what every request of the adapter shares: the attempt's
//! deadline, bounded body reading and the translation of transport errors.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode, redirect};
use switchyard_core::transport::DeliveryError;

use super::HttpSettings;
use crate::ssrf::{self, GuardedResolver, UrlPolicy};

/// How often an idle pooled connection is probed, so a peer that vanished is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// One client per distinct connect timeout. `reqwest` fixes the connect timeout per client, and
/// destinations name few distinct values, so a small map keeps every destination's setting
/// honoured while connections to the same host are still pooled and reused.
pub(crate) struct ClientPool {
    settings: HttpSettings,
    policy: UrlPolicy,
    clients: RwLock<HashMap<u64, Client>>,
}

impl ClientPool {
    pub(crate) fn new(settings: HttpSettings, policy: UrlPolicy) -> Self {
        Self { settings, policy, clients: RwLock::new(HashMap::new()) }
    }

    /// The client for `connect_timeout_ms`, built on first use. A `Client` is a handle to a
    /// shared pool, so the clone is cheap.
    pub(crate) fn get(&self, connect_timeout_ms: u64) -> Result<Client, DeliveryError> {
        // A poisoned lock only means another thread panicked while holding it; the map itself
        // is always consistent (one insert), so keep using it.
        let clients = self.clients.read().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&connect_timeout_ms) {
            return Ok(client.clone());
        }
        drop(clients);
        let mut clients = self.clients.write().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&connect_timeout_ms) {
            return Ok(client.clone());
        }
        let client = self.build(connect_timeout_ms).map_err(|e| {
            // Nothing about the destination is wrong; the host may be fixed (CA store) later.
            DeliveryError::retryable(format!("could not build the HTTP client: {}", error_chain(&e)))
        })?;
        clients.insert(connect_timeout_ms, client.clone());
        Ok(client)
    }

    fn build(&self, connect_timeout_ms: u64) -> reqwest::Result<Client> {
        let builder = match self.policy {
            // Every name resolves through the guard; literal addresses never reach a resolver,
            // so the adapter checks them before sending.
            UrlPolicy::PublicOnly => Client::builder().dns_resolver(GuardedResolver::default()),
            UrlPolicy::AllowPrivate => Client::builder(),
        };
        builder
            .user_agent(self.settings.user_agent.as_str())
            // A 3xx is the receiver's answer, classified like any other status; following it
            // would send signed payloads to a place nobody configured (and around SSRF checks).
            .redirect(redirect::Policy::none())
            .connect_timeout(Duration::from_millis(connect_timeout_ms.max(1)))
            .pool_idle_timeout(Duration::from_millis(self.settings.pool_idle_timeout_ms))
            .tcp_keepalive(TCP_KEEPALIVE)
            .tcp_nodelay(true)
            // Deliveries go straight to the configured host; an inherited HTTP_PROXY would
            // silently reroute every destination.
            .no_proxy()
            .build()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The end of an attempt: the destination's `timeout_ms` bounds the whole attempt, token
/// requests and a resend after a 401 included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    timeout_ms: u64,
}

impl Deadline {
    pub(crate) fn after_ms(timeout_ms: u64) -> Self {
        Self { at: Instant::now() + Duration::from_millis(timeout_ms), timeout_ms }
    }

    /// What is left, or the attempt's timeout error when nothing is.
    pub(crate) fn remaining(&self) -> Result<Duration, DeliveryError> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() { Err(self.timed_out()) } else { Ok(left) }
    }

    pub(crate) fn timed_out(&self) -> DeliveryError {
        DeliveryError::retryable(format!("timed out after {} ms", self.timeout_ms))
    }
}

/// Translates a failed request into a delivery error. Messages name the host, never the URL
/// (its query may carry credentials) and never a header.
pub(crate) fn transport_error(
    err: reqwest::Error,
    host: &str,
    deadline: &Deadline,
    connect_timeout_ms: u64,
) -> DeliveryError {
    let err = err.without_url();
    if let Some(forbidden) = ssrf::refusal(&err) {
        // Retrying reaches the same address; only a DNS change or the setting can help.
        return DeliveryError::permanent(format!("refused to connect to {host}: {forbidden}"));
    }
    if err.is_connect() {
        if err.is_timeout() {
            return DeliveryError::retryable(format!(
                "could not connect to {host}: no connection within {connect_timeout_ms} ms"
            ));
        }
        return DeliveryError::retryable(format!("could not connect to {host}: {}", error_chain(&err)));
    }
    if err.is_timeout() {
        return deadline.timed_out();
    }
    if err.is_builder() {
        return DeliveryError::permanent(format!("invalid request: {}", error_chain(&err)));
    }
    DeliveryError::retryable(format!("request to {host} failed: {}", error_chain(&err)))
}

/// The causes of `err`, outermost first, without repeats (hyper and reqwest often wrap an
/// error in one that says the same).
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        parts.push(err.to_string());
    }
    parts.join(": ")
}

/// Reads at most `cap` bytes of the body and stops there, so a huge answer costs no more than
/// its start. A body that fails midway yields what arrived: the status already decided the
/// outcome.
pub(crate) async fn read_capped(mut response: Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(cap - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// Lossy UTF-8 of a capped body, without the partial character a cut may leave at the end
/// (which would turn into a replacement character and push the text past the cap).
pub(crate) fn body_text(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let end = match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        _ => bytes.len(),
    };
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// `HTTP 503 Service Unavailable`.
pub(crate) fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// Refuses a URL whose host is a forbidden literal address or `localhost` name: those never
/// reach the guarded resolver. Permanent, as retrying would reach the same address.
pub(crate) fn check_host(policy: UrlPolicy, url: &reqwest::Url) -> Result<(), DeliveryError> {
    policy.check_url(url).map_err(|forbidden| {
        DeliveryError::permanent(format!("refused to connect to {}: {forbidden}", host_label(url)))
    })
}

/// `host` or `host:port`, the one part of a URL error messages show.
pub(crate) fn host_label(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_distinct_connect_timeout() {
        crate::install_crypto_provider();
        let pool = ClientPool::new(HttpSettings::default(), UrlPolicy::default());
        pool.get(1_000).unwrap();
        pool.get(1_000).unwrap();
        assert_eq!(pool.len(), 1);
        pool.get(2_500).unwrap();
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn a_cut_character_is_dropped_not_replaced() {
        let text = "ab€".as_bytes();
        assert_eq!(body_text(&text[..3]).as_deref(), Some("ab"));
        assert_eq!(body_text(text).as_deref(), Some("ab€"));
        assert_eq!(body_text(b"a\xffb").as_deref(), Some("a\u{fffd}b"));
        assert_eq!(body_text(b""), None);
    }

    #[test]
    fn a_spent_deadline_is_a_timeout() {
        let deadline = Deadline::after_ms(0);
        let err = deadline.remaining().unwrap_err();
        assert!(err.retryable);
        assert_eq!(err.message, "timed out after 0 ms");
    }
}
