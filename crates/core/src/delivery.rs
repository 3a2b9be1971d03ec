//! Deliveries: one per event and matching subscription, created in the ingest transaction.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::EventId;
use crate::id::{DeliveryId, DestinationId, SubscriptionId};
use crate::time::{self, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    InFlight,
    Succeeded,
    Dead,
    /// Not sent, by the subscription's choice: its `filter` did not answer `true`, or its
    /// `transform` yielded nothing. Final, like `succeeded`.
    Filtered,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Filtered => "filtered",
        }
    }

    pub const ALL: [Self; 5] = [Self::Pending, Self::InFlight, Self::Succeeded, Self::Dead, Self::Filtered];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    pub destination_id: DestinationId,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    /// Its leases since its last recorded attempt: the one in flight, and those that ended
    /// without an outcome (the node running it stopped first). A lease handed back unused does
    /// not count. A claim that makes it exceed `engine.max_unfinished_attempts` records the
    /// delivery dead instead of running it.
    pub unfinished_attempts: u32,
    #[serde(with = "time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Millis>,
    pub lease_owner: Option<String>,
    #[serde(with = "time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lease_expires_at: Option<Millis>,
    pub last_error: Option<String>,
    /// Copied from the event: ordered subscriptions deliver one key at a time, in order.
    pub ordering_key: Option<String>,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

impl Delivery {
    /// The delivery of `event` to `subscription` as an ingest writes it under `lease`
    /// ([`FreshLease`](crate::store::FreshLease)): in flight from its creation at `now`, its
    /// lease counted as a claim's is (one unfinished attempt).
    pub fn leased_at_creation(
        id: DeliveryId,
        event: &crate::event::NewEvent,
        subscription: &crate::subscription::Subscription,
        lease: &crate::store::FreshLease,
        now: Millis,
    ) -> Self {
        Delivery {
            id,
            event_id: event.event_id.clone(),
            subscription_id: subscription.id.clone(),
            destination_id: subscription.destination_id.clone(),
            status: DeliveryStatus::InFlight,
            attempt_count: 0,
            unfinished_attempts: 1,
            next_attempt_at: Some(now),
            lease_owner: Some(lease.owner.clone()),
            lease_expires_at: Some(lease.lease_until),
            last_error: None,
            ordering_key: event.ordering_key.clone(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Why this claimed delivery must not be run, if it must not: more of its leases in a row
    /// (this one included) than `max_unfinished_attempts` ended without an outcome. The nodes
    /// running it stopped each time, so it may be what stops them (a poison message), and
    /// running it again could take down the next node too; it goes dead with this reason.
    pub fn crash_loop(&self, max_unfinished_attempts: u32) -> Option<String> {
        if self.unfinished_attempts <= max_unfinished_attempts {
            return None;
        }
        let ended = self.unfinished_attempts - 1;
        let attempts = if ended == 1 { "attempt" } else { "attempts" };
        Some(format!(
            "{ended} {attempts} ended without an outcome: the node running it stopped each time \
             (it may crash whoever runs it)"
        ))
    }
}

/// One try at sending a delivery, or the decision not to send it (`filtered`), kept for the
/// operator to read.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub delivery_id: DeliveryId,
    /// 1 for the first attempt; numbering continues across replays.
    pub number: u32,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Millis,
    pub duration_ms: u64,
    pub outcome: AttemptOutcome,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// The first 4 KiB of the receiver's answer.
    pub response_body: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    /// Failed; another attempt may succeed.
    Retryable,
    /// Failed; no attempt can succeed.
    Permanent,
    /// Not sent: the subscription's filter or transform dropped the event.
    Filtered,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
            Self::Filtered => "filtered",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Succeeded, Self::Retryable, Self::Permanent, Self::Filtered]
            .into_iter()
            .find(|o| o.as_str() == raw)
    }
}

/// Where a delivery goes once an attempt is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(Millis),
    Dead,
    Filtered,
}

/// Filters of delivery and dead-letter listings, and of bulk replay.
/// What the deliveries of one destination amount to, for the status report and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryTally {
    pub pending: u64,
    /// When its first pending delivery, in ingest order, was created.
    pub oldest_pending_at: Option<Millis>,
    pub dead: u64,
    /// Whether one of its deliveries is `succeeded` (until retention prunes it).
    pub ever_succeeded: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_id: Option<EventId>,
    pub destination_id: Option<DestinationId>,
    pub subscription_id: Option<SubscriptionId>,
    pub event_type: Option<crate::event::EventType>,
    /// Created at or after.
    pub since: Option<Millis>,
    /// Created before.
    pub until: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leased(unfinished_attempts: u32) -> Delivery {
        Delivery {
            id: DeliveryId::from_trusted("dlv_1"),
            event_id: EventId::from_trusted("e1"),
            subscription_id: SubscriptionId::from_trusted("sub_1"),
            destination_id: DestinationId::from_trusted("dst_1"),
            status: DeliveryStatus::InFlight,
            attempt_count: 0,
            unfinished_attempts,
            next_attempt_at: None,
            lease_owner: Some("node-a".to_owned()),
            lease_expires_at: Some(1),
            last_error: None,
            ordering_key: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_delivery_runs_until_more_leases_than_the_maximum_ended_without_an_outcome() {
        for unfinished in 0..=3 {
            assert_eq!(leased(unfinished).crash_loop(3), None, "{unfinished}");
        }
        assert_eq!(
            leased(4).crash_loop(3).as_deref(),
            Some(
                "3 attempts ended without an outcome: the node running it stopped each time (it \
                 may crash whoever runs it)"
            )
        );
        // A maximum lowered since counts what it finds.
        assert!(leased(9).crash_loop(3).is_some_and(|reason| reason.starts_with("8 attempts ended")));
        assert!(leased(2).crash_loop(1).is_some_and(|reason| reason.starts_with("1 attempt ended")));
    }
}
