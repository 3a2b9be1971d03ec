//! Signing in to the dashboard: the session cookie holds the token the user typed (an API key
//! or a JWT), resolved on every request exactly as a bearer token is, so revoking the key ends
//! the session at once and any node can serve it. Forms that write carry a CSRF token derived
//! from the session token, which every node can recompute and nothing needs to store.

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::layout::{self, redirect};
use crate::ApiState;
use crate::auth::{Principal, resolve_token};

pub const COOKIE: &str = "switchyard_session";
const CSRF_DOMAIN: &[u8] = b"switchyard/ui/csrf/v1\0";
/// Forms are small; a larger body is no form of ours.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The signed-in user's token, for what the pages derive from it (the CSRF field).
#[derive(Clone)]
pub struct Session {
    token: String,
}

impl Session {
    pub fn csrf(&self) -> String {
        csrf_token(&self.token)
    }
}

pub fn csrf_token(session_token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(CSRF_DOMAIN);
    hash.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(hash.finalize())
}

pub fn csrf_matches(session_token: &str, sent: &str) -> bool {
    let expected = csrf_token(session_token);
    let (a, b) = (expected.as_bytes(), sent.as_bytes());
    // The length of a SHA-256 in base64 is public; only the bytes must not leak by timing.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Where to go after signing in: only a path of the dashboard, so the form cannot be used to
/// send a user elsewhere (`//evil`, `/\evil`, `https://…`).
pub fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next else { return "/ui".into() };
    let rest = match next.strip_prefix("/ui") {
        Some(rest) => rest,
        None => return "/ui".into(),
    };
    let shaped = rest.is_empty() || rest.starts_with('/') || rest.starts_with('?');
    let clean = !next.contains("//") && !next.contains('\\') && next.chars().all(|c| c.is_ascii_graphic());
    if shaped && clean { next.to_owned() } else { "/ui".into() }
}

/// Tokens are sent back in a cookie verbatim, so only characters a cookie value may hold pass.
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 8192
        && token.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{secure}")
}

pub fn cleared_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| cookie_safe(value))
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The pairs of an `application/x-www-form-urlencoded` body, in order (a key may repeat).
pub fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let uri: Uri = format!("/?{text}").parse().ok()?;
    Query::<Vec<(String, String)>>::try_from_uri(&uri).ok().map(|q| q.0)
}

pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// Middleware of every page but sign-in and assets: a valid session, or off to sign in; a
/// form that writes must carry the session's CSRF token.
pub async fn require(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let token = cookie_token(request.headers());
    let principal = match &token {
        Some(token) => resolve_token(&state, token).await.ok(),
        None => None,
    };
    let (Some(token), Some(principal)) = (token, principal) else {
        let target = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
        let next = if request.method() == Method::GET { safe_next(Some(target)) } else { "/ui".into() };
        return redirect(&format!("/ui/sign-in?next={}", encode_query(&next)));
    };
    let (mut parts, body) = request.into_parts();
    let body = if parts.method == Method::POST {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return layout::error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
        };
        let sent = form_pairs(&bytes).and_then(|pairs| field(&pairs, "csrf").map(str::to_owned));
        if !sent.is_some_and(|sent| csrf_matches(&token, &sent)) {
            return layout::error_page(
                StatusCode::FORBIDDEN,
                "This form is stale or did not come from this dashboard. Reload the page and try again.",
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    tracing::Span::current().record("principal", principal.subject());
    parts.extensions.insert(principal);
    parts.extensions.insert(Session { token });
    next.run(Request::from_parts(parts, body)).await
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

pub async fn sign_in_form(Query(query): Query<SignInQuery>) -> Response {
    sign_in_page(StatusCode::OK, &safe_next(query.next.as_deref()), None)
}

fn sign_in_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        main.narrow {
            h1 { "Sign in to Switchyard" }
            @if let Some(error) = error {
                p.notice.error role="alert" { (error) }
            }
            form method="post" action="/ui/sign-in" {
                label for="token" { "API key or token" }
                input type="password" id="token" name="token" autocomplete="current-password" required;
                input type="hidden" name="next" value=(next);
                button type="submit" id="sign-in" { "Sign in" }
            }
            p.hint { "The token is kept in a cookie for this site only and checked on every page." }
        }
    };
    let mut response = layout::bare("Sign in", body).into_response();
    *response.status_mut() = status;
    response
}

pub async fn sign_in(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let pairs = form_pairs(&body).unwrap_or_default();
    let next = safe_next(field(&pairs, "next"));
    let token = field(&pairs, "token").map(str::trim).unwrap_or_default();
    let principal: Option<Principal> =
        if cookie_safe(token) { resolve_token(&state, token).await.ok() } else { None };
    if principal.is_none() {
        return sign_in_page(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That token is unknown, revoked or invalid."),
        );
    }
    let mut response = redirect(&next);
    if let Ok(cookie) = HeaderValue::from_str(&session_cookie(token, state.settings().https)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

pub async fn sign_out(State(state): State<ApiState>) -> Response {
    let mut response = redirect("/ui/sign-in");
    if let Ok(cookie) = HeaderValue::from_str(&cleared_cookie(state.settings().https)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let token = csrf_token("sy_abc");
        assert_eq!(token, csrf_token("sy_abc"));
        assert_ne!(token, csrf_token("sy_abd"));
        assert_eq!(token.len(), 43);
        assert!(csrf_matches("sy_abc", &token));
        assert!(!csrf_matches("sy_abd", &token));
        assert!(!csrf_matches("sy_abc", ""));
        assert!(!csrf_matches("sy_abc", &token[1..]));
    }

    #[test]
    fn next_stays_inside_the_dashboard() {
        assert_eq!(safe_next(None), "/ui");
        assert_eq!(safe_next(Some("/ui")), "/ui");
        assert_eq!(safe_next(Some("/ui/events?event_type=a.b")), "/ui/events?event_type=a.b");
        for bad in [
            "https://evil.example/ui",
            "//evil.example",
            "/ui//evil",
            "/ui\\x",
            "/uix",
            "/v1/status",
            "",
            "/ui/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui", "{bad:?}");
        }
    }

    #[test]
    fn cookies_carry_their_attributes() {
        assert_eq!(
            session_cookie("sy_t", false),
            "switchyard_session=sy_t; Path=/ui; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("sy_t", true).ends_with("; Secure"));
        assert!(cleared_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; switchyard_session=sy_x; b=2"));
        assert_eq!(cookie_token(&headers).as_deref(), Some("sy_x"));
        headers.insert(header::COOKIE, HeaderValue::from_static("switchyard_sessionx=sy_x"));
        assert_eq!(cookie_token(&headers), None);
    }

    #[test]
    fn form_bodies_keep_repeated_keys() {
        let pairs = form_pairs(b"csrf=a%2Bb&delivery_id=dlv_1&delivery_id=dlv_2").unwrap();
        assert_eq!(field(&pairs, "csrf"), Some("a+b"));
        assert_eq!(pairs.iter().filter(|(k, _)| k == "delivery_id").count(), 2);
    }
}
