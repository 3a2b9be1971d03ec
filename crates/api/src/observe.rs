//! Measures every request: Prometheus counters and histograms by route template, and the
//! last minute of requests this node answered, for the status report's `performance`.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use serde::Serialize;
use switchyard_core::circuit::{OutcomeWindow, Signal};
use switchyard_core::time::now_millis;
use utoipa::ToSchema;

use crate::ApiState;

/// The `route` label of requests that matched no route, so unknown paths add no series.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// How far back `performance` looks.
pub const PERFORMANCE_WINDOW_MS: u64 = 60_000;

/// Counts and latencies of the requests of the last minute (a log-scale histogram in
/// tenth-of-window buckets, so memory stays bounded whatever the rate).
#[derive(Default)]
pub struct RecentRequests(Mutex<OutcomeWindow>);

/// `performance` of the status report: the API's answers over the last minute.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Performance {
    /// Answer latency percentiles (histogram estimates, within about 10 %); null without
    /// requests.
    pub latency_ms: Percentiles,
    /// Requests answered per second (req/s), averaged over the window.
    pub throughput: f64,
    /// Requests answered in the window.
    pub requests: u64,
    pub window_ms: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Percentiles {
    pub p50: Option<u64>,
    pub p99: Option<u64>,
}

impl RecentRequests {
    fn record(&self, server_error: bool, duration_ms: u64) {
        let signal = if server_error { Signal::Failure } else { Signal::Success };
        let mut window = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        window.record(PERFORMANCE_WINDOW_MS, signal, duration_ms, now_millis());
    }

    pub fn performance(&self) -> Performance {
        let now = now_millis();
        let window = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let requests = window.totals(PERFORMANCE_WINDOW_MS, now).attempts();
        let throughput = requests as f64 * 1000.0 / PERFORMANCE_WINDOW_MS as f64;
        Performance {
            latency_ms: Percentiles {
                p50: window.latency_quantile(PERFORMANCE_WINDOW_MS, now, 0.5),
                p99: window.latency_quantile(PERFORMANCE_WINDOW_MS, now, 0.99),
            },
            throughput: (throughput * 100.0).round() / 100.0,
            requests,
            window_ms: PERFORMANCE_WINDOW_MS,
        }
    }
}

/// The `route` label of a template: path parameters as `:name` (`/v1/events/:event_id`), so
/// label values carry no braces, which some text-format readers split on.
pub fn route_label(template: &str) -> String {
    template.replace("{*", "*").replace('{', ":").replace('}', "")
}

/// The `method` label of a request: the standard methods by name, anything else `other`.
/// The server accepts arbitrary extension methods, and each distinct label value is a new
/// series, so an unauthenticated client must not be able to pick them.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Records the answered request under its route template (`/v1/events/{id}`), never the raw
/// path, so ids cannot grow the label set.
pub(crate) async fn around<F, Fut>(state: &ApiState, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| route_label(path.as_str()))
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = inner(request).await;
    let elapsed = started.elapsed();
    let status = response.status();
    state.control().metrics().http_request(method, &route, status.as_u16(), elapsed);
    state.recent_requests().record(status.is_server_error(), elapsed.as_millis() as u64);
    response
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::{method_label, route_label};

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"FOO1").unwrap()), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }

    #[test]
    fn route_labels_name_parameters_with_a_colon() {
        assert_eq!(route_label("/v1/events/{event_id}/trace"), "/v1/events/:event_id/trace");
        assert_eq!(route_label("/docs/{*rest}"), "/docs/*rest");
        assert_eq!(route_label("/v1/events"), "/v1/events");
    }
}
