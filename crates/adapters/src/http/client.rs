//! The pooled HTTP clients and what every request of the adapter shares: the attempt's
//! deadline, bounded body reading and the translation of transport errors.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::RwLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_platform_verifier::BuilderVerifierExt;
use switchyard_core::transport::DeliveryError;

use super::HttpSettings;
use crate::ssrf::{self, GuardedResolver, UrlPolicy};

/// How long a pooled connection idles before the first probe, how often unanswered probes are
/// repeated and how many, so a peer that vanished is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection is dropped: a write to a
/// peer that vanished fails then instead of waiting out the attempt's deadline.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times one attempt resends a request an HTTP/2 receiver refused before processing
/// it (a graceful GOAWAY, a REFUSED_STREAM), each time on another connection.
const H2_RESENDS: usize = 2;

/// What the adapter sends: whole bodies, cheap to clone for a resend.
pub(crate) type Body = Full<Bytes>;

/// hyper's pooled client over an HTTPS-or-HTTP connector whose names resolve through the SSRF
/// guard. Redirects are never followed (hyper's client does not), so a 3xx is the receiver's
/// answer, classified like any other status: following it would send signed payloads to a
/// place nobody configured, around the guard's checks. No proxy is consulted either: an
/// inherited `HTTP_PROXY` would silently reroute every destination.
pub(crate) type Client = hyper_util::client::legacy::Client<Connector, Body>;

type Connector = ConnectWithin<HttpsConnector<HttpConnector<GuardedResolver>>>;

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
        let connect_timeout = Duration::from_millis(connect_timeout_ms.max(1));
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL));
        tcp.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        tcp.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
        tcp.set_nodelay(true);
        let tls = rustls::ClientConfig::builder().with_platform_verifier()?.with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let connector = ConnectWithin { inner: connector, timeout: connect_timeout };
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

/// Bounds a whole connect, the name's look-up and the TLS handshake included, by the
/// destination's `connect_timeout_ms` (the TCP connector alone bounds only its own part). An
/// elapsed connect is an I/O `TimedOut`, as the TCP connector's own is.
#[derive(Clone)]
pub(crate) struct ConnectWithin<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<Uri> for ConnectWithin<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (connecting, timeout) = (self.inner.call(uri), self.timeout);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the connect timed out").into()),
            }
        })
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

/// Sends the request `build` makes and waits for the answer's head, within what is left of
/// `deadline`. A request an HTTP/2 receiver refused unprocessed is built and sent again.
pub(crate) async fn send(
    client: &Client,
    build: impl Fn() -> Request<Body>,
    target: &Target<'_>,
    deadline: &Deadline,
) -> Result<Response<Incoming>, DeliveryError> {
    let mut resends = 0;
    loop {
        match tokio::time::timeout(deadline.remaining()?, client.request(build())).await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(err)) if resends < H2_RESENDS && refused_unprocessed(&err) => resends += 1,
            Ok(Err(err)) => return Err(transport_error(&err, target)),
            Err(_) => return Err(deadline.timed_out()),
        }
    }
}

/// Whether an HTTP/2 receiver refused the request before processing it, so that sending it
/// again cannot deliver it twice: it is closing the connection gracefully (GOAWAY with
/// `NO_ERROR`), or it refused the stream (RFC 9113, section 8.7).
fn refused_unprocessed(err: &(dyn std::error::Error + 'static)) -> bool {
    causes(err).find_map(|cause| cause.downcast_ref::<h2::Error>()).is_some_and(|h2| {
        let reason = h2.reason();
        h2.is_remote()
            && ((h2.is_go_away() && reason == Some(h2::Reason::NO_ERROR))
                || (h2.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM)))
    })
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
    causes(err).any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == kind))
}

/// `err`, then its source, then that one's, and so on.
fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |cause| cause.source())
}

/// The causes of `err`, outermost first, without repeats (hyper often wraps an error in one
/// that says the same). The outermost error itself (`client error (Connect)`) says nothing
/// the caller's message does not.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in causes(err).skip(1) {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
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

/// `url` as a request's target: a fragment is the receiver's own business and never sent.
pub(crate) fn request_target(url: &url::Url) -> Option<Uri> {
    let mut url = url.clone();
    url.set_fragment(None);
    Uri::try_from(url.as_str()).ok()
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
    fn only_a_receivers_http2_refusals_are_resent() {
        // What this side decides, and errors that are not HTTP/2's, are never resent: the
        // request may have been processed.
        let local = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(!refused_unprocessed(&local));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        assert!(!refused_unprocessed(&reset));
    }

    #[test]
    fn a_spent_deadline_is_a_timeout() {
        let deadline = Deadline::after_ms(0);
        let err = deadline.remaining().unwrap_err();
        assert!(err.retryable);
        assert_eq!(err.message, "timed out after 0 ms");
    }
}
