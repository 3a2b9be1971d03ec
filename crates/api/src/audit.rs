//! The audit middleware: every `/v1` request of the control plane that may write (any method
//! but `GET`, `HEAD` and `OPTIONS`; publishing events is the data plane and is not audited,
//! see [`audit::is_audited`]) and got past authentication and the rate limit leaves one entry
//! in the audit log once it is answered, whatever the outcome: who (the principal's subject and
//! role), what (the action and resource, derived from the route template; see
//! [`switchyard_core::audit`]), the request id and the status. Bodies are never recorded.
//!
//! Entries are committed by one recorder task in groups: all requests that finish while a
//! commit runs share the next one, so auditing costs one transaction per group rather than one
//! per request. A response waits for its entry's commit (up to [`COMMIT_WAIT`]), so a write the
//! client saw answered is in the log. Auditing never fails a request: a failed commit is
//! logged and the answer goes out unchanged.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use switchyard_core::audit::{self, AuditEntry, AuditEntryId, AuditOutcome, AuditResource};
use switchyard_core::time::now_millis;
use tokio::sync::{mpsc, oneshot};

use crate::ApiState;
use crate::auth::Principal;
use crate::request_id;

/// Entries waiting for the recorder; a full queue makes requests wait (backpressure).
const QUEUE: usize = 1_024;
/// Most entries committed in one transaction.
const GROUP: usize = 256;
/// How long a response waits for its entry's commit before going out anyway.
pub const COMMIT_WAIT: Duration = Duration::from_secs(5);

type Pending = (AuditEntry, oneshot::Sender<()>);

/// Hands entries to the recorder task, started on first use (inside the runtime serving the
/// requests). The task ends when the router holding this is dropped.
#[derive(Clone)]
pub struct AuditRecorder(Arc<Inner>);

struct Inner {
    state: ApiState,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

impl AuditRecorder {
    pub fn new(state: ApiState) -> Self {
        Self(Arc::new(Inner { state, queue: OnceLock::new() }))
    }

    fn queue(&self) -> &mpsc::Sender<Pending> {
        self.0.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.0.state.clone(), receiver));
            sender
        })
    }

    /// Records `entry`, waiting (a bounded time) until it is committed. Never fails: problems
    /// are logged.
    pub async fn record(&self, entry: AuditEntry) {
        let (done, committed) = oneshot::channel();
        let action = entry.action.clone();
        if self.queue().send((entry, done)).await.is_err() {
            tracing::error!(%action, "the audit recorder has stopped; an audit entry is lost");
            return;
        }
        match tokio::time::timeout(COMMIT_WAIT, committed).await {
            Ok(Ok(())) => {}
            // The recorder logged why it could not commit.
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!(%action, "an audit entry is not committed yet; answering anyway"),
        }
    }
}

/// The recorder task: takes whatever entries are waiting (up to [`GROUP`]), commits them in
/// one transaction, tells their requests, and repeats.
async fn run(state: ApiState, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(GROUP);
    while queue.recv_many(&mut batch, GROUP).await > 0 {
        let (entries, waiting): (Vec<AuditEntry>, Vec<oneshot::Sender<()>>) = batch.drain(..).unzip();
        match state.store().append_audit_entries(&entries).await {
            Ok(()) => {
                for done in waiting {
                    let _ = done.send(());
                }
            }
            Err(error) => {
                tracing::error!(%error, entries = entries.len(), "audit entries could not be written");
            }
        }
    }
}

/// The middleware; see the module docs.
pub async fn record(State(recorder): State<AuditRecorder>, request: Request, next: Next) -> Response {
    around(&recorder, request, |request| next.run(request)).await
}

/// Runs `inner`, then records the request if it is audited; see the module docs.
pub(crate) async fn around<F, Fut>(recorder: &AuditRecorder, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let method = request.method().as_str();
    if audit::is_read_only(method) {
        return inner(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |m| m.as_str().to_owned());
    if !audit::is_audited(method, &route) {
        return inner(request).await;
    }
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        // Only authenticated requests reach this layer; without a principal there is no actor.
        return inner(request).await;
    };
    let method = method.to_owned();
    let (mut parts, body) = request.into_parts();
    // The first path parameter names the resource (`{id}`, `{name}`, `{event_id}`).
    let path_id = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| params.iter().next().map(|(_, value)| value.to_owned()));
    let response = inner(Request::from_parts(parts, body)).await;

    let status = response.status().as_u16();
    // A create names what it made in `Location`.
    let created_id = || {
        response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|location| location.rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
    };
    let (action, kind) = audit::describe(&method, &route);
    let entry = AuditEntry {
        id: AuditEntryId::generate(),
        at: now_millis(),
        actor: principal.subject(),
        role: principal.role,
        action,
        method,
        route,
        resource: AuditResource { kind, id: path_id.or_else(created_id) },
        request_id: request_id::current().unwrap_or_default(),
        outcome: AuditOutcome::of_status(status),
        seq: 0,
    };
    recorder.record(entry).await;
    response
}
