//! The pooled HTTP clients and what every request of the adapter shares: the attempt's
//! deadline, bounded body reading and the translation of transport errors.

use std::collections::HashMap;
use std::io;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_platform_verifier::BuilderVerifierExt;
use switchyard_core::transport::DeliveryError;

use super::HttpSettings;
use crate::ssrf::{self, GuardedResolver, UrlPolicy};

/// How often an idle pooled connection is probed, so a peer that vanished is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// What the adapter sends: whole bodies, cheap to clone for a resend.
pub(crate) type Body = Full<Bytes>;

/// hyper's pooled client over an HTTPS-or-HTTP connector whose names resolve through the SSRF
/// guard. Redirects are never followed (hyper's client does not), so a 3xx is the receiver's
/// answer, classified like any other status: following it would send signed payloads to a
/// place nobody configured, around the guard's checks. No proxy is consulted either: an
/// inherited `HTTP_PROXY` would silently reroute every destination.
pub(crate) type Client =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector<GuardedResolver>>, Body>;

/// One client per distinct connect timeout. The connector fixes the connect timeout per client,
/// and destinations name few distinct values, so a small map keeps every destination's setting
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

    fn build(&self, connect_timeout_ms: u64) -> Result<Client, rustls::Error> {
        // Literal addresses never reach a resolver, so the adapter checks them before sending;
        // every name resolves through the guard.
        let mut tcp = HttpConnector::new_with_resolver(GuardedResolver::new(self.policy));
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_millis(connect_timeout_ms.max(1))));
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        tcp.set_nodelay(true);
        let tls = rustls::ClientConfig::builder().with_platform_verifier()?.with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_millis(self.settings.pool_idle_timeout_ms))
            .pool_timer(TokioTimer::new())
            .build(connector))
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

/// Where a request goes, for what its errors may say.
pub(crate) struct Target<'a> {
    /// `host[:port]`: messages name the host, never the URL (its query may carry credentials)
    /// and never a header.
    pub(crate) host: &'a str,
    pub(crate) connect_timeout_ms: u64,
}

/// Sends `request` and waits for the answer's head, within what is left of `deadline`.
pub(crate) async fn send(
    client: &Client,
    request: Request<Body>,
    target: &Target<'_>,
    deadline: &Deadline,
) -> Result<Response<Incoming>, DeliveryError> {
    match tokio::time::timeout(deadline.remaining()?, client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(err)) => Err(transport_error(&err, target)),
        Err(_) => Err(deadline.timed_out()),
    }
}

/// Translates a failed request into a delivery error.
fn transport_error(err: &hyper_util::client::legacy::Error, target: &Target<'_>) -> DeliveryError {
    let host = target.host;
    if let Some(forbidden) = ssrf::refusal(err) {
        // Retrying reaches the same address; only a DNS change or the setting can help.
        return DeliveryError::permanent(format!("refused to connect to {host}: {forbidden}"));
    }
    if err.is_connect() {
        if caused_by(err, io::ErrorKind::TimedOut) {
            return DeliveryError::retryable(format!(
                "could not connect to {host}: no connection within {} ms",
                target.connect_timeout_ms
            ));
        }
        return DeliveryError::retryable(format!("could not connect to {host}: {}", error_chain(err)));
    }
    DeliveryError::retryable(format!("request to {host} failed: {}", error_chain(err)))
}

/// Whether an I/O error of `kind` is somewhere in `err`'s chain of causes.
fn caused_by(err: &(dyn std::error::Error + 'static), kind: io::ErrorKind) -> bool {
    let mut current = Some(err);
    while let Some(cause) = current {
        if cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == kind) {
            return true;
        }
        current = cause.source();
    }
    false
}

/// The causes of `err`, outermost first, without repeats (hyper often wraps an error in one
/// that says the same). The outermost error itself (`client error (Connect)`) says nothing
/// the caller's message does not.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
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
/// its start. A body that fails midway, or outlasts the deadline, yields what arrived: the
/// status already decided the outcome.
pub(crate) async fn read_capped(response: Response<Incoming>, cap: usize, deadline: &Deadline) -> Vec<u8> {
    let mut body = Vec::new();
    let Ok(left) = deadline.remaining() else {
        return body;
    };
    let mut incoming = response.into_body();
    let read = async {
        while body.len() < cap {
            match incoming.frame().await {
                Some(Ok(frame)) => {
                    if let Some(chunk) = frame.data_ref() {
                        let take = chunk.len().min(cap - body.len());
                        body.extend_from_slice(&chunk[..take]);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(left, read).await;
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
pub(crate) fn check_host(policy: UrlPolicy, url: &url::Url) -> Result<(), DeliveryError> {
    policy.check_url(url).map_err(|forbidden| {
        DeliveryError::permanent(format!("refused to connect to {}: {forbidden}", host_label(url)))
    })
}

/// `host` or `host:port`, the one part of a URL error messages show.
pub(crate) fn host_label(url: &url::Url) -> String {
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
