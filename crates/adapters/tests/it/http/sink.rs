//! A real HTTP receiver on 127.0.0.1 (port 0) that records what it is sent and answers as
//! each path says: success, a chosen status, `Retry-After`, a hang, a huge or endless body, a
//! redirect, and an OAuth2 token endpoint with a resource that checks its tokens.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body::Frame;

/// One request as the sink received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct SinkState {
    requests: Mutex<Vec<Recorded>>,
    /// Form bodies sent to the token endpoint.
    token_requests: Mutex<Vec<String>>,
    /// The token `/protected` accepts; `None` after a revocation.
    valid_token: Mutex<Option<String>>,
}

pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<SinkState>,
}

impl Sink {
    pub async fn start() -> Self {
        let state = Arc::new(SinkState::default());
        let app = Router::new()
            .route("/ok", any(ok))
            .route("/status/{code}", any(status))
            .route("/retry-after-seconds", any(retry_after_seconds))
            .route("/retry-after-date", any(retry_after_date))
            .route("/hang", any(hang))
            .route("/big", any(big))
            .route("/endless", any(endless))
            .route("/stall", any(stall))
            .route("/redirect", any(redirect))
            .route("/token", any(token))
            .route("/token-down", any(token_down))
            .route("/protected", any(protected))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the sink serves");
        });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("sink lock").clone()
    }

    /// The only request received; fails the test if there were more or none.
    pub fn single_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request");
        requests.into_iter().next().expect("one request")
    }

    pub fn token_requests(&self) -> Vec<String> {
        self.state.token_requests.lock().expect("sink lock").clone()
    }

    /// Makes `/protected` refuse the token it handed out last, as a receiver that revoked it.
    pub fn revoke_token(&self) {
        *self.state.valid_token.lock().expect("sink lock") = None;
    }
}

fn record(state: &SinkState, method: Method, path: &str, headers: HeaderMap, body: Bytes) {
    state.requests.lock().expect("sink lock").push(Recorded { method, path: path.to_owned(), headers, body });
}

async fn ok(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    record(&s, m, "/ok", h, b);
    (StatusCode::OK, "accepted").into_response()
}

async fn status(
    State(s): State<Arc<SinkState>>,
    Path(code): Path<u16>,
    m: Method,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    record(&s, m, &format!("/status/{code}"), h, b);
    let code = StatusCode::from_u16(code).expect("a test status code");
    (code, format!("answered {code}")).into_response()
}

async fn retry_after_seconds(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    record(&s, m, "/retry-after-seconds", h, b);
    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")], "slow down").into_response()
}

async fn retry_after_date(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    record(&s, m, "/retry-after-date", h, b);
    let at = chrono::Utc::now() + chrono::Duration::seconds(120);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, date)], "maintenance").into_response()
}

async fn hang(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    record(&s, m, "/hang", h, b);
    // Far past any timeout a test sets; the test's runtime ends this task.
    tokio::time::sleep(Duration::from_secs(60)).await;
    StatusCode::OK.into_response()
}

async fn big(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    record(&s, m, "/big", h, b);
    // Multi-byte characters, so the 4 KiB cut falls inside one.
    (StatusCode::OK, "é".repeat(512 * 1024)).into_response()
}

/// A body that never ends: only a reader that stops early gets past it.
struct Endless;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[b'x'; 1024])))))
    }
}

async fn endless(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    record(&s, m, "/endless", h, b);
    Response::new(Body::new(Endless))
}

/// A body that sends its start, then nothing more and never ends.
struct Stalled {
    sent: bool,
}

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent {
            return Poll::Pending;
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"partial")))))
    }
}

async fn stall(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    record(&s, m, "/stall", h, b);
    Response::new(Body::new(Stalled { sent: false }))
}

async fn redirect(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    record(&s, m, "/redirect", h, b);
    (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response()
}

async fn token(State(s): State<Arc<SinkState>>, body: String) -> Response {
    let number = {
        let mut requests = s.token_requests.lock().expect("sink lock");
        requests.push(body);
        requests.len()
    };
    let token = format!("tok-{number}");
    *s.valid_token.lock().expect("sink lock") = Some(token.clone());
    let answer = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 3600,
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], answer.to_string()).into_response()
}

/// A failing token endpoint that echoes the form, secret included, as careless ones do.
async fn token_down(State(s): State<Arc<SinkState>>, body: String) -> Response {
    s.token_requests.lock().expect("sink lock").push(body.clone());
    (StatusCode::SERVICE_UNAVAILABLE, format!("token service down; you sent {body}")).into_response()
}

async fn protected(State(s): State<Arc<SinkState>>, m: Method, h: HeaderMap, b: Bytes) -> Response {
    let presented = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    record(&s, m, "/protected", h, b);
    let valid = s.valid_token.lock().expect("sink lock").clone();
    match (presented, valid) {
        (Some(p), Some(v)) if p == format!("Bearer {v}") => StatusCode::OK.into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}
