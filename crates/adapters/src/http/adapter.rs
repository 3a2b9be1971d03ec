//! The `http` adapter: one attempt of a delivery as one signed HTTP request (two when an
//! OAuth2 token was rejected and is refreshed), and its answer as a receipt or a classified
//! error.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use http::{Request as HttpRequest, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::destination::Destination;
use switchyard_core::retry::{OutcomeClass, classify_status};
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport, ValidatedConfig};
use url::Url;

use super::auth::{self, TokenCache, TokenRequest};
use super::client::{
    self, Body, Client, ClientPool, Deadline, Target, body_text, check_host, read_capped, status_line,
};
use super::config::{self, Auth};
use super::prepared::{Prepared, PreparedCache};
use super::signing::SigningKeys;
use crate::identity::identity;
use crate::ssrf::UrlPolicy;

/// The attempt log keeps this much of an answer (SPEC §2, Attempt).
pub const MAX_RESPONSE_BODY: usize = 4 * 1024;

/// Process-wide settings of the `http` adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Sent as `User-Agent` unless a destination's static headers name another.
    pub user_agent: String,
    /// How long an unused pooled connection is kept open.
    pub pool_idle_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { user_agent: format!("Switchyard/{}", env!("CARGO_PKG_VERSION")), pool_idle_timeout_ms: 90_000 }
    }
}

/// Delivers to `http` destinations: webhooks signed per Standard Webhooks, and HTTP APIs
/// behind bearer, basic or OAuth2 client-credentials auth.
pub struct HttpAdapter {
    clients: ClientPool,
    /// Sent as `User-Agent` unless the destination's headers name another.
    user_agent: HeaderValue,
    tokens: TokenCache,
    prepared: PreparedCache,
    policy: UrlPolicy,
}

impl HttpAdapter {
    /// `policy` says which addresses requests may reach (the SSRF guard, checked at connect
    /// time). Also installs the ring crypto provider for rustls, unless one is installed already.
    pub fn new(settings: HttpSettings, policy: UrlPolicy) -> Self {
        crate::install_crypto_provider();
        let user_agent = HeaderValue::from_str(&settings.user_agent)
            .unwrap_or_else(|_| HeaderValue::from_static("Switchyard"));
        Self {
            user_agent,
            clients: ClientPool::new(settings, policy),
            tokens: TokenCache::default(),
            prepared: PreparedCache::default(),
            policy,
        }
    }
}

impl Default for HttpAdapter {
    fn default() -> Self {
        Self::new(HttpSettings::default(), UrlPolicy::default())
    }
}

#[async_trait]
impl Transport for HttpAdapter {
    async fn validate(&self, raw: Value) -> Result<ValidatedConfig, ValidationError> {
        config::validate_resolved(raw, self.policy).await
    }

    fn new_signing_secret(&self) -> Option<String> {
        Some(config::generate_signing_secret())
    }

    async fn deliver(&self, message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError> {
        let destination = message.destination;
        let deadline = Deadline::after_ms(destination.timeout_ms);
        let prepared = self.prepared.get(destination, self.policy)?;
        let body = serde_json::to_vec(message.body)
            .map(Bytes::from)
            .map_err(|e| DeliveryError::permanent(format!("the body is not JSON: {e}")))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let keys = prepared.signing_keys(i64::try_from(now.as_millis()).unwrap_or(i64::MAX));
        let timestamp = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let mut headers = request_headers(&prepared.headers, message, timestamp, keys, &body);
        headers.entry(USER_AGENT).or_insert_with(|| self.user_agent.clone());
        let request = Request {
            client: self.clients.get(destination.connect_timeout_ms)?,
            target: &prepared,
            headers,
            body,
            deadline,
            connect_timeout_ms: destination.connect_timeout_ms,
        };
        let config = &prepared.config;
        let response = match &config.auth {
            Auth::None => request.send(None).await?,
            Auth::Bearer { token } => request.send(Some(auth::bearer(token)?)).await?,
            Auth::Basic { username, password } => {
                request.send(Some(auth::basic(username, password)?)).await?
            }
            Auth::Oauth2ClientCredentials { token_url, client_id, client_secret, scope } => {
                if let Ok(token_url) = Url::parse(token_url) {
                    check_host(self.policy, &token_url)?;
                }
                let grant = TokenRequest {
                    destination: &destination.id,
                    token_url,
                    client_id,
                    client_secret,
                    scope: scope.as_deref(),
                    connect_timeout_ms: destination.connect_timeout_ms,
                    user_agent: &self.user_agent,
                };
                self.send_with_token(&request, &grant).await?
            }
        };
        outcome(response, destination, &deadline).await
    }
}

impl HttpAdapter {
    /// Sends with the cached token; on a 401 the token is dropped, a new one fetched and the
    /// request sent once more within the same attempt (the receiver may have revoked it early).
    async fn send_with_token(
        &self,
        request: &Request<'_>,
        grant: &TokenRequest<'_>,
    ) -> Result<Response<Incoming>, DeliveryError> {
        let token = self.tokens.token(&request.client, grant, &request.deadline).await?;
        let response = request.send(Some(auth::bearer(&token)?)).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        drop(response);
        self.tokens.invalidate(grant, &token).await;
        let fresh = self.tokens.token(&request.client, grant, &request.deadline).await?;
        request.send(Some(auth::bearer(&fresh)?)).await
    }
}

/// Everything of one request but its credentials, so it can be sent twice.
struct Request<'a> {
    client: Client,
    /// The method, URL and host.
    target: &'a Prepared,
    headers: HeaderMap,
    body: Bytes,
    deadline: Deadline,
    connect_timeout_ms: u64,
}

impl Request<'_> {
    async fn send(&self, authorization: Option<HeaderValue>) -> Result<Response<Incoming>, DeliveryError> {
        let build = || {
            let mut request = HttpRequest::new(Body::new(self.body.clone()));
            *request.method_mut() = self.target.method.clone();
            *request.uri_mut() = self.target.uri.clone();
            let headers = request.headers_mut();
            *headers = self.headers.clone();
            if let Some(value) = &authorization {
                headers.insert(AUTHORIZATION, value.clone());
            }
            request
        };
        let target = Target { host: &self.target.host, connect_timeout_ms: self.connect_timeout_ms };
        client::send(&self.client, build, &target, &self.deadline).await
    }
}

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// The destination's configured headers, then the hub's own (which validation keeps out of the
/// configured ones, so nothing is overwritten).
fn request_headers(
    configured: &HeaderMap,
    message: &OutboundMessage<'_>,
    timestamp: i64,
    keys: &SigningKeys,
    body: &[u8],
) -> HeaderMap {
    let mut headers = configured.clone();
    let id = message.delivery_id.as_str();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.entry(ACCEPT).or_insert(HeaderValue::from_static("*/*"));
    insert_text(&mut headers, WEBHOOK_ID, id);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    if let Some(signature) = keys.header_value(id, timestamp, body) {
        insert_text(&mut headers, WEBHOOK_SIGNATURE, &signature);
    }
    for (name, value) in identity(message) {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            insert_text(&mut headers, name, &value);
        }
    }
    headers
}

/// Sets a header whose value came from input; a value no header can carry is left out rather
/// than failing the delivery (ids and types are validated to safe alphabets already).
fn insert_text(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A 2xx is a receipt; anything else an error classified by the destination's retry policy.
async fn outcome(
    response: Response<Incoming>,
    destination: &Destination,
    deadline: &Deadline,
) -> Result<Receipt, DeliveryError> {
    let status = response.status();
    let retry_after_ms = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let body = body_text(&read_capped(response, MAX_RESPONSE_BODY, deadline).await);
    let code = status.as_u16();
    match classify_status(code, &destination.retry) {
        OutcomeClass::Success => Ok(Receipt { status_code: Some(code), response_body: body }),
        class => Err(DeliveryError {
            retryable: class == OutcomeClass::Retryable,
            retry_after_ms,
            status_code: Some(code),
            message: status_line(status),
            response_body: body,
        }),
    }
}

/// `Retry-After` as milliseconds from `now`: delta-seconds or an HTTP-date (IMF-fixdate, which
/// RFC 2822 parsing accepts). A date in the past means "now".
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(value.parse::<u64>().unwrap_or(u64::MAX).saturating_mul(1_000));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.signed_duration_since(now).num_milliseconds();
    Some(u64::try_from(delta).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).single().unwrap();
        assert_eq!(parse_retry_after("120", now), Some(120_000));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(120_000));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(u64::MAX));
    }

    #[test]
    fn the_default_user_agent_names_the_version() {
        let settings = HttpSettings::default();
        assert_eq!(settings.user_agent, format!("Switchyard/{}", env!("CARGO_PKG_VERSION")));
    }
}
