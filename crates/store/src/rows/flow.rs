//! The flow-control record of a destination (`destination_flow`) to and from
//! [`DestinationFlow`].

use switchyard_core::circuit::{Circuit, CircuitState, OutcomeWindow, Probe};
use switchyard_core::flow::DestinationFlow;
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::rate::TokenBucket;
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::time::Millis;

use super::{i64_to, u64_to_i64};
use crate::error::unreadable;

#[derive(sqlx::FromRow)]
pub struct FlowRow {
    destination_id: String,
    state: String,
    opened_at: Option<i64>,
    reason: Option<String>,
    cooldown_ms: i64,
    retry_at: Option<i64>,
    consecutive_failures: i64,
    probe_owner: Option<String>,
    probe_until: Option<i64>,
    outcomes: String,
    tokens: Option<f64>,
    tokens_at: Option<i64>,
    rate_blocked_until: Option<i64>,
    version: i64,
    updated_at: i64,
}

impl FlowRow {
    /// The row as `SELECT_FLOW` reads it, from a statement run on SQLite's handle.
    pub fn from_direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            destination_id: row.get("destination_id")?,
            state: row.get("state")?,
            opened_at: row.get("opened_at")?,
            reason: row.get("reason")?,
            cooldown_ms: row.get("cooldown_ms")?,
            retry_at: row.get("retry_at")?,
            consecutive_failures: row.get("consecutive_failures")?,
            probe_owner: row.get("probe_owner")?,
            probe_until: row.get("probe_until")?,
            outcomes: row.get("outcomes")?,
            tokens: row.get("tokens")?,
            tokens_at: row.get("tokens_at")?,
            rate_blocked_until: row.get("rate_blocked_until")?,
            version: row.get("version")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

impl TryFrom<FlowRow> for DestinationFlow {
    type Error = StoreError;

    fn try_from(row: FlowRow) -> StoreResult<Self> {
        let state = CircuitState::parse(&row.state)
            .ok_or_else(|| unreadable("destination_flow.state", format!("unknown state {:?}", row.state)))?;
        let outcomes: OutcomeWindow =
            serde_json::from_str(&row.outcomes).map_err(|e| unreadable("destination_flow.outcomes", e))?;
        let probe = match (row.probe_owner, row.probe_until) {
            (Some(owner), Some(until)) => Some(Probe { delivery_id: DeliveryId::from_trusted(owner), until }),
            _ => None,
        };
        let bucket = match (row.tokens, row.tokens_at) {
            (Some(tokens), Some(at)) => Some(TokenBucket { tokens, at }),
            _ => None,
        };
        Ok(DestinationFlow {
            destination_id: DestinationId::from_trusted(row.destination_id),
            circuit: Circuit {
                state,
                opened_at: row.opened_at,
                reason: row.reason,
                cooldown_ms: i64_to("destination_flow.cooldown_ms", row.cooldown_ms)?,
                retry_at: row.retry_at,
                consecutive_failures: i64_to(
                    "destination_flow.consecutive_failures",
                    row.consecutive_failures,
                )?,
                probe,
            },
            outcomes,
            bucket,
            rate_blocked_until: row.rate_blocked_until,
            version: row.version,
            updated_at: row.updated_at,
        })
    }
}

/// The values `UPDATE_FLOW` writes, in bind order up to `updated_at`.
pub struct FlowUpdate {
    pub state: &'static str,
    pub opened_at: Option<i64>,
    pub reason: Option<String>,
    pub cooldown_ms: i64,
    pub retry_at: Option<i64>,
    pub consecutive_failures: i64,
    pub probe_owner: Option<String>,
    pub probe_until: Option<i64>,
    pub outcomes: String,
    pub tokens: Option<f64>,
    pub tokens_at: Option<i64>,
    pub rate_blocked_until: Option<i64>,
    pub blocked_until: i64,
    pub updated_at: i64,
}

impl FlowUpdate {
    pub fn of(flow: &DestinationFlow, now: Millis) -> StoreResult<Self> {
        let circuit = &flow.circuit;
        Ok(Self {
            state: circuit.state.as_str(),
            opened_at: circuit.opened_at,
            reason: circuit.reason.clone(),
            cooldown_ms: u64_to_i64("cooldown_ms", circuit.cooldown_ms)?,
            retry_at: circuit.retry_at,
            consecutive_failures: i64::from(circuit.consecutive_failures),
            probe_owner: circuit.probe.as_ref().map(|p| p.delivery_id.as_str().to_owned()),
            probe_until: circuit.probe.as_ref().map(|p| p.until),
            outcomes: super::to_json("destination_flow.outcomes", &flow.outcomes)?,
            tokens: flow.bucket.map(|b| b.tokens),
            tokens_at: flow.bucket.map(|b| b.at),
            rate_blocked_until: flow.rate_blocked_until,
            blocked_until: flow.blocked_until(now).unwrap_or(0),
            updated_at: now,
        })
    }
}
