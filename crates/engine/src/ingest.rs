//! Ingest: validate events against the contract and the type registry, then store each with
//! its deliveries in one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::event::{EventInput, EventType, IngestContext, IngestOutcome, NewEvent};
use switchyard_core::event_type::EventTypeDefinition;
use switchyard_core::store::{Ingested, Store, StoreError};

use crate::dispatch::Waker;
use crate::fast::FastLane;
use crate::metrics::Metrics;
use crate::recent::{RECENT_FOR, Recent};
use crate::schema::{self, SchemaCache};

/// Events accepted by one batch request.
pub const MAX_BATCH: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result for one item of a batch.
#[derive(Debug)]
// Items live only until the batch's answer is written; boxing the event would cost an
// allocation per item for nothing.
#[allow(clippy::large_enum_variant)]
pub enum BatchItem {
    Stored(IngestOutcome),
    Rejected { event_id: Option<String>, error: ValidationError },
}

pub struct Ingestor {
    store: Arc<dyn Store>,
    schemas: SchemaCache,
    /// Event type definitions (and types that have none) read a moment ago.
    types: Recent<EventType, Option<Arc<EventTypeDefinition>>>,
    require_registered_types: bool,
    waker: Waker,
    metrics: Option<Metrics>,
    /// Where the deliveries an ingest leases to this node go (the fast path), if anywhere.
    fast: Option<FastLane>,
}

impl Ingestor {
    /// `waker` is told whenever new deliveries may have been written.
    pub fn new(store: Arc<dyn Store>, require_registered_types: bool, waker: Waker) -> Self {
        Self {
            store,
            schemas: SchemaCache::default(),
            types: Recent::new(RECENT_FOR),
            require_registered_types,
            waker,
            metrics: None,
            fast: None,
        }
    }

    /// Leases fresh deliveries to this node, up to the room `fast` has, and hands them to its
    /// engine through `fast` instead of leaving them for a claim.
    pub fn with_fast_lane(mut self, fast: FastLane) -> Self {
        self.fast = Some(fast);
        self
    }

    /// Counts stored events in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// To be called after an event type is created, changed or deleted through this node, so
    /// the next event is checked against it; changes made on other nodes are seen within
    /// [`RECENT_FOR`].
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    pub fn forget_event_types(&self) {
        self.types.clear();
    }

    async fn store_events(&self, events: Vec<NewEvent>, now: i64) -> Result<Vec<IngestOutcome>, StoreError> {
        let count = events.len();
        // Places are reserved before the ingest, so what it leases always fits the queue.
        let reservation = self.fast.as_ref().and_then(|fast| fast.reserve(count));
        let (outcomes, routed) = match reservation {
            None => {
                let Ingested { outcomes, routed, .. } = self.store.ingest_routed(events, now, None).await?;
                (outcomes, routed)
            }
            // Once the ingest commits, its leased deliveries must reach the lane even if the
            // caller goes away meanwhile (a client that disconnects, a request past its time):
            // the ingest and the hand-over run on a task of their own.
            Some(reservation) => {
                let store = self.store.clone();
                let stored = tokio::spawn(async move {
                    let lease = reservation.lease();
                    let Ingested { outcomes, routed, leased, leased_subscriptions } =
                        store.ingest_routed(events, now, Some(lease)).await?;
                    reservation.hand_over(count, leased, leased_subscriptions, &outcomes, routed);
                    Ok::<_, StoreError>((outcomes, routed))
                });
                stored.await.map_err(|error| {
                    StoreError::Backend(format!("the ingest task failed: {error}").into())
                })??
            }
        };
        if routed {
            self.waker.wake();
        }
        if let Some(metrics) = &self.metrics {
            for outcome in &outcomes {
                if let IngestOutcome::Created(event) = outcome {
                    metrics.event_ingested(event.event_type.as_str());
                }
            }
        }
        Ok(outcomes)
    }

    pub async fn ingest_one(
        &self,
        input: EventInput,
        ctx: &IngestContext,
    ) -> Result<IngestOutcome, IngestError> {
        let event = input.into_new_event(ctx)?;
        let mut registry = Registry::default();
        self.check_against_registry(&event, &mut registry).await?;
        let mut outcomes = self.store_events(vec![event], ctx.received_at).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Backend("the store answered no outcome for one event".into()).into())
    }

    /// Validates every item on its own and stores the valid ones together in one transaction;
    /// results come back in request order.
    pub async fn ingest_batch(
        &self,
        items: Vec<Value>,
        ctx: &IngestContext,
    ) -> Result<Vec<BatchItem>, StoreError> {
        let mut registry = Registry::default();
        let mut results: Vec<Option<BatchItem>> = Vec::with_capacity(items.len());
        let mut valid: Vec<(usize, NewEvent)> = Vec::new();
        for item in items {
            let claimed_id = item.get("event_id").and_then(Value::as_str).map(str::to_owned);
            let checked = match parse_item(item).and_then(|input| input.into_new_event(ctx)) {
                Ok(event) => match self.check_against_registry(&event, &mut registry).await {
                    Ok(()) => Ok(event),
                    Err(IngestError::Invalid(error)) => Err(error),
                    Err(IngestError::Store(error)) => return Err(error),
                },
                Err(error) => Err(error),
            };
            match checked {
                Ok(event) => {
                    valid.push((results.len(), event));
                    results.push(None);
                }
                Err(error) => results.push(Some(BatchItem::Rejected { event_id: claimed_id, error })),
            }
        }
        let (positions, events): (Vec<usize>, Vec<NewEvent>) = valid.into_iter().unzip();
        let outcomes =
            if events.is_empty() { Vec::new() } else { self.store_events(events, ctx.received_at).await? };
        if outcomes.len() != positions.len() {
            return Err(StoreError::Backend("the store answered a different number of outcomes".into()));
        }
        for (position, outcome) in positions.into_iter().zip(outcomes) {
            results[position] = Some(BatchItem::Stored(outcome));
        }
        Ok(results.into_iter().flatten().collect())
    }

    async fn check_against_registry(
        &self,
        event: &NewEvent,
        registry: &mut Registry,
    ) -> Result<(), IngestError> {
        let definition = registry.lookup(self, &event.event_type).await?;
        let Some(definition) = definition else {
            if self.require_registered_types {
                return Err(ValidationError::single(
                    "event_type",
                    format!("{} is not a registered event type", event.event_type),
                )
                .into());
            }
            return Ok(());
        };
        let Some(schema) = &definition.schema else {
            return Ok(());
        };
        let validator =
            self.schemas.get_or_compile(&definition.name, definition.version, schema).map_err(|_| {
                StoreError::Backend(
                    format!("the stored schema of {} does not compile", definition.name).into(),
                )
            })?;
        let violations = schema::violations(&validator, &event.payload, "/payload");
        if violations.is_empty() { Ok(()) } else { Err(ValidationError(violations).into()) }
    }
}

fn parse_item(item: Value) -> Result<EventInput, ValidationError> {
    if !item.is_object() {
        return Err(ValidationError::single("", "each event must be a JSON object"));
    }
    switchyard_core::json::from_value(item)
}

/// Event type definitions looked up once per request, however many events share a type.
#[derive(Default)]
struct Registry(HashMap<EventType, Option<Arc<EventTypeDefinition>>>);

impl Registry {
    async fn lookup(
        &mut self,
        ingestor: &Ingestor,
        event_type: &EventType,
    ) -> Result<Option<Arc<EventTypeDefinition>>, StoreError> {
        if let Some(found) = self.0.get(event_type) {
            return Ok(found.clone());
        }
        let found = ingestor
            .types
            .get_or_load(
                event_type,
                |_| true,
                || async { Ok(ingestor.store.get_event_type(event_type).await?.map(Arc::new)) },
            )
            .await?;
        self.0.insert(event_type.clone(), found.clone());
        Ok(found)
    }
}
