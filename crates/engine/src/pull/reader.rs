//! One pull source's reader on this node: take the source's lease, connect, and loop: read a
//! batch, store its events, acknowledge it. A batch is acknowledged only after its events are
//! committed, so a crash in between reads it again and its ids make the events duplicates.
//! Any failure closes the consumer and starts over after a backoff, lease first.

use std::time::Duration;

use serde_json::{Map, Value};
use switchyard_core::digest::sha256_hex;
use switchyard_core::event::{EventId, EventSource, EventType, IngestContext, IngestOutcome};
use switchyard_core::id::SourceId;
use switchyard_core::json;
use switchyard_core::source::pull::{Consumer, PullError, Pulled, Puller};
use switchyard_core::source::{self, Source, normalize_event_type};
use switchyard_core::time::{Millis, now_millis};
use tokio::sync::watch;

use super::Shared;
use super::status::BatchCounts;
use crate::ingest::{BatchItem, MAX_BATCH};
use crate::intake::scoped_id;
use crate::operational::FailingSource;

/// How long a node holds a source's lease without renewing it; another node takes the source
/// over this long after its reader died.
pub const SOURCE_LEASE_MS: Millis = 10_000;
/// A held lease is renewed once this much of it has passed.
const RENEW_AFTER_MS: Millis = SOURCE_LEASE_MS / 3;
const RENEW_EVERY: Duration = Duration::from_millis(RENEW_AFTER_MS as u64);
/// How often an idle reader asks its origin how many messages wait.
const BACKLOG_EVERY_MS: Millis = 5_000;
/// How often a node that does not hold the lease asks for it.
const STANDBY_RETRY: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a connected reader stopped.
enum Ended {
    Stopped,
    LeaseLost,
}

pub(super) struct Reader {
    pub shared: Shared,
    pub source: Source,
    pub puller: std::sync::Arc<dyn Puller>,
    pub stop: watch::Receiver<bool>,
}

impl Reader {
    pub async fn run(mut self) {
        let id = self.source.id.clone();
        let mut backoff = FIRST_BACKOFF;
        while !self.stopped() {
            let now = now_millis();
            match self.shared.store.lease_source(&id, &self.shared.node_id, now, now + SOURCE_LEASE_MS).await
            {
                Ok(true) => {}
                Ok(false) => {
                    self.shared.statuses.set_state(&id, "standby");
                    self.pause(STANDBY_RETRY).await;
                    continue;
                }
                Err(error) => {
                    self.failed(&format!("taking the source's lease: {error}"));
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            self.shared.statuses.set_state(&id, "connecting");
            let connected = tokio::select! {
                connected = self.puller.connect(&self.source) => connected,
                _ = self.stop.changed() => break,
            };
            let result = match connected {
                Ok(consumer) => self.read(consumer, &mut backoff).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(Ended::Stopped) => break,
                Ok(Ended::LeaseLost) => continue,
                Err(error) => {
                    self.failed(&error.to_string());
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Err(error) = self.shared.store.release_source(&id, &self.shared.node_id).await {
            tracing::warn!(source = %id, %error, "could not hand the source's lease back; it runs out by itself");
        }
    }

    /// Reads batches until stopped, the lease is lost or something fails; closes the consumer.
    async fn read(
        &mut self,
        mut consumer: Box<dyn Consumer>,
        backoff: &mut Duration,
    ) -> Result<Ended, PullError> {
        let ended = self.read_batches(consumer.as_mut(), backoff).await;
        consumer.close().await;
        ended
    }

    async fn read_batches(
        &mut self,
        consumer: &mut dyn Consumer,
        backoff: &mut Duration,
    ) -> Result<Ended, PullError> {
        let id = self.source.id.clone();
        let mut renewed_at = now_millis();
        let mut backlog_asked_at: Option<Millis> = None;
        loop {
            if self.stopped() {
                return Ok(Ended::Stopped);
            }
            let now = now_millis();
            if now - renewed_at >= RENEW_AFTER_MS {
                let held = self
                    .shared
                    .store
                    .lease_source(&id, &self.shared.node_id, now, now + SOURCE_LEASE_MS)
                    .await
                    .map_err(|error| PullError::new(format!("renewing the source's lease: {error}")))?;
                if !held {
                    tracing::warn!(source = %id, "another node took the source's lease over; this one stops reading it");
                    return Ok(Ended::LeaseLost);
                }
                renewed_at = now;
            }
            // A read waits at most until the lease is due for renewal (a source's poll
            // interval may be longer); one cut short answers nothing, and what it had read
            // returns to the origin unacknowledged.
            let read = tokio::time::timeout(RENEW_EVERY, consumer.next_batch());
            let batch = tokio::select! {
                batch = read => batch.unwrap_or_else(|_| Ok(Vec::new()))?,
                _ = self.stop.changed() => return Ok(Ended::Stopped),
            };
            let now = now_millis();
            if batch.is_empty() {
                // The origin's count is a query of its own: asked now and then, not every poll.
                let due = backlog_asked_at.is_none_or(|at| now - at >= BACKLOG_EVERY_MS);
                let backlog = if due { consumer.backlog().await } else { None };
                if due {
                    backlog_asked_at = Some(now);
                }
                self.shared.statuses.read(&id, BatchCounts::default(), 0, backlog, now);
                continue;
            }
            let lag_ms =
                batch.iter().filter_map(|p| p.written_at).min().map_or(0, |at| now.saturating_sub(at));
            let (counts, committed, invalid) = self.store_batch(batch, now).await?;
            consumer.acknowledge(&committed, &invalid).await?;
            self.shared.counted(&self.source, counts, lag_ms);
            self.shared.statuses.read(&id, counts, u64::try_from(lag_ms).unwrap_or(0), None, now);
            *backoff = FIRST_BACKOFF;
        }
    }

    /// Stores the events of `batch`; answers what they came to, the positions committed and
    /// those that are not events. A store failure fails the batch: nothing is acknowledged.
    async fn store_batch(
        &self,
        batch: Vec<Pulled>,
        now: Millis,
    ) -> Result<(BatchCounts, Vec<u64>, Vec<u64>), PullError> {
        let source = &self.source;
        let ctx = IngestContext {
            source: EventSource::from_trusted(source::event_source(source.kind, &source.id)),
            correlation_id: None,
            traceparent: None,
            request_id: None,
            principal: None,
            headers: None,
            received_at: now,
            max_payload_bytes: self.shared.max_payload_bytes,
        };
        let mut counts = BatchCounts::default();
        let (mut committed, mut invalid) = (Vec::with_capacity(batch.len()), Vec::new());
        let mut items = Vec::with_capacity(batch.len());
        for pulled in &batch {
            match event_item(pulled, None) {
                Ok(item) => items.push((pulled.position, item)),
                Err(why) => {
                    self.refused(pulled.position, &why);
                    counts.invalid += 1;
                    invalid.push(pulled.position);
                }
            }
        }
        // An id held by an event from elsewhere (another source, the API) names this message's
        // event scoped by the source instead, as a webhook's does: as stable, so a message
        // read twice still dedups, and never lost as someone else's duplicate. Such an event
        // is stored after the rest of its batch (a collision of ids across origins is rare;
        // order among the others holds).
        let mut taken = Vec::new();
        for (position, result) in self.ingest(items, &ctx).await? {
            match self.holder_elsewhere(result, &ctx.source).await? {
                Held::Ours(created) => {
                    counts.count(created);
                    committed.push(position);
                }
                Held::Elsewhere => taken.push(position),
                Held::Rejected(why) => {
                    self.refused(position, &why);
                    counts.invalid += 1;
                    invalid.push(position);
                }
            }
        }
        let scoped: Vec<(u64, Value)> = batch
            .iter()
            .filter(|pulled| taken.contains(&pulled.position))
            .filter_map(|pulled| Some((pulled.position, event_item(pulled, Some(&source.id)).ok()?)))
            .collect();
        for (position, result) in self.ingest(scoped, &ctx).await? {
            match self.holder_elsewhere(result, &ctx.source).await? {
                Held::Ours(created) => {
                    counts.count(created);
                    committed.push(position);
                }
                Held::Elsewhere => {
                    self.refused(
                        position,
                        "its id and its id scoped by the source are both taken by events from elsewhere",
                    );
                    counts.invalid += 1;
                    invalid.push(position);
                }
                Held::Rejected(why) => {
                    self.refused(position, &why);
                    counts.invalid += 1;
                    invalid.push(position);
                }
            }
        }
        Ok((counts, committed, invalid))
    }

    /// Ingests `items` in batches of at most [`MAX_BATCH`]; answers each item's result.
    async fn ingest(
        &self,
        mut items: Vec<(u64, Value)>,
        ctx: &IngestContext,
    ) -> Result<Vec<(u64, BatchItem)>, PullError> {
        let mut results = Vec::with_capacity(items.len());
        while !items.is_empty() {
            let chunk: Vec<(u64, Value)> = items.drain(..items.len().min(MAX_BATCH)).collect();
            let (positions, values): (Vec<u64>, Vec<Value>) = chunk.into_iter().unzip();
            let stored = self
                .shared
                .ingestor
                .ingest_batch(values, ctx)
                .await
                .map_err(|error| PullError::new(format!("storing the events: {error}")))?;
            results.extend(positions.into_iter().zip(stored));
        }
        Ok(results)
    }

    /// Whose event an item's id names now: this source's (created, or stored before), another
    /// origin's, or none (the item was refused).
    async fn holder_elsewhere(&self, result: BatchItem, ours: &EventSource) -> Result<Held, PullError> {
        let holder = match &result {
            BatchItem::Rejected { error, .. } => return Ok(Held::Rejected(error.to_string())),
            BatchItem::Stored(IngestOutcome::Created(_)) => return Ok(Held::Ours(true)),
            BatchItem::Stored(IngestOutcome::Duplicate(event)) => Some(event.source.clone()),
            BatchItem::Stored(IngestOutcome::Conflict(id)) => self
                .shared
                .store
                .get_event(id)
                .await
                .map_err(|error| PullError::new(format!("reading the event holding an id: {error}")))?
                .map(|event| event.source),
        };
        // A holder deleted meanwhile (retention) leaves nothing to scope around.
        Ok(if holder.is_some_and(|holder| &holder != ours) { Held::Elsewhere } else { Held::Ours(false) })
    }

    fn refused(&self, position: u64, why: &str) {
        tracing::warn!(source = %self.source.id, position, "a message is not an event: {why}");
        self.shared.statuses.invalid(&self.source.id, why);
    }

    fn failed(&self, error: &str) {
        tracing::warn!(source = %self.source.id, "reading the source failed: {error}");
        if let Some(failures) = self.shared.statuses.failed(&self.source.id, error) {
            self.shared.operational.source_failing(FailingSource {
                source_id: self.source.id.clone(),
                name: self.source.name.clone(),
                kind: self.source.kind.as_str(),
                error: error.to_owned(),
                failures,
            });
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn pause(&mut self, how_long: Duration) {
        tokio::select! {
            () = tokio::time::sleep(how_long) => {}
            _ = self.stop.changed() => {}
        }
    }
}

/// The batch item of one message, as `POST /v1/events/batch` would take it; or why it is not
/// an event. An id that is not a valid event id is replaced by its SHA-256 (as stable, so a
/// message read twice still dedups), a type that is not a valid event type is normalised.
fn event_item(pulled: &Pulled, scope: Option<&SourceId>) -> Result<Value, String> {
    if json::nests_deeper_than(&pulled.body, json::MAX_DEPTH) {
        return Err(format!("the payload nests deeper than {} levels", json::MAX_DEPTH));
    }
    let payload = match serde_json::from_slice::<Value>(&pulled.body) {
        Ok(Value::Object(payload)) => payload,
        Ok(_) => return Err("the payload is not a JSON object".to_owned()),
        Err(error) => return Err(format!("the payload is not JSON: {error}")),
    };
    let event_id = match &pulled.event_id {
        Some(id) if EventId::parse(id).is_ok() => id.clone(),
        Some(id) => sha256_hex(id.as_bytes()),
        None => sha256_hex(&pulled.body),
    };
    let event_id = match scope {
        Some(source) => scoped_id(source, &event_id),
        None => event_id,
    };
    let event_type = match pulled.event_type.as_deref() {
        Some(raw) if EventType::parse(raw).is_ok() => raw.to_owned(),
        Some(raw) => normalize_event_type(raw).ok_or_else(|| {
            format!("`{}` cannot be made an event type", switchyard_core::error::excerpt(raw))
        })?,
        None => return Err("the message names no event type".to_owned()),
    };
    let mut item = Map::new();
    item.insert("event_id".into(), event_id.into());
    item.insert("event_type".into(), event_type.into());
    item.insert("payload".into(), Value::Object(payload));
    if let Some(key) = &pulled.ordering_key {
        item.insert("ordering_key".into(), key.clone().into());
    }
    Ok(Value::Object(item))
}

/// What an item's id came to, as [`Reader::holder_elsewhere`] answers it.
enum Held {
    /// Stored for this source: `true` when created now, `false` when stored before.
    Ours(bool),
    Elsewhere,
    Rejected(String),
}

impl BatchCounts {
    /// Counts an item stored for this source: created now, or stored before.
    fn count(&mut self, created: bool) {
        if created {
            self.accepted += 1;
        } else {
            self.duplicate += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_item_of(pulled: &Pulled) -> Result<Value, String> {
        event_item(pulled, None)
    }

    fn pulled(id: Option<&str>, kind: Option<&str>, body: &str) -> Pulled {
        Pulled {
            position: 0,
            event_id: id.map(str::to_owned),
            event_type: kind.map(str::to_owned),
            ordering_key: Some("order-1".into()),
            body: body.as_bytes().to_vec(),
            written_at: None,
        }
    }

    #[test]
    fn a_message_becomes_a_batch_item() {
        let item = event_item_of(&pulled(Some("row-1"), Some("order.created"), r#"{"total": 5}"#)).unwrap();
        assert_eq!(
            item,
            serde_json::json!({"event_id": "row-1", "event_type": "order.created",
                "payload": {"total": 5}, "ordering_key": "order-1"})
        );
    }

    #[test]
    fn ids_and_types_that_do_not_parse_are_made_into_ones_that_do() {
        let body = r#"{"a": 1}"#;
        let item = event_item_of(&pulled(Some("has space"), Some("Orders/Create"), body)).unwrap();
        assert_eq!(item["event_id"], sha256_hex(b"has space"));
        assert_eq!(item["event_type"], "orders.create");
        let anonymous = event_item_of(&pulled(None, Some("a.b"), body)).unwrap();
        assert_eq!(anonymous["event_id"], sha256_hex(body.as_bytes()));
    }

    #[test]
    fn a_scoped_item_names_its_source_before_the_id() {
        let source = SourceId::generate();
        let item = event_item(&pulled(Some("row-1"), Some("a.b"), "{}"), Some(&source)).unwrap();
        assert_eq!(item["event_id"], format!("{source}:row-1"));
    }

    #[test]
    fn what_is_not_an_event_says_why() {
        assert!(event_item_of(&pulled(None, Some("a.b"), "not json")).unwrap_err().contains("not JSON"));
        assert!(event_item_of(&pulled(None, Some("a.b"), "[1]")).unwrap_err().contains("object"));
        assert!(event_item_of(&pulled(None, None, "{}")).unwrap_err().contains("no event type"));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(event_item_of(&pulled(None, Some("a.b"), &format!(r#"{{"a": {deep}}}"#))).is_err());
    }
}
