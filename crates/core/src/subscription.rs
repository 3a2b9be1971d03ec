//! Subscriptions: routes from event types to a destination.

use serde::{Deserialize, Serialize};

use crate::event::EventType;
use crate::id::{DestinationId, SubscriptionId};
use crate::pattern::EventTypePattern;
use crate::time::{self, Millis};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Deliveries run independently.
    #[default]
    None,
    /// Deliveries sharing an `ordering_key` arrive in ingest order, one in flight per key.
    Key,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderingOnDead {
    /// A dead delivery does not hold back the rest of its key.
    #[default]
    Skip,
    /// A dead delivery holds back its key until it is replayed.
    Block,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub name: String,
    pub destination_id: DestinationId,
    pub event_types: Vec<EventTypePattern>,
    /// jq expression run on `{"event": {...}}`: the event is delivered only when its first
    /// output is exactly `true`. Stored as written; the API compiles it before storing it.
    pub filter: Option<String>,
    /// jq expression run on `{"event": {...}}`: its first output is the delivered body, and no
    /// output filters the event out.
    pub transform: Option<String>,
    pub ordering: Ordering,
    pub ordering_on_dead: OrderingOnDead,
    pub enabled: bool,
    pub version: i64,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

impl Subscription {
    /// Whether an event of `event_type` goes to this subscription. The hub's own namespace
    /// (`switchyard.…`, [`crate::operational`]) is routed only by patterns that name it, so a
    /// `#` pointed at a partner's endpoint is never sent the hub's alerts.
    pub fn routes(&self, event_type: &EventType) -> bool {
        self.enabled && self.event_types.iter().any(|p| crate::operational::pattern_routes(p, event_type))
    }

    /// How a delivery of an event with `ordering_key` to this subscription is ordered,
    /// copied onto the delivery when it is written: `(ordered, block_on_dead)`. An event
    /// without a key is never ordered.
    pub fn delivery_ordering(&self, ordering_key: Option<&str>) -> (bool, bool) {
        let ordered = self.ordering == Ordering::Key && ordering_key.is_some();
        (ordered, ordered && self.ordering_on_dead == OrderingOnDead::Block)
    }
}

/// Filters of the subscription listing.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub destination_id: Option<DestinationId>,
}
