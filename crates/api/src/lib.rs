//! The v1 REST API of Switchyard: axum handlers, the envelope, authentication, idempotency and
//! the OpenAPI document generated from the same route definitions.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod deadline;
pub mod envelope;
pub mod error;
pub mod extract;
mod front;
pub mod idempotency;
pub mod jwt;
pub mod limits;
pub mod observe;
mod openapi;
pub mod paging;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod security_headers;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use switchyard_core::api_key::ApiKey;
use switchyard_core::store::{Store, StoreError};
use switchyard_engine::jq::JqLimits;
use switchyard_engine::recent::{RECENT_FOR, Recent};
use switchyard_engine::shutdown::Shutdown;
use switchyard_engine::{Control, Ingestor, SourceIntake};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;

pub use openapi::openapi;

/// What the API needs from the configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest payload of one event, in bytes (as JSON).
    pub max_payload_bytes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Refuse events whose type is not registered.
    pub require_registered_types: bool,
    /// JWT bearer tokens beside API keys; `None` accepts API keys only.
    pub jwt: Option<jwt::JwtSettings>,
    /// Token buckets per principal, sized by role.
    pub rate_limit: rate_limit::RateLimitSettings,
    /// `/metrics` needs a bearer token (any role) rather than being open.
    pub metrics_require_key: bool,
    /// A request not answered this long after its head arrived answers 503 ([`deadline`]).
    pub request_timeout: Duration,
    /// A request body that sends nothing this long is abandoned ([`deadline`]).
    pub body_read_timeout: Duration,
    /// The origin providers reach this hub at (`https://hub.example.com`), for the URLs of
    /// sources; `None`: the request's `Host`.
    pub public_url: Option<String>,
    /// The server speaks HTTPS (the scheme of URLs built from `Host`).
    pub https: bool,
    /// How often a quiet event or delivery stream sends a heartbeat comment.
    pub stream_heartbeat: Duration,
    /// A stream client that takes no frame for this long while frames wait is sent
    /// `event: lagged` and cut off.
    pub stream_lag_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
            max_body_bytes: 1024 * 1024,
            require_registered_types: false,
            jwt: None,
            rate_limit: rate_limit::RateLimitSettings::default(),
            metrics_require_key: false,
            request_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            public_url: None,
            https: false,
            stream_heartbeat: Duration::from_secs(15),
            stream_lag_timeout: Duration::from_secs(10),
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    ingestor: Ingestor,
    source_intake: SourceIntake,
    control: Control,
    settings: ApiSettings,
    recent_requests: observe::RecentRequests,
    /// Active API keys by token hash, read a moment ago.
    api_keys: Recent<String, Option<ApiKey>>,
    /// The server's stop, which ends open streams.
    shutdown: Shutdown,
}

impl ApiState {
    /// `control` reaches the node's delivery engine (wake-ups, retries, replays, tests);
    /// `shutdown` is the server's stop, which ends open streams.
    pub fn new(store: Arc<dyn Store>, control: Control, settings: ApiSettings, shutdown: Shutdown) -> Self {
        let ingestor = Ingestor::new(store.clone(), settings.require_registered_types, control.waker())
            .with_metrics(control.metrics().clone())
            .with_fast_lane(control.fast_lane().clone());
        let source_intake =
            SourceIntake::new(store.clone(), JqLimits::for_payloads(settings.max_payload_bytes))
                .with_metrics(control.metrics().clone())
                .with_operational(control.operational());
        let recent_requests = observe::RecentRequests::default();
        let api_keys = Recent::new(RECENT_FOR);
        Self(Arc::new(Inner {
            store,
            ingestor,
            source_intake,
            control,
            settings,
            recent_requests,
            api_keys,
            shutdown,
        }))
    }

    /// The active API key whose token hashes to `token_hash`; read from the store at most once
    /// in [`RECENT_FOR`], so a key revoked on another node stops working within that time.
    pub async fn active_api_key(&self, token_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.0
            .api_keys
            .get_or_load(&token_hash.to_owned(), Option::is_some, || {
                self.store().find_active_api_key(token_hash)
            })
            .await
    }

    /// To be called after an API key is revoked through this node: it stops working at once.
    pub fn forget_api_keys(&self) {
        self.0.api_keys.clear();
    }

    pub fn control(&self) -> &Control {
        &self.0.control
    }

    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    pub fn ingestor(&self) -> &Ingestor {
        &self.0.ingestor
    }

    /// Webhook sources' intake on this node: compiled sources, rate limits, activity.
    pub fn source_intake(&self) -> &SourceIntake {
        &self.0.source_intake
    }

    pub fn settings(&self) -> &ApiSettings {
        &self.0.settings
    }

    /// The server's stop signal, for work that outlives a request's handler (streams).
    pub fn shutdown(&self) -> Shutdown {
        self.0.shutdown.clone()
    }

    /// The requests this node answered in the last minute.
    pub fn recent_requests(&self) -> &observe::RecentRequests {
        &self.0.recent_requests
    }
}

/// The whole HTTP application: `/v1`, health, `/metrics`, `/openapi.json` and `/docs`.
pub fn router(state: ApiState) -> Router {
    let (v1, _) = openapi::v1_routes().split_for_parts();
    let limiter = Arc::new(rate_limit::RateLimiter::new(&state.settings().rate_limit));
    let guard =
        front::Guard { state: state.clone(), limiter, recorder: audit::AuditRecorder::new(state.clone()) };
    let v1 = v1.route_layer(from_fn_with_state(guard, front::guard));
    // The provider's signature authenticates a webhook: no bearer token, no per-key limit,
    // no audit (it is the data plane), no idempotency keys (event ids dedupe).
    let (webhooks, _) = openapi::webhook_routes().split_for_parts();
    let (health, _) = openapi::health_routes().split_for_parts();
    let (metrics, _) = openapi::metrics_routes().split_for_parts();
    // Outside the API's rate limit either way, so a scraper is never throttled.
    let metrics = if state.settings().metrics_require_key {
        metrics.route_layer(from_fn_with_state(state.clone(), auth::authenticate))
    } else {
        metrics
    };
    Router::new()
        .merge(v1)
        .merge(webhooks)
        .merge(health)
        .merge(metrics)
        .merge(ui::router(state.clone()))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings().max_body_bytes))
        .layer(from_fn(limits::check_headers))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(state.clone(), front::front))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", switchyard_core::error::excerpt(uri.path())))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(format!("a handler panicked: {detail}").into()).into_response()
}
