//! The soak's receiver: fails a share of deliveries at random with a 500, and counts by event id
//! (`X-Event-ID`) what it accepted, so that a repeat after an accepted delivery shows.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;

use crate::servers::Background;

pub struct FlakySink {
    server: Background,
    pub record: Arc<Record>,
}

impl FlakySink {
    /// Answers 500 to `failure_rate` (0 to 1) of the deliveries, picked at random, and 204 to
    /// the rest.
    pub fn start(failure_rate: f64) -> anyhow::Result<FlakySink> {
        let record = Arc::new(Record { failure_rate, ..Record::default() });
        let router = Router::new().fallback(any(receive)).with_state(Arc::clone(&record));
        Ok(FlakySink { server: Background::start("soak-sink", 1, router)?, record })
    }

    pub fn url(&self) -> String {
        format!("http://{}/soak", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

async fn receive(State(record): State<Arc<Record>>, headers: HeaderMap) -> StatusCode {
    let Some(event_id) = headers.get("x-event-id").and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    if rand::random::<f64>() < record.failure_rate {
        record.refused.fetch_add(1, Ordering::Relaxed);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    *record.accepted.lock().expect("not poisoned").entry(event_id.to_owned()).or_default() += 1;
    StatusCode::NO_CONTENT
}

#[derive(Default)]
pub struct Record {
    failure_rate: f64,
    /// How many times each event was accepted (answered 204).
    accepted: Mutex<HashMap<String, u32>>,
    refused: AtomicU64,
}

impl Record {
    /// Distinct events accepted at least once.
    pub fn delivered(&self) -> u64 {
        self.accepted.lock().expect("not poisoned").len() as u64
    }

    /// Acceptances beyond the first of each event: deliveries sent again after the receiver
    /// had already said yes (a node died between the send and the recording of its outcome).
    pub fn duplicates(&self) -> u64 {
        self.accepted.lock().expect("not poisoned").values().map(|n| u64::from(n - 1)).sum()
    }

    /// Deliveries answered 500 on purpose.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Which of `events` were never accepted.
    pub fn missing<'a>(&self, events: &'a HashSet<String>) -> Vec<&'a str> {
        let accepted = self.accepted.lock().expect("not poisoned");
        events.iter().filter(|id| !accepted.contains_key(*id)).map(String::as_str).collect()
    }

    /// Accepted events that are not among `events` (stored, but their publisher never heard so).
    pub fn beyond(&self, events: &HashSet<String>) -> u64 {
        let accepted = self.accepted.lock().expect("not poisoned");
        accepted.keys().filter(|id| !events.contains(*id)).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_after_an_acceptance_count_as_duplicates_and_refusals_do_not() {
        let record = Record::default();
        for id in ["a", "b", "b", "c", "c", "c"] {
            *record.accepted.lock().unwrap().entry(id.to_owned()).or_default() += 1;
        }
        record.refused.fetch_add(4, Ordering::Relaxed);
        assert_eq!((record.delivered(), record.duplicates(), record.refused()), (3, 3, 4));

        let published: HashSet<String> = ["a", "b", "d"].map(String::from).into();
        assert_eq!(record.missing(&published), ["d"]);
        assert_eq!(record.beyond(&published), 1, "c was accepted but never acknowledged");
    }
}
