//! What a subscription makes of an event before it is sent: its jq `filter` decides whether
//! the event goes at all, its `transform` what body goes.
//!
//! Both run on `{"event": <the event as the API shows it>}`. The filter's first output must
//! be exactly `true` for the event to go; `false`, `null`, any other value or no output at all
//! filters it out. The transform's first output is the body; a transform that yields nothing
//! filters the event out too (jq's usual way of dropping, `select(…)`, works in either).
//! A run that fails (an error, a spent budget, an output too large) is `Failed`: the delivery
//! goes dead with the reason, and a replay after the subscription is fixed runs the new
//! version.
//!
//! Programs are compiled once per subscription version and kept; runs happen on threads of
//! their own (`jq::on_jq_thread`), at most one per CPU at a time, so a costly program neither
//! blocks the async runtime nor takes every core.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use switchyard_core::delivery::{Attempt, AttemptOutcome, Delivery};
use switchyard_core::event::Event;
use switchyard_core::id::SubscriptionId;
use switchyard_core::store::{Store, StoreError};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::Millis;
use tokio::sync::Semaphore;

use crate::jq::{JqLimits, JqProgram, JqRunError, on_jq_thread};

/// Subscriptions whose compiled programs are kept; past this the cache starts over.
const MAX_CACHED: usize = 4_096;

/// What to do with one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Shaped {
    /// Send this body.
    Deliver(Value),
    /// Do not send: the filter did not answer `true`, or the transform yielded nothing.
    Filtered,
    /// A program failed; the reason, for the operator.
    Failed(String),
}

/// The compiled programs of one subscription version.
#[derive(Debug)]
struct Programs {
    version: i64,
    filter: Option<Result<JqProgram, String>>,
    transform: Option<Result<JqProgram, String>>,
}

impl Programs {
    fn compile(subscription: &Subscription) -> Self {
        let compile = |source: &Option<String>| {
            source.as_deref().map(|s| JqProgram::compile(s).map_err(|e| e.message().to_owned()))
        };
        Self {
            version: subscription.version,
            filter: compile(&subscription.filter),
            transform: compile(&subscription.transform),
        }
    }

    fn apply(&self, input: &Value, payload: &Value, limits: &JqLimits) -> Shaped {
        let failed = |which: &str, error: JqRunError| Shaped::Failed(format!("the {which} failed: {error}"));
        let stored = |which: &str, error: &str| {
            Shaped::Failed(format!("the stored {which} no longer compiles: {error}"))
        };
        match &self.filter {
            None => {}
            Some(Err(error)) => return stored("filter", error),
            Some(Ok(filter)) => match filter.first_output(input, limits) {
                Ok(Some(Value::Bool(true))) => {}
                Ok(_) => return Shaped::Filtered,
                Err(error) => return failed("filter", error),
            },
        }
        match &self.transform {
            None => Shaped::Deliver(payload.clone()),
            Some(Err(error)) => stored("transform", error),
            Some(Ok(transform)) => match transform.first_output(input, limits) {
                Ok(Some(body)) => Shaped::Deliver(body),
                Ok(None) => Shaped::Filtered,
                Err(error) => failed("transform", error),
            },
        }
    }
}

/// What `delivery`'s subscription makes of `event`; the subscription is read unless `known`.
/// A deleted subscription fails the delivery: what its programs would have done is unknown,
/// and it no longer routes anything.
pub async fn body_for(
    store: &dyn Store,
    shaper: &Shaper,
    delivery: &Delivery,
    known: Option<Arc<Subscription>>,
    event: &Event,
) -> Result<Shaped, StoreError> {
    let subscription = match known {
        Some(subscription) => Some(subscription),
        None => store.get_subscription(&delivery.subscription_id).await?.map(Arc::new),
    };
    Ok(match subscription {
        None => Shaped::Failed("the subscription was deleted".to_owned()),
        Some(subscription) => shaper.shape(&subscription, event).await,
    })
}

/// The record of deciding not to send `delivery`: attempt `number`, outcome `filtered`.
pub fn filtered(delivery: &Delivery, number: u32, started_at: Millis, duration_ms: u64) -> Attempt {
    Attempt {
        delivery_id: delivery.id.clone(),
        number,
        started_at,
        duration_ms,
        outcome: AttemptOutcome::Filtered,
        status_code: None,
        error: None,
        response_body: None,
    }
}

/// Applies subscriptions' programs, keeping them compiled.
pub struct Shaper {
    limits: JqLimits,
    cache: Mutex<HashMap<SubscriptionId, Arc<Programs>>>,
    threads: Arc<Semaphore>,
}

impl Shaper {
    pub fn new(limits: JqLimits) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { limits, cache: Mutex::default(), threads: Arc::new(Semaphore::new(cpus)) }
    }

    /// What `subscription` makes of `event`. Never fails: a failing program is `Failed`.
    pub async fn shape(&self, subscription: &Subscription, event: &Event) -> Shaped {
        if subscription.filter.is_none() && subscription.transform.is_none() {
            return Shaped::Deliver(event.payload.clone());
        }
        let Ok(_slot) = self.threads.clone().acquire_owned().await else {
            return Shaped::Failed("the jq runner is shut down".to_owned());
        };
        let cached = self.cached(subscription);
        let subscription = subscription.clone();
        let input = json!({ "event": event });
        let payload = event.payload.clone();
        let limits = self.limits;
        let answer = on_jq_thread(move || {
            let programs = cached.unwrap_or_else(|| Arc::new(Programs::compile(&subscription)));
            let shaped = programs.apply(&input, &payload, &limits);
            (programs, subscription.id, shaped)
        })
        .await;
        match answer {
            Ok((programs, id, shaped)) => {
                self.keep(id, programs);
                shaped
            }
            Err(error) => Shaped::Failed(format!("the subscription's jq could not run: {error}")),
        }
    }

    fn cached(&self, subscription: &Subscription) -> Option<Arc<Programs>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(&subscription.id).filter(|p| p.version == subscription.version).cloned()
    }

    fn keep(&self, id: SubscriptionId, programs: Arc<Programs>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED && !cache.contains_key(&id) {
            cache.clear();
        }
        cache.insert(id, programs);
    }
}

#[cfg(test)]
mod tests {
    use switchyard_core::event::{EventId, EventMetadata, EventSource, EventType};
    use switchyard_core::id::DestinationId;
    use switchyard_core::subscription::{Ordering, OrderingOnDead};

    use super::*;

    fn subscription(filter: Option<&str>, transform: Option<&str>) -> Subscription {
        Subscription {
            id: SubscriptionId::generate(),
            name: "s".into(),
            destination_id: DestinationId::from_trusted("dst_1"),
            event_types: Vec::new(),
            filter: filter.map(str::to_owned),
            transform: transform.map(str::to_owned),
            ordering: Ordering::None,
            ordering_on_dead: OrderingOnDead::Skip,
            enabled: true,
            version: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn event() -> Event {
        Event {
            event_id: EventId::from_trusted("e-1"),
            event_type: EventType::from_trusted("order.created"),
            timestamp: 1_700_000_000_000,
            payload: json!({"total": 5, "tier": "gold"}),
            metadata: EventMetadata {
                correlation_id: "c-1".into(),
                causation_id: None,
                traceparent: None,
                request_id: None,
                headers: None,
            },
            ordering_key: Some("k".into()),
            source: EventSource::api(),
            received_at: 1_700_000_000_000,
            published_by: None,
            content_hash: String::new(),
            seq: 1,
        }
    }

    async fn shape(filter: Option<&str>, transform: Option<&str>) -> Shaped {
        Shaper::new(JqLimits::default()).shape(&subscription(filter, transform), &event()).await
    }

    #[tokio::test]
    async fn without_programs_the_payload_goes_as_it_is() {
        assert_eq!(shape(None, None).await, Shaped::Deliver(json!({"total": 5, "tier": "gold"})));
    }

    #[tokio::test]
    async fn the_event_is_the_input_and_the_transform_the_body() {
        let shaped = shape(
            None,
            Some(
                "{id: .event.event_id, type: .event.event_type, key: .event.ordering_key, \
                  at: .event.timestamp, source: .event.source, total: .event.payload.total}",
            ),
        )
        .await;
        assert_eq!(
            shaped,
            Shaped::Deliver(json!({"id": "e-1", "type": "order.created", "key": "k",
                                   "at": "2023-11-14T22:13:20.000Z", "source": "api", "total": 5}))
        );
    }

    #[tokio::test]
    async fn only_an_exact_true_lets_the_event_through() {
        assert!(matches!(shape(Some(".event.payload.tier == \"gold\""), None).await, Shaped::Deliver(_)));
        for filter in ["false", "null", "1", "\"true\"", "empty", ".event.payload.tier == \"silver\""] {
            assert_eq!(shape(Some(filter), None).await, Shaped::Filtered, "{filter}");
        }
        assert_eq!(
            shape(Some("true"), Some(".event.payload | select(.total > 10)")).await,
            Shaped::Filtered,
            "a transform that yields nothing filters"
        );
    }

    #[tokio::test]
    async fn failures_name_the_program_and_the_reason() {
        let Shaped::Failed(reason) = shape(Some("error(\"boom\")"), None).await else {
            panic!("a failure");
        };
        assert_eq!(reason, "the filter failed: boom");
        let Shaped::Failed(reason) = shape(None, Some("[range(1e9)]")).await else {
            panic!("a failure");
        };
        assert!(reason.starts_with("the transform failed: it "), "{reason}");
        let Shaped::Failed(reason) = shape(None, Some(".[")).await else {
            panic!("a failure");
        };
        assert!(reason.starts_with("the stored transform no longer compiles: expected"), "{reason}");
    }

    #[tokio::test]
    async fn programs_are_compiled_once_per_version() {
        let shaper = Shaper::new(JqLimits::default());
        let mut sub = subscription(None, Some(".event.payload.total"));
        assert_eq!(shaper.shape(&sub, &event()).await, Shaped::Deliver(json!(5)));
        let first = shaper.cached(&sub).expect("kept");
        assert_eq!(shaper.shape(&sub, &event()).await, Shaped::Deliver(json!(5)));
        assert!(Arc::ptr_eq(&first, &shaper.cached(&sub).expect("kept")), "compiled again");
        sub.version = 2;
        sub.transform = Some(".event.payload.tier".into());
        assert!(shaper.cached(&sub).is_none(), "a new version is not served the old programs");
        assert_eq!(shaper.shape(&sub, &event()).await, Shaped::Deliver(json!("gold")));
    }
}
