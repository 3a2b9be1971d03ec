//! The repository traits. Each backend (SQLite; PostgreSQL later) implements all of them; the
//! API and the engine hold an `Arc<dyn Store>` and never learn which backend is behind it.
//!
//! Rules every implementation keeps:
//! - `ingest` writes each new event and one `pending` delivery per subscription that routes it,
//!   in one transaction: either all of a call's writes commit or none do. With a
//!   [`FreshLease`], some of those deliveries are written leased instead, in the same
//!   transaction, as a claim would have leased them.
//! - Updates are optimistic: they name the version they were computed from and fail with
//!   `VersionMismatch` when the stored row has moved on.
//! - Listing by cursor never scans what lies before the cursor.

use async_trait::async_trait;

use crate::api_key::ApiKey;
use crate::audit::{AuditEntry, AuditFilter};
use crate::delivery::Delivery;
use crate::destination::Destination;
use crate::event::{Event, EventFilter, EventId, EventType, IngestOutcome, NewEvent};
use crate::event_type::EventTypeDefinition;
pub use crate::flow::FlowStore;
use crate::id::{ApiKeyId, DestinationId, SourceId, SubscriptionId};
use crate::page::{ListRequest, Listing};
use crate::source::Source;
use crate::stream::{EventStreamFilter, StreamCursor, StreamPage};
use crate::subscription::{Subscription, SubscriptionFilter};
use crate::time::Millis;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such {0}")]
    NotFound(&'static str),
    /// A row with the same key exists already.
    #[error("{0}")]
    Conflict(String),
    /// The row changed since the version the caller read.
    #[error("the stored version is {current}")]
    VersionMismatch { current: i64 },
    /// A referenced row does not exist (e.g. a subscription's destination).
    #[error("{field}: {message}")]
    InvalidReference { field: &'static str, message: String },
    /// The database could not serve the call for now: no connection came in time, a statement
    /// ran past its timeout, the connection was lost, the database stayed busy, or it is out
    /// of space or failing to write its files ([`StorageFailure`]). The same call may succeed
    /// when tried again.
    #[error("the database is unavailable for now: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The database failed, or answered something this code cannot use.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The database could not write for lack of storage: the source of a
/// [`StoreError::Unavailable`] that says so, so that callers can tell it from a busy database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ({detail})")]
pub struct StorageFailure {
    pub kind: StorageFailureKind,
    /// The database's own words.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorageFailureKind {
    /// The disk, or the database's size limit, is full.
    #[error("the database is out of space")]
    OutOfSpace,
    /// Reading or writing the database's files failed.
    #[error("the database could not read or write its files")]
    Io,
}

impl StoreError {
    /// Unavailability for lack of storage.
    pub fn storage(kind: StorageFailureKind, detail: impl Into<String>) -> Self {
        StoreError::Unavailable(Box::new(StorageFailure { kind, detail: detail.into() }))
    }

    /// The storage failure this error reports, if it reports one.
    pub fn storage_failure(&self) -> Option<&StorageFailure> {
        match self {
            StoreError::Unavailable(source) => source.downcast_ref::<StorageFailure>(),
            _ => None,
        }
    }
}

/// What one ingest call stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ingested {
    /// One per event, in the order given.
    pub outcomes: Vec<IngestOutcome>,
    /// Whether the call created deliveries left `pending`: whether the engine has anything
    /// new to claim. Deliveries leased in the call ([`Self::leased`]) do not count.
    pub routed: bool,
    /// The deliveries the call created already leased ([`FreshLease`]), as stored, in
    /// creation order; empty without a lease.
    pub leased: Vec<Delivery>,
    /// The subscription of each delivery in [`Self::leased`], each once, as the call routed by
    /// it.
    pub leased_subscriptions: Vec<Subscription>,
}

/// What recording one attempt did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Whether the caller still held the lease, so the attempt was recorded.
    pub settled: bool,
    /// The change of its destination's circuit this attempt's outcome made, if any.
    pub circuit: Option<crate::flow::CircuitChange>,
}

/// A lease an ingest call gives the deliveries it creates, so the node that ingests runs them
/// without claiming them back: `in_flight`, leased to `owner` until `lease_until` and counted
/// in `unfinished_attempts` exactly as a claim would. At most `max` deliveries are leased;
/// those beyond it, and every delivery of an ordered subscription (whose turn the claim
/// decides), are written `pending` as without a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshLease {
    pub owner: String,
    pub lease_until: Millis,
    pub max: usize,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores the events in order in one transaction, with their deliveries. An id seen before
    /// (in the store or earlier in the same call) yields `Duplicate` when the content hash
    /// matches and `Conflict` otherwise; neither writes anything.
    async fn ingest(&self, events: Vec<NewEvent>, now: Millis) -> StoreResult<Vec<IngestOutcome>> {
        Ok(self.ingest_routed(events, now, None).await?.outcomes)
    }
    /// [`Self::ingest`], also saying whether any delivery was left to claim; with `lease`,
    /// up to `lease.max` of the deliveries of unordered subscriptions are written leased
    /// ([`FreshLease`]) in the same transaction and answered in [`Ingested::leased`].
    async fn ingest_routed(
        &self,
        events: Vec<NewEvent>,
        now: Millis,
        lease: Option<FreshLease>,
    ) -> StoreResult<Ingested>;
    async fn get_event(&self, id: &EventId) -> StoreResult<Option<Event>>;
    /// Events in ingest order.
    async fn list_events(&self, filter: &EventFilter, request: ListRequest) -> StoreResult<Listing<Event>>;
    /// The first `limit` events of the flow `correlation_id`, in ingest order, without their
    /// payloads.
    async fn links_of_flow(
        &self,
        correlation_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<crate::event::EventLink>>;
    async fn deliveries_of_event(&self, id: &EventId) -> StoreResult<Vec<Delivery>>;
    /// Up to `limit` events after `after` in commit order, those matching `filter` answered.
    /// Only rows no later commit can precede are read, so a reader that resumes from the end
    /// of each read sees every event once.
    async fn stream_events(
        &self,
        after: StreamCursor,
        filter: &EventStreamFilter,
        limit: u32,
    ) -> StoreResult<StreamPage<Event>>;
    /// The live end of the events stream: what follows it commits from now on.
    async fn stream_head_events(&self) -> StoreResult<StreamCursor>;
}

#[async_trait]
pub trait EventTypeStore: Send + Sync {
    /// Fails with `Conflict` when the name is taken.
    async fn create_event_type(&self, definition: &EventTypeDefinition) -> StoreResult<()>;
    async fn get_event_type(&self, name: &EventType) -> StoreResult<Option<EventTypeDefinition>>;
    async fn list_event_types(&self, request: ListRequest) -> StoreResult<Listing<EventTypeDefinition>>;
    /// Writes `definition` (whose `version` is ignored) over the row at `expected_version`.
    async fn update_event_type(
        &self,
        definition: &EventTypeDefinition,
        expected_version: i64,
    ) -> StoreResult<EventTypeDefinition>;
    /// Whether a row was deleted.
    async fn delete_event_type(&self, name: &EventType) -> StoreResult<bool>;
}

#[async_trait]
pub trait DestinationStore: Send + Sync {
    async fn create_destination(&self, destination: &Destination) -> StoreResult<()>;
    async fn get_destination(&self, id: &DestinationId) -> StoreResult<Option<Destination>>;
    async fn list_destinations(&self, request: ListRequest) -> StoreResult<Listing<Destination>>;
    async fn update_destination(
        &self,
        destination: &Destination,
        expected_version: i64,
    ) -> StoreResult<Destination>;
    /// Fails with `Conflict` while subscriptions still point at the destination.
    async fn delete_destination(&self, id: &DestinationId) -> StoreResult<bool>;
}

#[async_trait]
pub trait SourceStore: Send + Sync {
    async fn create_source(&self, source: &Source) -> StoreResult<()>;
    async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>>;
    /// Oldest first.
    async fn list_sources(&self, request: ListRequest) -> StoreResult<Listing<Source>>;
    async fn update_source(&self, source: &Source, expected_version: i64) -> StoreResult<Source>;
    async fn delete_source(&self, id: &SourceId) -> StoreResult<bool>;
    /// Takes or renews the lease that lets `owner` alone read the pull source `id` until
    /// `until`: granted when nobody holds it, `owner` does, or the holder's ran out by `now`.
    /// False when another holds it, or there is no such source. Neither `version` nor
    /// `updated_at` changes.
    async fn lease_source(&self, id: &SourceId, owner: &str, now: Millis, until: Millis)
    -> StoreResult<bool>;
    /// Gives the lease up, if `owner` holds it.
    async fn release_source(&self, id: &SourceId, owner: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Fails with `InvalidReference` when the destination does not exist.
    async fn create_subscription(&self, subscription: &Subscription) -> StoreResult<()>;
    async fn get_subscription(&self, id: &SubscriptionId) -> StoreResult<Option<Subscription>>;
    async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<Subscription>>;
    async fn update_subscription(
        &self,
        subscription: &Subscription,
        expected_version: i64,
    ) -> StoreResult<Subscription>;
    async fn delete_subscription(&self, id: &SubscriptionId) -> StoreResult<bool>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// The key with this token hash, unless it is revoked.
    async fn find_active_api_key(&self, token_hash: &str) -> StoreResult<Option<ApiKey>>;
    /// Keys that are not revoked, oldest first.
    async fn list_api_keys(&self, request: ListRequest) -> StoreResult<Listing<ApiKey>>;
    /// Whether an active key was revoked; revoking twice answers `false`.
    async fn revoke_api_key(&self, id: &ApiKeyId, now: Millis) -> StoreResult<bool>;
    async fn count_active_api_keys(&self) -> StoreResult<u64>;
}

/// How long a response kept for an `Idempotency-Key` is replayed, and then kept at most.
pub const IDEMPOTENCY_RETENTION_MS: Millis = 24 * 3_600_000;

/// A response kept for an `Idempotency-Key`, replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is new: the caller runs the request, then completes or releases the key.
    Claimed,
    /// Another request with this key is running.
    InProgress {
        request_hash: String,
    },
    Completed {
        request_hash: String,
        response: StoredResponse,
    },
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` in `scope`. Records created before `stale_before` are forgotten first, and
    /// claims still without a response created before `abandoned_before` (their request was
    /// cut off by a crash), so a key outlives neither its retention nor a crash for long.
    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: Millis,
        stale_before: Millis,
        abandoned_before: Millis,
    ) -> StoreResult<IdempotencyClaim>;
    /// Stores the response of the claim made at `claimed_at`. A claim made later under the same
    /// key (the first was taken for abandoned) is left as it is.
    async fn complete_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        claimed_at: Millis,
        response: &StoredResponse,
    ) -> StoreResult<()>;
    /// Forgets the claim made at `claimed_at`, whose request failed, so the client may try
    /// again; a later claim under the same key is left as it is.
    async fn release_idempotency_key(&self, scope: &str, key: &str, claimed_at: Millis) -> StoreResult<()>;
}

/// The audit log: append-only, listed in append order.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `entries` in order, in one transaction (their `seq` is assigned here).
    async fn append_audit_entries(&self, entries: &[AuditEntry]) -> StoreResult<()>;
    /// Entries in append order.
    async fn list_audit_log(
        &self,
        filter: &AuditFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<AuditEntry>>;
}

/// What the background upkeep of a node asks of the store, so that nothing grows with traffic
/// without bound and nothing a node learned stays only in its memory. Prunes delete in one
/// transaction each, and on a store shared by several nodes only one node's prune runs at a
/// time: the others' answer 0 at once. Callers loop until a prune answers 0.
#[async_trait]
pub trait UpkeepStore: Send + Sync {
    /// Deletes up to `limit` audit entries recorded before `before`, oldest first; answers how
    /// many went.
    async fn prune_audit_log(&self, before: Millis, limit: u32) -> StoreResult<u64>;
    /// Deletes up to `limit` `Idempotency-Key` records (answered or still claimed) created
    /// before `before`, oldest first; answers how many went.
    async fn prune_idempotency_keys(&self, before: Millis, limit: u32) -> StoreResult<u64>;
    /// Writes into their destinations' flow records the attempt outcomes this handle holds in
    /// memory (those that changed nothing but a closed circuit's counts) whose oldest was
    /// recorded before `held_before`; answers how many records it wrote. `Millis::MAX` writes
    /// everything held, as a stopping node does.
    async fn write_held_outcomes(&self, held_before: Millis) -> StoreResult<u64>;
}

/// Every repository of one backend.
#[async_trait]
pub trait Store:
    EventStore
    + EventTypeStore
    + DestinationStore
    + SourceStore
    + SubscriptionStore
    + ApiKeyStore
    + IdempotencyStore
    + DeliveryStore
    + AuditStore
    + FlowStore
    + UpkeepStore
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Whether the database answers, its schema is current, and (SQLite) its writer, if a
    /// write failed for lack of storage, has found room again.
    async fn ping(&self) -> StoreResult<()>;
    /// Calls `signal` whenever work may have become due through another node or process (an
    /// ingest, a retry, a replay, a resumed destination), until the answer is dropped. A
    /// backend only one process uses has nothing to watch and answers `None`; either way the
    /// engine's poll remains the safety net.
    async fn watch_work(&self, signal: WorkSignal) -> StoreResult<Option<Box<dyn WorkWatch>>> {
        let _ = signal;
        Ok(None)
    }
}

/// What [`Store::watch_work`] calls: cheap, non-blocking, callable from any thread.
pub type WorkSignal = std::sync::Arc<dyn Fn() + Send + Sync>;

/// A running watch of [`Store::watch_work`]; dropping it stops the watch.
pub trait WorkWatch: Send + Sync + std::fmt::Debug {}

/// The delivery side: the outbox the engine works from.
///
/// Claims are leases: a claimed delivery is `in_flight` with `lease_owner` and
/// `lease_expires_at`; a lease that expires (its worker died) makes the delivery claimable
/// again. Recording an attempt is guarded by the lease, so a worker that lost its lease cannot
/// overwrite what the new owner did.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Leases up to `limit` due deliveries to `owner` until `lease_until`: pending ones whose
    /// `next_attempt_at` has come, and in-flight ones whose lease expired. Deliveries of
    /// disabled (paused) destinations are not claimed, nor are the pending ones of a
    /// destination flow control blocks at `now` (`FlowStore::next_unblock_at` says when that
    /// ends); either's backlog costs a claim no read.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> StoreResult<Vec<crate::delivery::Delivery>>;
    /// Records `attempt` (numbered by the store) and moves the delivery to `next`, in one
    /// transaction, if `owner` still holds its lease. Answers whether it did.
    async fn record_attempt(
        &self,
        owner: &str,
        attempt: &crate::delivery::Attempt,
        next: crate::delivery::NextStep,
        now: Millis,
    ) -> StoreResult<bool> {
        Ok(self.record_attempt_observed(owner, attempt, next, now).await?.settled)
    }
    /// [`Self::record_attempt`], also answering the change the attempt made to its
    /// destination's circuit, decided and committed with it: each change is answered to
    /// exactly one caller, whichever node it runs on.
    async fn record_attempt_observed(
        &self,
        owner: &str,
        attempt: &crate::delivery::Attempt,
        next: crate::delivery::NextStep,
        now: Millis,
    ) -> StoreResult<Recorded>;
    /// Hands every lease of `owner` back as due now (graceful shutdown); answers how many.
    async fn release_leases(&self, owner: &str, now: Millis) -> StoreResult<u64>;
    /// Extends to `lease_until` the leases `owner` holds on `ids`, the deliveries its workers
    /// are running (so a slow destination does not make them claimable elsewhere, while one
    /// the node gave up on still expires); answers how many.
    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[crate::id::DeliveryId],
        lease_until: Millis,
    ) -> StoreResult<u64>;
    /// When `claim_deliveries` would first find something, as seen at `now`: the earliest due
    /// time of a pending delivery, of a destination neither paused nor blocked, or the first
    /// expiry of a lease.
    async fn next_due_at(&self, now: Millis) -> StoreResult<Option<Millis>>;
    async fn get_delivery(
        &self,
        id: &crate::id::DeliveryId,
    ) -> StoreResult<Option<crate::delivery::Delivery>>;
    /// Deliveries in creation order.
    async fn list_deliveries(
        &self,
        filter: &crate::delivery::DeliveryFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<crate::delivery::Delivery>>;
    async fn attempts_of(&self, id: &crate::id::DeliveryId) -> StoreResult<Vec<crate::delivery::Attempt>>;
    /// Makes a `dead` or `pending` delivery due now with a fresh attempt budget (its attempts
    /// are kept). `None` when there is no such delivery; `Conflict` when it is in flight or
    /// succeeded.
    async fn retry_delivery(
        &self,
        id: &crate::id::DeliveryId,
        now: Millis,
    ) -> StoreResult<Option<crate::delivery::Delivery>>;
    /// Up to `limit` dead deliveries matching `filter` (status is ignored) made due now with a
    /// fresh budget; answers how many. Callers loop until it answers 0.
    async fn replay_dead(
        &self,
        filter: &crate::delivery::DeliveryFilter,
        now: Millis,
        limit: u32,
    ) -> StoreResult<u64>;
    /// How many dead deliveries match `filter` (status is ignored).
    async fn count_dead(&self, filter: &crate::delivery::DeliveryFilter) -> StoreResult<u64>;
    /// The tally of every destination that has deliveries, in a few reads whatever the number
    /// of destinations; one without deliveries is not in the map.
    async fn delivery_tallies(
        &self,
    ) -> StoreResult<std::collections::HashMap<DestinationId, crate::delivery::DeliveryTally>>;
    /// Deletes up to `limit` succeeded deliveries (with their attempts) and events whose every
    /// delivery is gone, all older than `before`; answers how many rows went.
    async fn prune(&self, before: Millis, limit: u32) -> StoreResult<u64>;
    /// Up to `limit` deliveries whose status changed (or that were created) after `after`, in
    /// commit order of the change, those matching `filter` answered as they are now. A
    /// delivery changed again before it is read is read once, at its latest change.
    async fn stream_deliveries(
        &self,
        after: StreamCursor,
        filter: &crate::stream::DeliveryStreamFilter,
        limit: u32,
    ) -> StoreResult<StreamPage<crate::delivery::Delivery>>;
    /// The live end of the deliveries stream.
    async fn stream_head_deliveries(&self) -> StoreResult<StreamCursor>;
}
