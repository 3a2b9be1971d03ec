//! A real HTTP receiver on loopback whose answers a test controls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// How the sink answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Status(u16),
    /// Answers `status` to the first `times` requests, 200 after.
    FailFirst {
        times: usize,
        status: u16,
    },
    /// 429 with `Retry-After: seconds`.
    TooManyRequests {
        retry_after_s: u64,
    },
    /// Never answers in time.
    Hang,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    answered: usize,
}

#[derive(Clone)]
pub struct Sink {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Sink {
    pub async fn start(behaviour: Behaviour) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let address: SocketAddr = listener.local_addr().expect("an address");
        let sink = Sink {
            url: format!("http://{address}/hook"),
            inner: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
        };
        let app = Router::new().fallback(receive).with_state(sink.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        sink
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("the sink lock") = behaviour;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("the sink lock").received.clone()
    }

    /// Requests received per `webhook-id`.
    pub fn by_delivery(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for request in self.received() {
            *counts.entry(request.header("webhook-id").to_owned()).or_default() += 1;
        }
        counts
    }

    /// Waits until `done` holds for what was received, up to `deadline`.
    pub async fn wait_for(&self, deadline: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                started.elapsed() < deadline,
                "the sink did not get what was expected in {deadline:?}; it got {} requests",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = sink.behaviour.lock().expect("the sink lock").clone();
    let answered = {
        let mut inner = sink.inner.lock().expect("the sink lock");
        inner.received.push(Received { headers, body, at: Instant::now() });
        inner.answered += 1;
        inner.answered
    };
    let status = match behaviour {
        Behaviour::Status(status) => status,
        Behaviour::FailFirst { times, status } => {
            if answered <= times {
                status
            } else {
                200
            }
        }
        Behaviour::TooManyRequests { retry_after_s } => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_s.to_string())],
                "slow down",
            )
                .into_response();
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            200
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("answered {status}")).into_response()
}
