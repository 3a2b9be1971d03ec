//! Credentials of outgoing requests: static `Authorization` headers for bearer and basic auth,
//! and a cache of OAuth2 client-credentials tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request};
use serde::Deserialize;
use serde_json::Value;
use switchyard_core::id::DestinationId;
use switchyard_core::transport::DeliveryError;

use url::Url;

use super::client::{
    self, Body, Client, Deadline, Target, body_text, host_label, read_capped, request_target, status_line,
};

/// A token is used until this long before the provider says it expires, so one fetched just
/// in time does not expire on its way to the destination.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How long a token lives when the provider does not say (`expires_in` is optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3_600);
/// Token answers are small JSON documents; JWTs of a few KiB fit comfortably.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// How much of a failed token answer an error message quotes.
const ERROR_BODY_CHARS: usize = 200;
/// Past this many cached entries, expired ones are dropped (destinations come and go).
const PRUNE_ABOVE: usize = 256;

/// `Authorization: Bearer <token>`, marked sensitive so it never shows in debug output.
pub(crate) fn bearer(token: &str) -> Result<HeaderValue, DeliveryError> {
    sensitive(format!("Bearer {token}"))
}

/// `Authorization: Basic <base64(username:password)>`.
pub(crate) fn basic(username: &str, password: &str) -> Result<HeaderValue, DeliveryError> {
    sensitive(format!("Basic {}", STANDARD.encode(format!("{username}:{password}"))))
}

fn sensitive(value: String) -> Result<HeaderValue, DeliveryError> {
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| DeliveryError::permanent("the destination's credentials are not valid in a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// One client-credentials grant of a destination.
pub(crate) struct TokenRequest<'a> {
    pub destination: &'a DestinationId,
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub scope: Option<&'a str>,
    pub connect_timeout_ms: u64,
    /// The adapter's `User-Agent`.
    pub user_agent: &'a HeaderValue,
}

impl TokenRequest<'_> {
    fn key(&self) -> TokenKey {
        TokenKey {
            destination: self.destination.clone(),
            token_url: self.token_url.to_owned(),
            client_id: self.client_id.to_owned(),
        }
    }
}

/// Tokens are cached per destination and grant: two destinations never share a token even
/// with the same client, and a changed `token_url` or `client_id` starts afresh.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    destination: DestinationId,
    token_url: String,
    client_id: String,
}

#[derive(Debug, Clone)]
struct CachedToken {
    access_token: String,
    use_until: Instant,
}

/// Each grant has its own async lock, so concurrent deliveries to one destination wait for a
/// single token request instead of each sending one.
type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Slot>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    token_type: Option<String>,
}

impl TokenCache {
    /// A valid access token for `request`, fetched when none is cached or it is about to
    /// expire.
    pub(crate) async fn token(
        &self,
        client: &Client,
        request: &TokenRequest<'_>,
        deadline: &Deadline,
    ) -> Result<String, DeliveryError> {
        let slot = self.slot(request);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.use_until > Instant::now()) {
            return Ok(token.access_token.clone());
        }
        let fresh = fetch(client, request, deadline).await?;
        let access_token = fresh.access_token.clone();
        *cached = Some(fresh);
        Ok(access_token)
    }

    /// Forgets `rejected` after the destination answered 401 to it. A token another delivery
    /// already replaced is left alone, so one 401 costs one token request.
    pub(crate) async fn invalidate(&self, request: &TokenRequest<'_>, rejected: &str) {
        let slot = self.slot(request);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.access_token == rejected) {
            *cached = None;
        }
    }

    fn slot(&self, request: &TokenRequest<'_>) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() > PRUNE_ABOVE {
            let now = Instant::now();
            // A slot in use (locked) is kept; so is one holding a live token.
            slots.retain(|_, slot| {
                slot.try_lock().map_or(true, |t| t.as_ref().is_some_and(|t| t.use_until > now))
            });
        }
        slots.entry(request.key()).or_default().clone()
    }
}

async fn fetch(
    client: &Client,
    request: &TokenRequest<'_>,
    deadline: &Deadline,
) -> Result<CachedToken, DeliveryError> {
    let invalid = || DeliveryError::permanent("the OAuth2 token_url is not a valid URL");
    let url = Url::parse(request.token_url).map_err(|_| invalid())?;
    let host = host_label(&url);
    let uri = request_target(&url).ok_or_else(invalid)?;
    let failed =
        |why: String| DeliveryError::retryable(format!("OAuth2 token request to {host} failed: {why}"));
    let form = bytes::Bytes::from(token_form(request));
    let build = || {
        let mut token_request = Request::new(Body::new(form.clone()));
        *token_request.method_mut() = Method::POST;
        *token_request.uri_mut() = uri.clone();
        let headers = token_request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, request.user_agent.clone());
        token_request
    };
    // An attempt whose time is spent says so plainly, as it would before any token request.
    deadline.remaining()?;
    let started = Instant::now();
    let target = Target { host: &host, connect_timeout_ms: request.connect_timeout_ms };
    let response =
        client::send(client, build, &target, deadline).await.map_err(|cause| failed(cause.message))?;
    let status = response.status();
    let body = read_capped(response, MAX_TOKEN_RESPONSE, deadline).await;
    if !status.is_success() {
        let excerpt = body_text(&body)
            .map(|text| {
                // A provider could echo the form back; the secret never reaches a log, raw
                // or form-encoded.
                let encoded: String =
                    url::form_urlencoded::byte_serialize(request.client_secret.as_bytes()).collect();
                let text = text.replace(request.client_secret, "[redacted]").replace(&encoded, "[redacted]");
                let start: String = text.chars().take(ERROR_BODY_CHARS).collect();
                format!(": {start}")
            })
            .unwrap_or_default();
        return Err(failed(format!("{}{excerpt}", status_line(status))));
    }
    let answer: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("the answer is not a token response ({})", json_error_kind(&e))))?;
    if answer.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(failed("the token_type is not bearer".to_owned()));
    }
    if answer.access_token.is_empty() {
        return Err(failed("the access_token is empty".to_owned()));
    }
    let lifetime = answer.expires_in.as_ref().and_then(seconds).unwrap_or(DEFAULT_LIFETIME);
    // Short-lived tokens keep at least half their life usable.
    let margin = EXPIRY_MARGIN.min(lifetime / 2);
    Ok(CachedToken { access_token: answer.access_token, use_until: started + lifetime - margin })
}

/// The client-credentials grant, credentials in the body (`client_secret_post`).
fn token_form(request: &TokenRequest<'_>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", request.client_id)
        .append_pair("client_secret", request.client_secret);
    if let Some(scope) = request.scope {
        form.append_pair("scope", scope);
    }
    form.finish()
}

/// `expires_in` as seconds; some providers send it as a string.
fn seconds(value: &Value) -> Option<Duration> {
    let secs = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    Some(Duration::from_secs(secs))
}

/// A serde_json error's category without its text, which can quote the input.
fn json_error_kind(err: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match err.classify() {
        Category::Io => "unreadable",
        Category::Syntax | Category::Eof => "not JSON",
        Category::Data => "missing or mistyped fields",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expires_in_is_read_from_numbers_and_strings() {
        assert_eq!(seconds(&json!(60)), Some(Duration::from_secs(60)));
        assert_eq!(seconds(&json!("120")), Some(Duration::from_secs(120)));
        assert_eq!(seconds(&json!(-1)), None);
        assert_eq!(seconds(&json!(null)), None);
    }

    #[test]
    fn basic_credentials_are_encoded_and_sensitive() {
        let value = basic("user", "p4ss").unwrap();
        assert_eq!(value.to_str().unwrap(), "Basic dXNlcjpwNHNz");
        assert!(value.is_sensitive());
        assert!(bearer("line\nbreak").is_err());
    }
}
