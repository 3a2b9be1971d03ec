//! The soak's publishers: workers that publish events one at a time, each event until a node
//! acknowledges it (201, or 200 for one it already had), as a careful client does: a refused
//! or unanswered event is sent again with the same id, so the hub can keep it once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use hyper::header::RETRY_AFTER;
use serde_json::Value;

use crate::load::{Answer, Connection};

/// What one node answered the publishers.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    pub acknowledged: u64,
    /// 503 with the `unavailable` envelope and a `Retry-After`, as SPEC §4 has it.
    pub unavailable: u64,
    /// 503 without the envelope's `unavailable` code or without `Retry-After`.
    pub malformed_unavailable: u64,
    /// Any other status, by code.
    pub other: BTreeMap<u16, u64>,
    /// Requests that got no answer: the connection was refused or cut (the node was down).
    pub unanswered: u64,
    /// The first answer that was neither an acknowledgement nor a well-formed 503.
    pub first_unexpected: Option<String>,
}

impl Answers {
    fn add(&mut self, other: &Answers) {
        self.acknowledged += other.acknowledged;
        self.unavailable += other.unavailable;
        self.malformed_unavailable += other.malformed_unavailable;
        for (status, n) in &other.other {
            *self.other.entry(*status).or_default() += n;
        }
        self.unanswered += other.unanswered;
        if self.first_unexpected.is_none() {
            self.first_unexpected.clone_from(&other.first_unexpected);
        }
    }

    /// Whether every refusal was a well-formed 503.
    pub fn refusals_well_formed(&self) -> bool {
        self.malformed_unavailable == 0 && self.other.is_empty()
    }

    fn count(&mut self, answer: &Answer) {
        match answer.status.as_u16() {
            200 | 201 => self.acknowledged += 1,
            503 if is_unavailable_envelope(answer) => self.unavailable += 1,
            status => {
                if status == 503 {
                    self.malformed_unavailable += 1;
                } else {
                    *self.other.entry(status).or_default() += 1;
                }
                if self.first_unexpected.is_none() {
                    let body = String::from_utf8_lossy(&answer.body);
                    self.first_unexpected = Some(format!("{}: {body}", answer.status));
                }
            }
        }
    }
}

impl fmt::Display for Answers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acknowledged, {} × 503 unavailable, {} unanswered (node down)",
            self.acknowledged, self.unavailable, self.unanswered
        )?;
        if self.malformed_unavailable > 0 {
            write!(f, ", {} × 503 without the envelope or Retry-After", self.malformed_unavailable)?;
        }
        for (status, n) in &self.other {
            write!(f, ", {n} × {status}")?;
        }
        Ok(())
    }
}

/// A 503 whose body is the failure envelope with code `unavailable` and which says when to
/// come back.
fn is_unavailable_envelope(answer: &Answer) -> bool {
    let code = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_owned));
    code.as_deref() == Some("unavailable") && answer.headers.contains_key(RETRY_AFTER)
}

/// The shape of the soak's events.
#[derive(Debug, Clone)]
pub struct Events {
    /// Every event id starts with it, so the phases' events never meet.
    pub prefix: &'static str,
    /// Bytes of filler in each payload.
    pub padding: usize,
}

impl Events {
    fn id(&self, n: u64) -> String {
        format!("{}-{n}", self.prefix)
    }

    fn body(&self, n: u64) -> Bytes {
        let event = serde_json::json!({
            "event_id": self.id(n),
            "event_type": "soak.item",
            "payload": {"n": n, "padding": "x".repeat(self.padding)},
        });
        Bytes::from(event.to_string())
    }
}

struct Shared {
    events: Events,
    token: String,
    next: AtomicU64,
    stop: AtomicBool,
    acknowledged: Mutex<HashSet<String>>,
    answers: Mutex<BTreeMap<SocketAddr, Answers>>,
}

impl Shared {
    fn all_answers(&self) -> Answers {
        let mut all = Answers::default();
        for answers in self.answers.lock().expect("not poisoned").values() {
            all.add(answers);
        }
        all
    }
}

pub struct Publisher {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a publisher waits for an answer before it takes the node for gone.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause before an event is sent again. Shorter than the `Retry-After: 1` the hub asks
/// for, so that the soak sees how the node answers while it is down.
const RESEND_PAUSE: Duration = Duration::from_millis(100);

impl Publisher {
    /// Starts `connections` workers spread over `nodes`.
    pub fn start(nodes: &[SocketAddr], token: &str, events: Events, connections: usize) -> Publisher {
        let shared = Arc::new(Shared {
            events,
            token: token.to_owned(),
            next: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            acknowledged: Mutex::default(),
            answers: Mutex::new(nodes.iter().map(|n| (*n, Answers::default())).collect()),
        });
        let workers = (0..connections.max(1))
            .map(|i| tokio::spawn(publish(Arc::clone(&shared), nodes[i % nodes.len()])))
            .collect();
        Publisher { shared, workers }
    }

    pub fn acknowledged_count(&self) -> u64 {
        self.shared.acknowledged.lock().expect("not poisoned").len() as u64
    }

    /// What `node` has answered so far.
    pub fn answers_of(&self, node: SocketAddr) -> Answers {
        self.shared.answers.lock().expect("not poisoned").get(&node).cloned().unwrap_or_default()
    }

    /// What every node has answered so far, together.
    pub fn answers(&self) -> Answers {
        self.shared.all_answers()
    }

    /// Stops the workers (an event still waiting for its acknowledgement is given up) and
    /// answers the ids of the acknowledged events and what the nodes answered in all.
    pub async fn stop(self) -> (HashSet<String>, Answers) {
        let Publisher { shared, workers } = self;
        shared.stop.store(true, Ordering::Relaxed);
        for worker in workers {
            let _ = worker.await;
        }
        let acknowledged = std::mem::take(&mut *shared.acknowledged.lock().expect("not poisoned"));
        (acknowledged, shared.all_answers())
    }
}

async fn publish(shared: Arc<Shared>, node: SocketAddr) {
    let mut connection: Option<Connection> = None;
    'events: while !shared.stop.load(Ordering::Relaxed) {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let body = shared.events.body(n);
        while !shared.stop.load(Ordering::Relaxed) {
            let answer = match connection.as_mut() {
                Some(open) => {
                    let exchange = open.exchange(
                        Method::POST,
                        "/v1/events",
                        Some(&shared.token),
                        Vec::new(),
                        body.clone(),
                    );
                    tokio::time::timeout(ANSWER_TIMEOUT, exchange).await.ok().and_then(Result::ok)
                }
                None => {
                    connection = Connection::open(node).await.ok();
                    if connection.is_some() {
                        continue;
                    }
                    None
                }
            };
            let Some(answer) = answer else {
                connection = None;
                shared.answers.lock().expect("not poisoned").entry(node).or_default().unanswered += 1;
                tokio::time::sleep(RESEND_PAUSE).await;
                continue;
            };
            shared.answers.lock().expect("not poisoned").entry(node).or_default().count(&answer);
            if answer.status.is_success() {
                shared.acknowledged.lock().expect("not poisoned").insert(shared.events.id(n));
                continue 'events;
            }
            tokio::time::sleep(RESEND_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use hyper::StatusCode;
    use hyper::header::{HeaderMap, HeaderValue};

    use super::*;

    fn answer(status: u16, retry_after: bool, body: &str) -> Answer {
        let mut headers = HeaderMap::new();
        if retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Answer { status: StatusCode::from_u16(status).unwrap(), headers, body: Bytes::from(body.to_owned()) }
    }

    #[test]
    fn only_an_unavailable_envelope_with_retry_after_is_a_well_formed_503() {
        let envelope = r#"{"success":false,"error":{"code":"unavailable","message":"m"}}"#;
        let mut answers = Answers::default();
        answers.count(&answer(201, false, "{}"));
        answers.count(&answer(200, false, "{}"));
        answers.count(&answer(503, true, envelope));
        assert!(answers.refusals_well_formed());
        answers.count(&answer(503, false, envelope));
        answers.count(&answer(503, true, "busy"));
        answers.count(&answer(500, false, "oops"));
        assert_eq!((answers.acknowledged, answers.unavailable, answers.malformed_unavailable), (2, 1, 2));
        assert_eq!(answers.other, BTreeMap::from([(500, 1)]));
        assert!(!answers.refusals_well_formed());
        assert!(answers.first_unexpected.unwrap().starts_with("503"));
    }

    #[test]
    fn events_carry_their_id_and_padding() {
        let events = Events { prefix: "p", padding: 2_048 };
        let body: Value = serde_json::from_slice(&events.body(7)).unwrap();
        assert_eq!(body["event_id"], "p-7");
        assert_eq!(body["payload"]["padding"].as_str().unwrap().len(), 2_048);
    }
}
