//! Webhook sources: a provider's signed request becomes an event.
//!
//! A request is checked in this order, each step answering on its own: the source exists and
//! is enabled (else `NotFound`, the same for both); the signature verifies over the raw body
//! (else `Unauthorized`); the source's rate limit has a token (else `RateLimited`, so a noisy
//! provider waits instead of starving the rest); the body is a JSON object and the event's type
//! and id can be taken from it (else `Invalid`). The event then goes through the same ingest as
//! `POST /v1/events`; a provider's redelivery of an id is a duplicate whatever it carries, so it
//! never retries forever.
//!
//! A source's compiled form is read from the store at most once a second (a change made on
//! another node is seen within that time; one made through this node at once, by `forget`).
//! What each source's requests came to is kept per node, for metrics and the status report.

pub mod activity;
mod extract;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use switchyard_core::ValidationError;
use switchyard_core::digest::sha256_hex;
use switchyard_core::event::{EventId, EventInput, EventSource, IngestContext, IngestOutcome};
use switchyard_core::id::SourceId;
use switchyard_core::json;
use switchyard_core::rate::TokenBucket;
use switchyard_core::source::{self, Headers, Rejection, Source, WebhookConfig};
use switchyard_core::store::{Store, StoreError};
use switchyard_core::time::Millis;

use activity::{Activity, Outcome};
pub use activity::{FAILING_AFTER, SourceActivity};
use extract::Extractors;

use crate::ingest::{IngestError, Ingestor};
use crate::jq::JqLimits;
use crate::metrics::Metrics;
use crate::operational::{FailingSource, Operational};
use crate::recent::{RECENT_FOR, Recent};

/// Why a webhook was not taken in.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No such source, or it is disabled: answered alike, so a caller learns nothing.
    #[error("no such source")]
    NotFound,
    #[error("the webhook could not be verified: {0}")]
    Unauthorized(Rejection),
    #[error("the source's rate limit is reached")]
    RateLimited { retry_after_ms: Millis },
    #[error(transparent)]
    Invalid(ValidationError),
    #[error(transparent)]
    Store(StoreError),
    /// Both the provider's id and the one scoped by this source name events from elsewhere.
    #[error("the event's id is taken by an event from elsewhere")]
    IdTaken,
    /// The stored source cannot be used (its configuration no longer reads).
    #[error("the source cannot be used: {0}")]
    Broken(String),
}

/// A webhook taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub event_id: String,
    /// The provider sent this id before; nothing new was stored.
    pub duplicate: bool,
}

/// One webhook request as it arrived.
pub struct WebhookRequest<'a> {
    pub headers: &'a (dyn Headers + Sync),
    /// The body exactly as received: signatures cover these bytes.
    pub body: &'a [u8],
    pub received_at: Millis,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    pub correlation_id: Option<String>,
    pub max_payload_bytes: usize,
}

/// A source ready to take requests: its configuration read and its jq filters compiled.
struct Compiled {
    source: Source,
    config: WebhookConfig,
    extractors: Extractors,
}

pub struct SourceIntake {
    store: Arc<dyn Store>,
    metrics: Option<Metrics>,
    /// Told when a source starts failing verification (`switchyard.source.failing`).
    operational: Operational,
    jq_limits: JqLimits,
    /// Sources read a moment ago; `None` for ids that are absent or disabled.
    compiled: Recent<SourceId, Option<Arc<Compiled>>>,
    buckets: Mutex<HashMap<SourceId, TokenBucket>>,
    activity: Activity,
}

impl SourceIntake {
    pub fn new(store: Arc<dyn Store>, jq_limits: JqLimits) -> Self {
        Self {
            store,
            metrics: None,
            operational: Operational::default(),
            jq_limits,
            compiled: Recent::new(RECENT_FOR),
            buckets: Mutex::default(),
            activity: Activity::default(),
        }
    }

    /// Counts requests in `switchyard_source_requests_total`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reports sources that start failing verification to `operational` (the engine's,
    /// [`crate::Control::operational`]).
    pub fn with_operational(mut self, operational: Operational) -> Self {
        self.operational = operational;
        self
    }

    /// Checks what a configuration cannot check alone: its jq filters compile.
    pub async fn check(config: &WebhookConfig) -> Result<(), ValidationError> {
        Extractors::compile(config).await.map(drop)
    }

    /// To be called after a source is changed through this node: the next request reads it
    /// anew. Its activity stays (a provider failing verification still is, until it succeeds).
    pub fn forget(&self, _id: &SourceId) {
        self.compiled.clear();
    }

    /// To be called after a source is deleted through this node.
    pub fn forget_deleted(&self, id: &SourceId) {
        self.compiled.clear();
        lock(&self.buckets).remove(id);
        self.activity.forget(id);
    }

    /// What each source's requests on this node came to, by source id.
    pub fn activity(&self) -> HashMap<SourceId, SourceActivity> {
        self.activity.snapshot()
    }

    /// Verifies the request, takes the event out of it and ingests it.
    pub async fn receive(
        &self,
        ingestor: &Ingestor,
        id: &SourceId,
        request: WebhookRequest<'_>,
    ) -> Result<Received, IntakeError> {
        let Some(compiled) = self.load(id).await? else {
            return Err(IntakeError::NotFound);
        };
        let now = request.received_at;
        let result = self.take_in(ingestor, &compiled, request).await;
        let rejected = match &result {
            Err(IntakeError::Unauthorized(rejection)) => Some(rejection.to_string()),
            _ => None,
        };
        let outcome = match &result {
            Ok(received) if received.duplicate => Outcome::Duplicate,
            Ok(_) => Outcome::Accepted,
            Err(IntakeError::Unauthorized(_)) => Outcome::Unauthorized(rejected.clone().unwrap_or_default()),
            Err(IntakeError::RateLimited { .. }) => Outcome::RateLimited,
            Err(IntakeError::Invalid(_)) => Outcome::Invalid,
            Err(_) => Outcome::Failed,
        };
        if let Some(metrics) = &self.metrics {
            metrics.source_request(id.as_str(), outcome.label());
        }
        if self.activity.record(id, outcome, now) {
            let source = &compiled.source;
            self.operational.source_failing(FailingSource {
                source_id: source.id.clone(),
                name: source.name.clone(),
                kind: source.kind.as_str(),
                error: rejected.unwrap_or_default(),
                failures: u32::try_from(FAILING_AFTER).unwrap_or(u32::MAX),
            });
        }
        result
    }

    async fn take_in(
        &self,
        ingestor: &Ingestor,
        compiled: &Compiled,
        request: WebhookRequest<'_>,
    ) -> Result<Received, IntakeError> {
        let now = request.received_at;
        compiled
            .config
            .verification
            .verify(request.headers, request.body, now)
            .map_err(IntakeError::Unauthorized)?;
        self.take_token(compiled, now)?;
        if json::nests_deeper_than(request.body, json::MAX_DEPTH) {
            let message = format!("nests arrays and objects more than {} levels deep", json::MAX_DEPTH);
            return Err(invalid("body", &message));
        }
        let payload = match serde_json::from_slice::<Value>(request.body) {
            Ok(Value::Object(payload)) => payload,
            Ok(_) => return Err(invalid("body", "must be a JSON object")),
            Err(_) => return Err(invalid("body", "must be JSON")),
        };
        let payload = Value::Object(payload);
        let taken =
            compiled.extractors.take(request.headers, request.body, &payload, &self.jq_limits).await?;
        let headers = forwarded(&compiled.config.forward_headers, request.headers);
        let source = &compiled.source;
        let ctx = IngestContext {
            source: EventSource::from_trusted(source::event_source(source.kind, &source.id)),
            correlation_id: request.correlation_id,
            traceparent: request.traceparent,
            request_id: request.request_id,
            principal: None,
            headers,
            received_at: now,
            max_payload_bytes: request.max_payload_bytes,
        };
        let ours = ctx.source.clone();
        let mut input = EventInput {
            event_id: Some(taken.event_id.clone()),
            event_type: Some(taken.event_type),
            payload: Some(payload),
            ..EventInput::default()
        };
        // The provider's id names the event unless an event from elsewhere (another source,
        // the API) holds it: then the id scoped by this source does, which is as stable.
        for event_id in [taken.event_id.clone(), scoped_id(&source.id, &taken.event_id)] {
            input.event_id = Some(event_id);
            let holder = match ingestor.ingest_one(input.clone(), &ctx).await {
                Ok(IngestOutcome::Created(event)) => {
                    return Ok(Received { event_id: event.event_id.to_string(), duplicate: false });
                }
                Ok(IngestOutcome::Duplicate(event)) => event,
                // Same id, other content: a redelivery re-rendered by the provider if the event
                // is ours; the first one stands.
                Ok(IngestOutcome::Conflict(event_id)) => {
                    match self.store.get_event(&event_id).await.map_err(IntakeError::Store)? {
                        Some(event) => event,
                        None => return Err(IntakeError::Store(StoreError::NotFound("event"))),
                    }
                }
                Err(IngestError::Invalid(error)) => return Err(IntakeError::Invalid(error)),
                Err(IngestError::Store(error)) => return Err(IntakeError::Store(error)),
            };
            if holder.source == ours {
                return Ok(Received { event_id: holder.event_id.to_string(), duplicate: true });
            }
        }
        Err(IntakeError::IdTaken)
    }

    fn take_token(&self, compiled: &Compiled, now: Millis) -> Result<(), IntakeError> {
        let limit = &compiled.config.rate_limit;
        let mut buckets = lock(&self.buckets);
        let bucket =
            buckets.entry(compiled.source.id.clone()).or_insert_with(|| TokenBucket::full(limit, now));
        bucket.refill(limit, now);
        if bucket.take(limit, 1, now) == 1 {
            return Ok(());
        }
        Err(IntakeError::RateLimited { retry_after_ms: bucket.time_for(limit, 1).saturating_sub(now).max(1) })
    }

    async fn load(&self, id: &SourceId) -> Result<Option<Arc<Compiled>>, IntakeError> {
        self.compiled
            .get_or_load(
                id,
                |_| true,
                || async {
                    let Some(source) = self.store.get_source(id).await.map_err(IntakeError::Store)? else {
                        return Ok(None);
                    };
                    if !source.enabled {
                        return Ok(None);
                    }
                    let config = WebhookConfig::parse(&source.full_config())
                        .map_err(|error| IntakeError::Broken(error.to_string()))?;
                    let extractors = Extractors::compile(&config)
                        .await
                        .map_err(|error| IntakeError::Broken(error.to_string()))?;
                    Ok(Some(Arc::new(Compiled { source, config, extractors })))
                },
            )
            .await
    }
}

/// `<source id>:<id>`, or its SHA-256 when that is not a valid event id.
pub(crate) fn scoped_id(source: &SourceId, id: &str) -> String {
    let scoped = format!("{source}:{id}");
    if EventId::parse(&scoped).is_ok() { scoped } else { sha256_hex(scoped.as_bytes()) }
}

fn invalid(field: &str, message: &str) -> IntakeError {
    IntakeError::Invalid(ValidationError::single(field, message))
}

/// The `forward_headers` the request carries, by lowercase name; `None` when it carries none.
fn forwarded(names: &[String], headers: &dyn Headers) -> Option<Map<String, Value>> {
    let kept: Map<String, Value> =
        names.iter().filter_map(|name| Some((name.clone(), Value::from(headers.get(name)?)))).collect();
    (!kept.is_empty()).then_some(kept)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
