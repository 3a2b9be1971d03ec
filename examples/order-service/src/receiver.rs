//! The downstream service: an HTTP endpoint on 127.0.0.1 that takes Switchyard's webhooks
//! and hands each to the program. A real receiver would verify the `webhook-signature`
//! (Standard Webhooks) with the destination's signing secret and deduplicate by `webhook-id`,
//! since delivery is at least once.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;

/// One webhook as it arrived.
#[derive(Debug)]
pub struct Delivery {
    /// The delivery's id (`webhook-id`): the same on every retry of it.
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: Value,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  webhook-id:   {}", self.webhook_id)?;
        writeln!(f, "  X-Event-ID:   {}", self.event_id)?;
        writeln!(f, "  X-Event-Type: {}", self.event_type)?;
        let payload = serde_json::to_string_pretty(&self.payload).map_err(|_| fmt::Error)?;
        write!(f, "  payload:      {}", payload.replace('\n', "\n  "))
    }
}

pub struct Receiver {
    addr: SocketAddr,
    deliveries: mpsc::Receiver<Delivery>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on a free loopback port, answering 204 to every webhook at `/hooks/orders`.
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, deliveries) = mpsc::channel(64);
        let app = Router::new().route("/hooks/orders", post(receive)).with_state(sender);
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("receiver: stopped: {error}");
            }
        });
        Ok(Receiver { addr, deliveries, server })
    }

    /// Where Switchyard sends the events.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/orders", self.addr)
    }

    /// The delivery of event `event_id`, once it arrives; `None` after `timeout`. Other
    /// deliveries that arrive meanwhile are passed over.
    pub async fn wait_for(&mut self, event_id: &str, timeout: Duration) -> Option<Delivery> {
        let wait = async {
            while let Some(delivery) = self.deliveries.recv().await {
                if delivery.event_id == event_id {
                    return Some(delivery);
                }
            }
            None
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One webhook: Switchyard puts the event's identity in headers and its payload in the body.
async fn receive(
    State(deliveries): State<mpsc::Sender<Delivery>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header =
        |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let Ok(payload) = serde_json::from_slice(&body) else {
        // A 4xx tells Switchyard not to retry: the same body would fail again.
        return StatusCode::UNPROCESSABLE_ENTITY;
    };
    let delivery = Delivery {
        webhook_id: header("webhook-id"),
        event_id: header("x-event-id"),
        event_type: header("x-event-type"),
        payload,
    };
    // Only a 2xx is a success: if the program stopped listening, let Switchyard retry.
    match deliveries.send(delivery).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
