//! Rows as the database holds them, and their conversion to and from the domain types. Kept
//! free of any one driver so both backends decode the same way; a value that does not decode
//! is an error, never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use switchyard_core::api_key::{ApiKey, Role};
use switchyard_core::delivery::{Attempt, AttemptOutcome, Delivery, DeliveryStatus};
use switchyard_core::destination::{Destination, DestinationKind};
use switchyard_core::event::{Event, EventId, EventMetadata, EventSource, EventType, NewEvent, PublishedBy};
use switchyard_core::event_type::EventTypeDefinition;
use switchyard_core::id::{ApiKeyId, DeliveryId, DestinationId, SubscriptionId};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::store::{IdempotencyClaim, StoreError, StoreResult, StoredResponse};
use switchyard_core::subscription::Subscription;

use switchyard_core::audit::{AuditEntry, AuditEntryId, AuditOutcome, AuditResource};

use crate::error::{out_of_range, sealed, unreadable};
use crate::seal::{Sealer, StoredForm, place};

pub mod flow;
pub mod sources;

/// Where a destination's secrets are kept, sealed.
pub const DESTINATION_SECRETS: &str = "destinations.secrets";
/// Where a response kept for an `Idempotency-Key` is kept, sealed (it may show a secret, such
/// as a rotated signing secret or a new API key's token).
pub const IDEMPOTENCY_BODY: &str = "idempotency_keys.body";

pub fn destination_place(id: &str) -> Vec<u8> {
    place(DESTINATION_SECRETS, &[id])
}

pub fn idempotency_place(scope: &str, key: &str) -> Vec<u8> {
    place(IDEMPOTENCY_BODY, &[scope, key])
}

/// The sealed text of a destination's secrets.
pub fn seal_secrets(sealer: &Sealer, id: &str, secrets: &Map<String, Value>) -> StoreResult<String> {
    seal_map(sealer, DESTINATION_SECRETS, &destination_place(id), secrets)
}

/// The sealed text of a map of secrets kept in `column`, bound to its place `at`.
fn seal_map(
    sealer: &Sealer,
    column: &'static str,
    at: &[u8],
    secrets: &Map<String, Value>,
) -> StoreResult<String> {
    let json = to_json(column, secrets)?;
    sealer.seal(at, json.as_bytes()).map_err(sealed(column))
}

/// A destination's secrets from their stored text: sealed, or plaintext written before sealing
/// existed (sealed at the next start).
pub fn open_secrets(sealer: &Sealer, id: &str, stored: &str) -> StoreResult<Map<String, Value>> {
    let json = open_stored(sealer, DESTINATION_SECRETS, &destination_place(id), stored.as_bytes())?;
    serde_json::from_slice(&json).map_err(|e| unreadable(DESTINATION_SECRETS, e))
}

pub fn seal_body(sealer: &Sealer, scope: &str, key: &str, body: &[u8]) -> StoreResult<Vec<u8>> {
    let sealed_body = sealer.seal(&idempotency_place(scope, key), body).map_err(sealed(IDEMPOTENCY_BODY))?;
    Ok(sealed_body.into_bytes())
}

/// The plaintext of a stored value: opened when sealed, as stored when written in clear.
pub fn open_stored(sealer: &Sealer, column: &'static str, at: &[u8], stored: &[u8]) -> StoreResult<Vec<u8>> {
    match StoredForm::of(stored) {
        StoredForm::Plaintext => Ok(stored.to_vec()),
        StoredForm::Sealed(_) => sealer.open(at, stored).map_err(sealed(column)),
    }
}

/// The plaintext of a value only ever written sealed: one in clear was not written by the store
/// and is refused, naming the column and never the value.
pub fn open_sealed(sealer: &Sealer, column: &'static str, at: &[u8], stored: &[u8]) -> StoreResult<Vec<u8>> {
    match StoredForm::of(stored) {
        StoredForm::Plaintext => {
            Err(unreadable(column, "a value in clear, where the store writes only sealed values"))
        }
        StoredForm::Sealed(_) => sealer.open(at, stored).map_err(sealed(column)),
    }
}

pub fn to_json<T: Serialize + ?Sized>(column: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| unreadable(column, e))
}

/// The `events.headers` text of `new`: its forwarded request headers as a JSON object, or NULL
/// when it has none.
pub fn headers_json(new: &NewEvent) -> StoreResult<Option<String>> {
    new.metadata.headers.as_ref().map(|headers| to_json("events.headers", headers)).transpose()
}

fn from_json<T: DeserializeOwned>(column: &'static str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| unreadable(column, e))
}

/// The serde name of a unit enum variant (`Ordering::Key` → `key`).
pub fn enum_name<T: Serialize>(column: &'static str, value: &T) -> StoreResult<String> {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => Ok(name),
        Ok(other) => Err(unreadable(column, format!("{other} is not a unit variant"))),
        Err(e) => Err(unreadable(column, e)),
    }
}

fn enum_from_name<T: DeserializeOwned>(column: &'static str, name: String) -> StoreResult<T> {
    serde_json::from_value(Value::String(name)).map_err(|e| unreadable(column, e))
}

pub fn u64_to_i64(field: &'static str, value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| out_of_range(field))
}

fn i64_to<T: TryFrom<i64>>(column: &'static str, value: i64) -> StoreResult<T> {
    T::try_from(value).map_err(|_| unreadable(column, format!("{value} is out of range")))
}

#[derive(sqlx::FromRow)]
pub struct EventRow {
    seq: i64,
    event_id: String,
    event_type: String,
    timestamp: i64,
    payload: String,
    correlation_id: String,
    causation_id: Option<String>,
    traceparent: Option<String>,
    request_id: Option<String>,
    ordering_key: Option<String>,
    source: String,
    received_at: i64,
    published_by: Option<String>,
    content_hash: String,
    headers: Option<String>,
}

impl EventRow {
    /// The row as `SELECT_EVENT` reads it, from a statement run on SQLite's handle.
    pub fn from_direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get("seq")?,
            event_id: row.get("event_id")?,
            event_type: row.get("event_type")?,
            timestamp: row.get("timestamp")?,
            payload: row.get("payload")?,
            correlation_id: row.get("correlation_id")?,
            causation_id: row.get("causation_id")?,
            traceparent: row.get("traceparent")?,
            request_id: row.get("request_id")?,
            ordering_key: row.get("ordering_key")?,
            source: row.get("source")?,
            received_at: row.get("received_at")?,
            published_by: row.get("published_by")?,
            content_hash: row.get("content_hash")?,
            headers: row.get("headers")?,
        })
    }
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(row: EventRow) -> StoreResult<Self> {
        let published_by = PublishedBy::of(row.published_by, row.request_id.as_deref());
        Ok(Event {
            event_id: EventId::from_trusted(row.event_id),
            event_type: EventType::from_trusted(row.event_type),
            timestamp: row.timestamp,
            payload: from_json("events.payload", &row.payload)?,
            metadata: EventMetadata {
                correlation_id: row.correlation_id,
                causation_id: row.causation_id,
                traceparent: row.traceparent,
                request_id: row.request_id,
                headers: row.headers.as_deref().map(|s| from_json("events.headers", s)).transpose()?,
            },
            ordering_key: row.ordering_key,
            source: EventSource::from_trusted(row.source),
            received_at: row.received_at,
            published_by,
            content_hash: row.content_hash,
            seq: row.seq,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct DeliveryRow {
    seq: i64,
    id: String,
    event_id: String,
    subscription_id: String,
    destination_id: String,
    status: String,
    attempt_count: i64,
    unfinished_attempts: i64,
    next_attempt_at: Option<i64>,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    last_error: Option<String>,
    ordering_key: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl DeliveryRow {
    /// The creation order, which keyset cursors and claims sort by but `Delivery` does not
    /// carry.
    pub fn seq(&self) -> i64 {
        self.seq
    }
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> StoreResult<Self> {
        let status = DeliveryStatus::parse(&row.status)
            .ok_or_else(|| unreadable("deliveries.status", format!("unknown status {:?}", row.status)))?;
        Ok(Delivery {
            id: DeliveryId::from_trusted(row.id),
            event_id: EventId::from_trusted(row.event_id),
            subscription_id: SubscriptionId::from_trusted(row.subscription_id),
            destination_id: DestinationId::from_trusted(row.destination_id),
            status,
            attempt_count: i64_to("deliveries.attempt_count", row.attempt_count)?,
            unfinished_attempts: i64_to("deliveries.unfinished_attempts", row.unfinished_attempts)?,
            next_attempt_at: row.next_attempt_at,
            lease_owner: row.lease_owner,
            lease_expires_at: row.lease_expires_at,
            last_error: row.last_error,
            ordering_key: row.ordering_key,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct AttemptRow {
    delivery_id: String,
    number: i64,
    started_at: i64,
    duration_ms: i64,
    outcome: String,
    status_code: Option<i64>,
    error: Option<String>,
    response_body: Option<String>,
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = StoreError;

    fn try_from(row: AttemptRow) -> StoreResult<Self> {
        let outcome = AttemptOutcome::parse(&row.outcome)
            .ok_or_else(|| unreadable("attempts.outcome", format!("unknown outcome {:?}", row.outcome)))?;
        Ok(Attempt {
            delivery_id: DeliveryId::from_trusted(row.delivery_id),
            number: i64_to("attempts.number", row.number)?,
            started_at: row.started_at,
            duration_ms: i64_to("attempts.duration_ms", row.duration_ms)?,
            outcome,
            status_code: row.status_code.map(|code| i64_to("attempts.status_code", code)).transpose()?,
            error: row.error,
            response_body: row.response_body,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct EventTypeRow {
    name: String,
    description: Option<String>,
    schema: Option<String>,
    deprecated: bool,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<EventTypeRow> for EventTypeDefinition {
    type Error = StoreError;

    fn try_from(row: EventTypeRow) -> StoreResult<Self> {
        Ok(EventTypeDefinition {
            name: EventType::from_trusted(row.name),
            description: row.description,
            schema: row.schema.as_deref().map(|s| from_json("event_types.schema", s)).transpose()?,
            deprecated: row.deprecated,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct DestinationRow {
    id: String,
    name: String,
    kind: String,
    config: String,
    secrets: String,
    timeout_ms: i64,
    connect_timeout_ms: i64,
    retry: String,
    rate_limit: Option<String>,
    circuit_breaker: String,
    enabled: bool,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl DestinationRow {
    /// The row as `SELECT_DESTINATION` reads it, from a statement run on SQLite's handle.
    pub fn from_direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            kind: row.get("kind")?,
            config: row.get("config")?,
            secrets: row.get("secrets")?,
            timeout_ms: row.get("timeout_ms")?,
            connect_timeout_ms: row.get("connect_timeout_ms")?,
            retry: row.get("retry")?,
            rate_limit: row.get("rate_limit")?,
            circuit_breaker: row.get("circuit_breaker")?,
            enabled: row.get("enabled")?,
            version: row.get("version")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }

    /// The destination, its secrets opened.
    pub fn decode(self, sealer: &Sealer) -> StoreResult<Destination> {
        let row = self;
        let kind = DestinationKind::parse(&row.kind)
            .ok_or_else(|| unreadable("destinations.kind", format!("unknown kind {:?}", row.kind)))?;
        let secrets = open_secrets(sealer, &row.id, &row.secrets)?;
        Ok(Destination {
            id: DestinationId::from_trusted(row.id),
            name: row.name,
            kind,
            config: from_json("destinations.config", &row.config)?,
            secrets,
            timeout_ms: i64_to("destinations.timeout_ms", row.timeout_ms)?,
            connect_timeout_ms: i64_to("destinations.connect_timeout_ms", row.connect_timeout_ms)?,
            retry: from_json("destinations.retry", &row.retry)?,
            rate_limit: row
                .rate_limit
                .as_deref()
                .map(|s| from_json("destinations.rate_limit", s))
                .transpose()?,
            circuit_breaker: from_json("destinations.circuit_breaker", &row.circuit_breaker)?,
            enabled: row.enabled,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct SubscriptionRow {
    id: String,
    name: String,
    destination_id: String,
    event_types: String,
    filter: Option<String>,
    transform: Option<String>,
    ordering: String,
    ordering_on_dead: String,
    enabled: bool,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl SubscriptionRow {
    /// The row as the subscription queries read it, from a statement run on SQLite's handle.
    pub fn from_direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            destination_id: row.get("destination_id")?,
            event_types: row.get("event_types")?,
            filter: row.get("filter")?,
            transform: row.get("transform")?,
            ordering: row.get("ordering")?,
            ordering_on_dead: row.get("ordering_on_dead")?,
            enabled: row.get("enabled")?,
            version: row.get("version")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;

    fn try_from(row: SubscriptionRow) -> StoreResult<Self> {
        Ok(Subscription {
            id: SubscriptionId::from_trusted(row.id),
            name: row.name,
            destination_id: DestinationId::from_trusted(row.destination_id),
            event_types: from_json::<Vec<EventTypePattern>>("subscriptions.event_types", &row.event_types)?,
            filter: row.filter,
            transform: row.transform,
            ordering: enum_from_name("subscriptions.ordering", row.ordering)?,
            ordering_on_dead: enum_from_name("subscriptions.ordering_on_dead", row.ordering_on_dead)?,
            enabled: row.enabled,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct ApiKeyRow {
    id: String,
    name: String,
    role: String,
    prefix: String,
    token_hash: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> StoreResult<Self> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| unreadable("api_keys.role", format!("unknown role {:?}", row.role)))?;
        Ok(ApiKey {
            id: ApiKeyId::from_trusted(row.id),
            name: row.name,
            role,
            prefix: row.prefix,
            token_hash: row.token_hash,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct IdempotencyRow {
    request_hash: String,
    status: Option<i64>,
    location: Option<String>,
    body: Option<Vec<u8>>,
}

impl IdempotencyRow {
    /// A record without a status belongs to a request that is still running (or crashed and
    /// has not yet gone stale).
    pub fn into_claim(self, sealer: &Sealer, scope: &str, key: &str) -> StoreResult<IdempotencyClaim> {
        let request_hash = self.request_hash;
        let Some(status) = self.status else {
            return Ok(IdempotencyClaim::InProgress { request_hash });
        };
        let body = match self.body {
            Some(stored) => open_stored(sealer, IDEMPOTENCY_BODY, &idempotency_place(scope, key), &stored)?,
            None => Vec::new(),
        };
        Ok(IdempotencyClaim::Completed {
            request_hash,
            response: StoredResponse {
                status: i64_to("idempotency_keys.status", status)?,
                location: self.location,
                body,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    seq: i64,
    id: String,
    at: i64,
    actor: String,
    role: String,
    action: String,
    method: String,
    route: String,
    resource_type: String,
    resource_id: Option<String>,
    request_id: String,
    status: i64,
    success: bool,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> StoreResult<Self> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| unreadable("audit_log.role", format!("unknown role {:?}", row.role)))?;
        Ok(AuditEntry {
            id: AuditEntryId::from_trusted(row.id),
            at: row.at,
            actor: row.actor,
            role,
            action: row.action,
            method: row.method,
            route: row.route,
            resource: AuditResource { kind: row.resource_type, id: row.resource_id },
            request_id: row.request_id,
            outcome: AuditOutcome { status: i64_to("audit_log.status", row.status)?, success: row.success },
            seq: row.seq,
        })
    }
}

/// Decodes every row, failing on the first that does not decode.
pub fn decode_all<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// An event read by the events stream, with its commit position.
#[derive(sqlx::FromRow)]
pub struct StreamedEventRow {
    pub position: i64,
    #[sqlx(flatten)]
    pub event: EventRow,
}

/// A delivery read by the deliveries stream, with the commit position of its last change.
#[derive(sqlx::FromRow)]
pub struct StreamedDeliveryRow {
    pub position: i64,
    #[sqlx(flatten)]
    pub delivery: DeliveryRow,
}
