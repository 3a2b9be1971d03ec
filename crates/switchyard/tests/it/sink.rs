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
    /// Answers `status`, but only after `delay`.
    Slow {
        delay: Duration,
        status: u16,
    },
    /// Answers `status` to about `percent` % of requests, chosen by a fixed pseudo-random
    /// sequence (the same on every run), 200 to the rest.
    FailSome {
        percent: u64,
        status: u16,
    },
    /// Answers `status` to requests whose body contains `marker`, 200 to the rest.
    FailWhen {
        marker: String,
        status: u16,
    },
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status answered; `None` for a request left hanging.
    pub status: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
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

    /// Waits until `count` distinct deliveries (by `webhook-id`) were received, up to
    /// `deadline`, however many times each came.
    pub async fn wait_for_distinct(&self, deadline: Duration, count: usize) -> Vec<Received> {
        self.wait_for(deadline, |received| {
            let mut ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len() >= count
        })
        .await
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
    // The status is chosen and recorded with the request, under one lock, so the order of
    // `received` is the order in which answers were decided.
    let status = {
        let mut inner = sink.inner.lock().expect("the sink lock");
        inner.answered += 1;
        let answered = inner.answered;
        let status = match &behaviour {
            Behaviour::Status(status) => Some(*status),
            Behaviour::FailFirst { times, status } => Some(if answered <= *times { *status } else { 200 }),
            Behaviour::TooManyRequests { .. } => Some(429),
            Behaviour::Hang => None,
            Behaviour::Slow { status, .. } => Some(*status),
            Behaviour::FailSome { percent, status } => {
                Some(if splitmix(answered as u64) % 100 < *percent { *status } else { 200 })
            }
            Behaviour::FailWhen { marker, status } => {
                Some(if body.windows(marker.len()).any(|w| w == marker.as_bytes()) { *status } else { 200 })
            }
        };
        inner.received.push(Received { headers, body, at: Instant::now(), status });
        status
    };
    let status = match (behaviour, status) {
        (Behaviour::TooManyRequests { retry_after_s }, _) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_s.to_string())],
                "slow down",
            )
                .into_response();
        }
        (Behaviour::Slow { delay, .. }, Some(status)) => {
            tokio::time::sleep(delay).await;
            status
        }
        (_, Some(status)) => status,
        (_, None) => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            200
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("answered {status}")).into_response()
}

/// A fixed pseudo-random sequence (SplitMix64), so a flaky sink fails the same way every run.
fn splitmix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
