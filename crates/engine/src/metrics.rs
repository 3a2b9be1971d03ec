//! Prometheus metrics of one node.
//!
//! Every application owns its recorder (never the process-global one), so two applications in
//! one process (tests) keep separate counts; the API renders it at `GET /metrics`. Counters and
//! histograms are recorded where things happen; the gauges that describe the store (backlog,
//! circuits, pool) are set at scrape time from what the store says then, so they are exact.
//!
//! Label sets stay bounded: routes are templates (`/v1/events/{id}`), destinations are ids of
//! configured destinations, and event types are capped at [`MAX_EVENT_TYPE_LABELS`] distinct
//! values (the rest are counted under `other`), so a publisher inventing types cannot grow the
//! series without bound.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use switchyard_core::delivery::{AttemptOutcome, NextStep};

use crate::shutdown::Shutdown;

/// How often histogram samples are folded into their buckets: the recorder keeps every sample
/// until then, so without a scrape they would pile up.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Distinct `event_type` label values before new types are counted as `other`.
pub const MAX_EVENT_TYPE_LABELS: usize = 200;
/// The `event_type` label of types past the cap.
pub const OTHER_EVENT_TYPE: &str = "other";

/// Bucket bounds (seconds) of every duration histogram: 1 ms to 60 s.
const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Usage of one database connection pool, read at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    /// Which pool (`writer`, `reader`, …).
    pub pool: &'static str,
    /// Open connections.
    pub size: u32,
    /// Open connections not lent out.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

type PoolProbe = Arc<dyn Fn() -> Vec<PoolUsage> + Send + Sync>;

/// One circuit breaker's state, for the one-hot `switchyard_circuit_state` gauge.
pub const CIRCUIT_STATES: [&str; 3] = ["closed", "half_open", "open"];

/// What the scrape-time gauges report about one destination.
#[derive(Debug, Clone)]
pub struct DestinationGauges<'a> {
    pub destination: &'a str,
    pub pending: u64,
    pub dead: u64,
    /// One of [`CIRCUIT_STATES`].
    pub circuit: &'a str,
}

/// The metrics of one application; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

// The series recorded per request and per delivery are registered once and their handles
// kept: registering one builds its key (a string per label) and looks it up in the recorder's
// registry, on every call.
struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `switchyard_events_ingested_total` of each event type given a label of its own.
    event_types: Mutex<HashMap<String, Counter>>,
    /// The same of every type past the cap.
    other_event_types: OnceLock<Counter>,
    requests: Mutex<RequestsByRoute>,
    /// The series of delivery attempts, by destination.
    deliveries: Mutex<HashMap<String, Arc<DeliverySeries>>>,
    /// The destinations the last scrape set gauges for.
    destinations: Mutex<HashSet<String>>,
    pool_probe: OnceLock<PoolProbe>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(DURATION_BUCKETS)
            .expect("the duration buckets are a non-empty constant")
            .build_recorder();
        let handle = recorder.handle();
        let metrics = Self(Arc::new(Inner {
            recorder,
            handle,
            event_types: Mutex::default(),
            other_event_types: OnceLock::new(),
            requests: Mutex::default(),
            deliveries: Mutex::default(),
            destinations: Mutex::default(),
            pool_probe: OnceLock::new(),
        }));
        metrics.describe();
        metrics
    }

    /// Where the database pool usage comes from (set once, by the binary that owns the pools).
    pub fn set_pool_probe(&self, probe: impl Fn() -> Vec<PoolUsage> + Send + Sync + 'static) {
        let _ = self.0.pool_probe.set(Arc::new(probe));
    }

    /// Folds histogram samples into their buckets every few seconds until `shutdown`, so memory
    /// stays bounded whether or not anyone scrapes.
    pub async fn run_upkeep(self, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.requested() => return,
                _ = tokio::time::sleep(UPKEEP_EVERY) => self.0.handle.run_upkeep(),
            }
        }
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.0.handle.render()
    }

    fn with<T>(&self, record: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.0.recorder, record)
    }

    fn describe(&self) {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        self.with(|| {
            describe_counter!(
                "switchyard_http_requests_total",
                "HTTP requests answered, by route template and status"
            );
            describe_histogram!(
                "switchyard_http_request_duration_seconds",
                metrics::Unit::Seconds,
                "Time to answer HTTP requests, by route template and status"
            );
            describe_counter!(
                "switchyard_events_ingested_total",
                "Events stored (duplicates excluded), by type"
            );
            describe_counter!(
                "switchyard_source_requests_total",
                "Webhook requests to sources, by source and outcome (accepted, duplicate, unauthorized, invalid, rate_limited, failed)"
            );
            describe_counter!(
                "switchyard_source_events_total",
                "Messages read from pull sources (outbox, nats, amqp), by source and outcome (accepted, duplicate, invalid)"
            );
            describe_gauge!(
                "switchyard_source_relay_lag_seconds",
                "How long the oldest row of an outbox source's last batch waited to be relayed"
            );
            describe_counter!(
                "switchyard_deliveries_total",
                "Deliveries settled, by destination and outcome"
            );
            describe_counter!(
                "switchyard_deliveries_taken_total",
                "Deliveries the dispatcher took to run, by path: fast (leased at ingest) or claim"
            );
            describe_counter!(
                "switchyard_delivery_attempts_total",
                "Delivery attempts, by destination and outcome"
            );
            describe_histogram!(
                "switchyard_delivery_attempt_duration_seconds",
                metrics::Unit::Seconds,
                "Duration of delivery attempts, by destination"
            );
            describe_histogram!(
                "switchyard_delivery_latency_seconds",
                metrics::Unit::Seconds,
                "Time from ingest to a successful delivery, by destination"
            );
            describe_gauge!("switchyard_deliveries_pending", "Deliveries waiting to be sent, by destination");
            describe_gauge!("switchyard_deliveries_dead", "Dead-lettered deliveries, by destination");
            describe_gauge!(
                "switchyard_circuit_state",
                "1 for the current circuit breaker state of a destination"
            );
            describe_gauge!("switchyard_db_pool_connections", "Open database connections, by pool and state");
            describe_gauge!("switchyard_db_pool_max_connections", "The connection limit of each pool");
        });
    }

    /// One answered HTTP request; `route` is the matched template (or `unmatched`).
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let known = lock(&self.0.requests)
            .get(route)
            .and_then(|by_method| by_method.get(method))
            .and_then(|by_status| by_status.get(&status))
            .cloned();
        let series = known.unwrap_or_else(|| {
            let series = self.request_series(method, route, status);
            lock(&self.0.requests)
                .entry(route.to_owned())
                .or_default()
                .entry(method.to_owned())
                .or_default()
                .insert(status, series.clone());
            series
        });
        series.count.increment(1);
        series.duration.record(elapsed.as_secs_f64());
    }

    fn request_series(&self, method: &str, route: &str, status: u16) -> RequestSeries {
        let labels =
            [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
        self.with(|| RequestSeries {
            count: counter!("switchyard_http_requests_total", &labels),
            duration: histogram!("switchyard_http_request_duration_seconds", &labels),
        })
    }

    /// One newly stored event.
    pub fn event_ingested(&self, event_type: &str) {
        self.event_type_counter(event_type).increment(1);
    }

    /// The counter of `event_type`, or of `other` once [`MAX_EVENT_TYPE_LABELS`] types have one.
    fn event_type_counter(&self, event_type: &str) -> Counter {
        let mut seen = lock(&self.0.event_types);
        if let Some(counter) = seen.get(event_type) {
            return counter.clone();
        }
        if seen.len() < MAX_EVENT_TYPE_LABELS {
            let label = event_type.to_owned();
            let counter =
                self.with(|| counter!("switchyard_events_ingested_total", "event_type" => label.clone()));
            seen.insert(label, counter.clone());
            return counter;
        }
        self.0
            .other_event_types
            .get_or_init(|| {
                self.with(|| counter!("switchyard_events_ingested_total", "event_type" => OTHER_EVENT_TYPE))
            })
            .clone()
    }

    /// One webhook request to an existing source, by what it came to.
    pub fn source_request(&self, source: &str, outcome: &'static str) {
        let labels = [("source", source.to_owned()), ("outcome", outcome.to_owned())];
        self.with(|| counter!("switchyard_source_requests_total", &labels).increment(1));
    }

    /// `count` messages a pull source read, by what they came to (`accepted`, `duplicate`,
    /// `invalid`).
    pub fn source_events(&self, source: &str, outcome: &'static str, count: u64) {
        if count > 0 {
            let labels = [("source", source.to_owned()), ("outcome", outcome.to_owned())];
            self.with(|| counter!("switchyard_source_events_total", &labels).increment(count));
        }
    }

    /// How long the oldest row of an outbox source's last batch waited to be relayed.
    pub fn source_lag(&self, source: &str, lag_ms: i64) {
        let labels = [("source", source.to_owned())];
        self.with(|| gauge!("switchyard_source_relay_lag_seconds", &labels).set(lag_ms as f64 / 1_000.0));
    }

    /// `count` deliveries taken by the dispatcher to run: `path` is `fast` (leased at their
    /// ingest by this node) or `claim`.
    pub fn deliveries_taken(&self, path: &'static str, count: usize) {
        if count > 0 {
            self.with(|| {
                counter!("switchyard_deliveries_taken_total", "path" => path).increment(count as u64)
            });
        }
    }

    /// One recorded attempt and, when it settled the delivery, the settlement. `ingest_latency`
    /// is the time from the event's receipt to now, reported for successes.
    pub fn attempt_recorded(
        &self,
        destination: &str,
        outcome: AttemptOutcome,
        attempt_duration: Duration,
        next: NextStep,
        ingest_latency: Option<Duration>,
    ) {
        let series = self.delivery_series(destination);
        series.attempts(self, outcome).increment(1);
        if outcome != AttemptOutcome::Filtered {
            series.attempt_duration(self).record(attempt_duration.as_secs_f64());
        }
        let settled = match next {
            NextStep::Succeeded => Some(Settlement::Succeeded),
            NextStep::Dead => Some(Settlement::Dead),
            NextStep::Filtered => Some(Settlement::Filtered),
            NextStep::RetryAt(_) => None,
        };
        if let Some(settled) = settled {
            series.settled(self, settled).increment(1);
        }
        if let (NextStep::Succeeded, Some(latency)) = (next, ingest_latency) {
            series.latency(self).record(latency.as_secs_f64());
        }
    }

    fn delivery_series(&self, destination: &str) -> Arc<DeliverySeries> {
        let mut all = lock(&self.0.deliveries);
        if let Some(series) = all.get(destination) {
            return Arc::clone(series);
        }
        let series = Arc::new(DeliverySeries::new(destination));
        all.insert(destination.to_owned(), Arc::clone(&series));
        series
    }

    /// Sets the scrape-time gauges of every destination there is. The recorder cannot drop a
    /// series, so those of a destination deleted since the last call are set to 0 (no circuit
    /// state is current) once and then left alone: a deleted destination never reports an
    /// open circuit or a backlog.
    pub fn set_destinations(&self, all: &[DestinationGauges<'_>]) {
        let mut known = lock(&self.0.destinations);
        let now: HashSet<String> = all.iter().map(|g| g.destination.to_owned()).collect();
        for gone in known.difference(&now) {
            self.set_destination(&DestinationGauges { destination: gone, pending: 0, dead: 0, circuit: "" });
        }
        for gauges in all {
            self.set_destination(gauges);
        }
        *known = now;
    }

    /// Sets the scrape-time gauges of one destination; a `circuit` not in [`CIRCUIT_STATES`]
    /// sets every state to 0.
    fn set_destination(&self, gauges: &DestinationGauges<'_>) {
        let destination = gauges.destination.to_owned();
        self.with(|| {
            gauge!("switchyard_deliveries_pending", "destination" => destination.clone())
                .set(gauges.pending as f64);
            gauge!("switchyard_deliveries_dead", "destination" => destination.clone())
                .set(gauges.dead as f64);
            for state in CIRCUIT_STATES {
                let on = if state == gauges.circuit { 1.0 } else { 0.0 };
                gauge!("switchyard_circuit_state", "destination" => destination.clone(), "state" => state)
                    .set(on);
            }
        });
    }

    /// Reads the pool probe into its gauges.
    pub fn refresh_pools(&self) {
        let Some(probe) = self.0.pool_probe.get() else { return };
        let pools = probe();
        self.with(|| {
            for usage in pools {
                let busy = usage.size.saturating_sub(usage.idle);
                gauge!("switchyard_db_pool_connections", "pool" => usage.pool, "state" => "idle")
                    .set(f64::from(usage.idle));
                gauge!("switchyard_db_pool_connections", "pool" => usage.pool, "state" => "in_use")
                    .set(f64::from(busy));
                gauge!("switchyard_db_pool_max_connections", "pool" => usage.pool).set(f64::from(usage.max));
            }
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change to these maps is one insert: a panic elsewhere leaves none half-made.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The series of answered requests, by route, method and status.
type RequestsByRoute = HashMap<String, HashMap<String, HashMap<u16, RequestSeries>>>;

#[derive(Clone)]
struct RequestSeries {
    count: Counter,
    duration: Histogram,
}

/// How an attempt settled its delivery, for `switchyard_deliveries_total`.
#[derive(Clone, Copy)]
enum Settlement {
    Succeeded,
    Dead,
    Filtered,
}

impl Settlement {
    const ALL: [Self; 3] = [Self::Succeeded, Self::Dead, Self::Filtered];

    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Filtered => "filtered",
        }
    }
}

/// Attempt outcomes, each a slot of [`DeliverySeries::attempts`].
const OUTCOMES: usize = 4;

/// The series of one destination's attempts, each registered the first time it is recorded,
/// so `/metrics` shows only what happened.
struct DeliverySeries {
    destination: String,
    attempts: [OnceLock<Counter>; OUTCOMES],
    attempt_duration: OnceLock<Histogram>,
    settled: [OnceLock<Counter>; Settlement::ALL.len()],
    latency: OnceLock<Histogram>,
}

impl DeliverySeries {
    fn new(destination: &str) -> Self {
        Self {
            destination: destination.to_owned(),
            attempts: Default::default(),
            attempt_duration: OnceLock::new(),
            settled: Default::default(),
            latency: OnceLock::new(),
        }
    }

    fn attempts(&self, metrics: &Metrics, outcome: AttemptOutcome) -> &Counter {
        let slot = match outcome {
            AttemptOutcome::Succeeded => 0,
            AttemptOutcome::Retryable => 1,
            AttemptOutcome::Permanent => 2,
            AttemptOutcome::Filtered => 3,
        };
        self.by_outcome(&self.attempts[slot], metrics, "switchyard_delivery_attempts_total", outcome.as_str())
    }

    fn settled(&self, metrics: &Metrics, settled: Settlement) -> &Counter {
        self.by_outcome(
            &self.settled[settled as usize],
            metrics,
            "switchyard_deliveries_total",
            settled.as_str(),
        )
    }

    /// The counter `name` of this destination and `outcome`, kept in `slot`.
    fn by_outcome<'s>(
        &self,
        slot: &'s OnceLock<Counter>,
        metrics: &Metrics,
        name: &'static str,
        outcome: &'static str,
    ) -> &'s Counter {
        slot.get_or_init(|| {
            metrics.with(|| counter!(name, "destination" => self.destination.clone(), "outcome" => outcome))
        })
    }

    fn attempt_duration(&self, metrics: &Metrics) -> &Histogram {
        self.attempt_duration.get_or_init(|| {
            metrics.with(|| {
                histogram!("switchyard_delivery_attempt_duration_seconds", "destination" => self.destination.clone())
            })
        })
    }

    fn latency(&self, metrics: &Metrics) -> &Histogram {
        self.latency.get_or_init(|| {
            metrics.with(|| {
                histogram!("switchyard_delivery_latency_seconds", "destination" => self.destination.clone())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_labels_are_capped() {
        let metrics = Metrics::new();
        for n in 0..MAX_EVENT_TYPE_LABELS {
            metrics.event_ingested(&format!("t.n{n}"));
        }
        metrics.event_ingested("t.one_too_many");
        metrics.event_ingested("t.two_too_many");
        metrics.event_ingested("t.n0");
        let text = metrics.render();
        assert!(
            text.contains(&format!(
                "switchyard_events_ingested_total{{event_type=\"{OTHER_EVENT_TYPE}\"}} 2"
            ))
        );
        assert!(!text.contains("t.one_too_many"), "a type past the cap has no label of its own");
        assert!(
            text.contains("switchyard_events_ingested_total{event_type=\"t.n0\"} 2"),
            "a type seen before keeps its label"
        );
        assert!(text.contains(&format!("event_type=\"t.n{}\"}} 1", MAX_EVENT_TYPE_LABELS - 1)));
    }

    #[test]
    fn delivery_series_show_only_what_happened_and_count_every_attempt() {
        let metrics = Metrics::new();
        let second = Duration::from_secs(1);
        metrics.attempt_recorded("d1", AttemptOutcome::Retryable, second, NextStep::RetryAt(5), None);
        metrics.attempt_recorded("d1", AttemptOutcome::Succeeded, second, NextStep::Succeeded, Some(second));
        metrics.attempt_recorded("d1", AttemptOutcome::Succeeded, second, NextStep::Succeeded, Some(second));
        metrics.attempt_recorded("d2", AttemptOutcome::Filtered, second, NextStep::Filtered, None);
        let text = metrics.render();
        for line in [
            "switchyard_delivery_attempts_total{destination=\"d1\",outcome=\"retryable\"} 1",
            "switchyard_delivery_attempts_total{destination=\"d1\",outcome=\"succeeded\"} 2",
            "switchyard_deliveries_total{destination=\"d1\",outcome=\"succeeded\"} 2",
            "switchyard_delivery_latency_seconds_count{destination=\"d1\"} 2",
            "switchyard_delivery_attempt_duration_seconds_count{destination=\"d1\"} 3",
            "switchyard_deliveries_total{destination=\"d2\",outcome=\"filtered\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("outcome=\"permanent\""), "an outcome never recorded has no series");
        assert!(!text.contains("outcome=\"dead\""));
        assert!(!text.contains("switchyard_delivery_attempt_duration_seconds_count{destination=\"d2\"}"));
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let metrics = Metrics::new();
        metrics.http_request("POST", "/v1/events", 201, Duration::from_millis(2));
        metrics.http_request("POST", "/v1/events", 201, Duration::from_millis(3));
        metrics.http_request("POST", "/v1/events", 422, Duration::from_millis(1));
        metrics.http_request("GET", "/v1/events", 200, Duration::from_millis(1));
        let text = metrics.render();
        for line in [
            "switchyard_http_requests_total{method=\"POST\",route=\"/v1/events\",status=\"201\"} 2",
            "switchyard_http_requests_total{method=\"POST\",route=\"/v1/events\",status=\"422\"} 1",
            "switchyard_http_requests_total{method=\"GET\",route=\"/v1/events\",status=\"200\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn two_applications_keep_separate_counts() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.event_ingested("order.created");
        assert!(a.render().contains("switchyard_events_ingested_total{event_type=\"order.created\"} 1"));
        assert!(!b.render().contains("order.created"));
    }
}
