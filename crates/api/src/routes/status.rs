//! `GET /v1/status`: the integration status report, computed live from the store and this
//! node's last minute of requests (JSON in the envelope, or YAML under `integration_status:`).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchyard_core::api_key::Role;
use switchyard_core::circuit::CircuitState;
use switchyard_core::delivery::DeliveryTally;
use switchyard_core::destination::Destination;
use switchyard_core::flow::{DestinationFlow, DestinationHealth};
use switchyard_core::id::DestinationId;
use switchyard_core::page::ListRequest;
use switchyard_core::store::StoreResult;
use switchyard_core::time::{Millis, now_millis};
use switchyard_core::{ValidationError, time};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use switchyard_engine::intake::FAILING_AFTER;
use switchyard_engine::pull::PULL_FAILING_AFTER;
use switchyard_engine::{PullStatus, SourceActivity};

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::observe::Performance;

/// A pending delivery older than this is a stalled backlog.
pub const STALLED_AFTER_MS: Millis = 5 * 60 * 1000;
const DESTINATIONS_PER_PAGE: u32 = 100;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(status))
}

/// The report: the seed's `integration_status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    /// `deployed` once the node serves.
    #[schema(example = "deployed")]
    pub api: String,
    /// `migrations_complete` when the database answers with every migration applied;
    /// `unavailable` when it does not (a `database_error` blocker says why).
    #[schema(example = "migrations_complete")]
    pub database: String,
    /// One entry per destination.
    pub external_services: Vec<ExternalService>,
    pub performance: Performance,
    /// One entry per source, with what its webhooks came to on this node since it started.
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    /// What stands in the way of delivery; empty when nothing does.
    pub blockers: Vec<Blocker>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceStatus {
    pub source_id: String,
    pub name: String,
    #[schema(example = "webhook")]
    pub kind: String,
    pub enabled: bool,
    /// The verification type (`github`, `stripe`, …).
    #[schema(example = "github")]
    pub verification: Option<String>,
    /// Requests this node took in, refused, and so on, since it started (webhooks).
    pub activity: SourceActivity,
    /// When this node last received a request for it (RFC 3339); null before any.
    pub last_request_at: Option<String>,
    /// For the pull kinds (`outbox`, `nats`, `amqp`): what this node's reader of it is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullStatus>,
    /// When this node last read a batch of it (RFC 3339); null before any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_batch_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExternalService {
    pub destination_id: String,
    pub name: String,
    #[schema(example = "http")]
    pub kind: String,
    /// `configured` (no delivery succeeded yet), `integrated` (one did) or `monitoring`
    /// (integrated, with attempts in the circuit breaker's current window).
    #[schema(example = "integrated")]
    pub state: String,
    /// False while paused.
    pub enabled: bool,
    pub circuit: CircuitState,
    /// Why the circuit opened; null while closed.
    pub circuit_reason: Option<String>,
    /// Succeeded over all attempts in the circuit breaker's window; null without attempts.
    pub success_rate: Option<f64>,
    pub pending: u64,
    pub dead: u64,
    /// Age of the oldest pending delivery; null without any.
    pub oldest_pending_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Blocker {
    /// `circuit_open`, `dead_letters`, `destination_paused`, `stalled_backlog`,
    /// `source_failing` or `database_error`.
    #[schema(example = "circuit_open")]
    pub kind: String,
    /// The destination concerned, if any.
    pub destination_id: Option<String>,
    /// The source concerned, if any.
    #[serde(default)]
    pub source_id: Option<String>,
    pub reason: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// `json` (default, in the envelope) or `yaml` (under `integration_status:`).
    #[param(schema_with = report_format)]
    pub format: Option<String>,
}

fn report_format() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["json", "yaml"]))
        .build()
}

/// The integration status report, computed now.
///
/// `?format=yaml` answers the same content as YAML (`application/yaml`) under the root key
/// `integration_status`, without the envelope.
#[utoipa::path(
    get, path = "/v1/status", tag = "status",
    params(StatusQuery),
    responses(
        (status = 200, description = "The report (JSON); YAML with format=yaml", content(
            (Success<StatusReport> = "application/json"),
            (Object = "application/yaml"),
        )),
        (status = 400, description = "Unknown format", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn status(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> ApiResult<Response> {
    principal.require(Role::Viewer)?;
    let yaml = match query.format.as_deref() {
        None | Some("json") => false,
        Some("yaml") => true,
        Some(_) => return Err(ValidationError::single("format", "must be json or yaml").into()),
    };
    let report = report(&state).await;
    if !yaml {
        return Ok(Reply::ok(report).into_response());
    }
    #[derive(Serialize)]
    struct Root<'a> {
        integration_status: &'a StatusReport,
    }
    let text = serde_norway::to_string(&Root { integration_status: &report })
        .map_err(|e| ApiError::Internal(format!("rendering the status as YAML failed: {e}").into()))?;
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
    Ok(response)
}

/// Builds the report; a failing database is reported in it, not as an error.
pub async fn report(state: &ApiState) -> StatusReport {
    let performance = state.recent_requests().performance();
    let mut blockers = Vec::new();
    let surveyed = match state.store().ping().await {
        Ok(()) => survey(state).await,
        Err(error) => Err(error),
    };
    let surveyed = match surveyed {
        Ok(surveys) => sources(state).await.map(|sources| (surveys, sources)),
        Err(error) => Err(error),
    };
    let (database, external_services, sources) = match surveyed {
        Ok((surveys, sources)) => {
            let now = now_millis();
            for survey in &surveys {
                blockers.extend(survey.blockers(now));
            }
            blockers.extend(sources.iter().filter_map(SourceStatus::blocker));
            ("migrations_complete", surveys.iter().map(|s| s.service(now)).collect(), sources)
        }
        Err(error) => {
            tracing::warn!(%error, "the status report could not read the database");
            blockers.push(Blocker {
                kind: "database_error".into(),
                destination_id: None,
                source_id: None,
                reason: format!("the database is not ready: {error}"),
            });
            ("unavailable", Vec::new(), Vec::new())
        }
    };
    StatusReport {
        api: "deployed".into(),
        database: database.into(),
        external_services,
        performance,
        sources,
        blockers,
    }
}

/// Every source, in creation order, with this node's activity for it.
async fn sources(state: &ApiState) -> StoreResult<Vec<SourceStatus>> {
    let mut activity = state.source_intake().activity();
    let mut pulls = state.control().pull_sources().status();
    let mut all = Vec::new();
    for page in 1.. {
        let listing =
            state.store().list_sources(ListRequest::Page { page, per_page: DESTINATIONS_PER_PAGE }).await?;
        let last_page = listing.items.len() < DESTINATIONS_PER_PAGE as usize;
        for source in listing.items {
            let activity = activity.remove(&source.id).unwrap_or_default();
            let pull = source.kind.is_pulled().then(|| {
                pulls.remove(&source.id).unwrap_or_else(|| PullStatus {
                    state: if source.enabled { "starting" } else { "disabled" }.to_owned(),
                    ..PullStatus::default()
                })
            });
            let verification =
                source.config.pointer("/verification/type").and_then(|t| t.as_str()).map(str::to_owned);
            all.push(SourceStatus {
                source_id: source.id.to_string(),
                name: source.name,
                kind: source.kind.as_str().to_owned(),
                enabled: source.enabled,
                verification,
                last_request_at: activity.last_request_at.map(time::format_rfc3339),
                activity,
                last_batch_at: pull.as_ref().and_then(|p| p.last_batch_at).map(time::format_rfc3339),
                pull,
            });
        }
        if last_page {
            break;
        }
    }
    Ok(all)
}

impl SourceStatus {
    fn blocker(&self) -> Option<Blocker> {
        if let Some(pull) = self.pull.as_ref().filter(|p| self.enabled && p.failing) {
            return Some(Blocker {
                kind: "source_failing".into(),
                destination_id: None,
                source_id: Some(self.source_id.clone()),
                reason: format!(
                    "the last {} attempts to read {} failed: {}",
                    PULL_FAILING_AFTER,
                    self.name,
                    pull.last_error.as_deref().unwrap_or("unknown error"),
                ),
            });
        }
        (self.enabled && self.activity.failing).then(|| Blocker {
            kind: "source_failing".into(),
            destination_id: None,
            source_id: Some(self.source_id.clone()),
            reason: format!(
                "the last {} webhooks to {} failed verification ({}); check the secret shared with the provider",
                FAILING_AFTER,
                self.name,
                self.activity.last_rejection.as_deref().unwrap_or("refused"),
            ),
        })
    }
}

/// What the store says about one destination now (the status report and the metrics' gauges).
pub struct DestinationSurvey {
    pub destination: Destination,
    pub health: DestinationHealth,
    pub pending: u64,
    pub dead: u64,
    pub oldest_pending_at: Option<Millis>,
    pub ever_succeeded: bool,
}

/// Surveys every destination, in creation order: the destinations page by page, and the
/// deliveries and flow records of all of them in a few reads, however many there are.
pub async fn survey(state: &ApiState) -> StoreResult<Vec<DestinationSurvey>> {
    let store = state.store();
    let now = now_millis();
    let tallies = store.delivery_tallies().await?;
    let mut flows: HashMap<DestinationId, DestinationFlow> = store
        .destination_flows()
        .await?
        .into_iter()
        .map(|flow| (flow.destination_id.clone(), flow))
        .collect();
    let mut surveys = Vec::new();
    for page in 1.. {
        let request = ListRequest::Page { page, per_page: DESTINATIONS_PER_PAGE };
        let listing = store.list_destinations(request).await?;
        let last_page = listing.items.len() < DESTINATIONS_PER_PAGE as usize;
        for destination in listing.items {
            let tally = tallies.get(&destination.id).copied().unwrap_or_default();
            let flow = flows.remove(&destination.id);
            surveys.push(survey_one(destination, tally, flow, now));
        }
        if last_page {
            break;
        }
    }
    Ok(surveys)
}

fn survey_one(
    destination: Destination,
    tally: DeliveryTally,
    flow: Option<DestinationFlow>,
    now: Millis,
) -> DestinationSurvey {
    let health =
        DestinationHealth::of(destination.id.clone(), flow.as_ref(), &destination.circuit_breaker, now);
    let in_window_success = health.success_rate.is_some_and(|rate| rate > 0.0);
    DestinationSurvey {
        pending: tally.pending,
        oldest_pending_at: tally.oldest_pending_at,
        dead: tally.dead,
        ever_succeeded: tally.ever_succeeded || in_window_success,
        health,
        destination,
    }
}

impl DestinationSurvey {
    fn service(&self, now: Millis) -> ExternalService {
        let state = match (self.ever_succeeded, self.health.attempts > 0) {
            (false, _) => "configured",
            (true, false) => "integrated",
            (true, true) => "monitoring",
        };
        let destination = &self.destination;
        ExternalService {
            destination_id: destination.id.to_string(),
            name: destination.name.clone(),
            kind: destination.kind.as_str().to_owned(),
            state: state.to_owned(),
            enabled: destination.enabled,
            circuit: self.health.circuit.state,
            circuit_reason: self.health.circuit.reason.clone(),
            success_rate: self.health.success_rate,
            pending: self.pending,
            dead: self.dead,
            oldest_pending_ms: self.oldest_pending_at.map(|at| (now - at).max(0) as u64),
        }
    }

    fn blockers(&self, now: Millis) -> Vec<Blocker> {
        let id = self.destination.id.to_string();
        let name = &self.destination.name;
        let blocker = |kind: &str, reason: String| Blocker {
            kind: kind.to_owned(),
            destination_id: Some(id.clone()),
            source_id: None,
            reason,
        };
        let mut blockers = Vec::new();
        let circuit = &self.health.circuit;
        if circuit.state != CircuitState::Closed {
            let since = circuit.opened_at.map(time::format_rfc3339).unwrap_or_else(|| "recently".into());
            let why = circuit.reason.as_deref().unwrap_or("failures");
            let state = if circuit.state == CircuitState::Open { "open" } else { "half-open (probing)" };
            blockers.push(blocker(
                "circuit_open",
                format!("the circuit of {name} is {state} since {since}: {why}; its deliveries wait"),
            ));
        }
        if self.dead > 0 {
            blockers.push(blocker(
                "dead_letters",
                format!(
                    "{} dead letter(s) for {name}; fix the cause, then POST /v1/dead-letters/replay",
                    self.dead
                ),
            ));
        }
        if !self.destination.enabled && self.pending > 0 {
            blockers.push(blocker(
                "destination_paused",
                format!("{name} is paused with {} pending deliveries; resume it to send them", self.pending),
            ));
        }
        if let Some(oldest) = self.oldest_pending_at.filter(|at| now - at > STALLED_AFTER_MS) {
            blockers.push(blocker(
                "stalled_backlog",
                format!(
                    "the oldest of {} pending deliveries for {name} waits since {}",
                    self.pending,
                    time::format_rfc3339(oldest)
                ),
            ));
        }
        blockers
    }
}
