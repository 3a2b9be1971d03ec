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
    /// The row as `SELECT_FLOW` reads it (its columns in the order of `flow_columns!`, from
    /// `first` on), from a statement run on SQLite's handle.
    pub fn from_direct_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            destination_id: row.get(first)?,
            state: row.get(first + 1)?,
            opened_at: row.get(first + 2)?,
            reason: row.get(first + 3)?,
            cooldown_ms: row.get(first + 4)?,
            retry_at: row.get(first + 5)?,
            consecutive_failures: row.get(first + 6)?,
            probe_owner: row.get(first + 7)?,
            probe_until: row.get(first + 8)?,
            outcomes: row.get(first + 9)?,
            tokens: row.get(first + 10)?,
            tokens_at: row.get(first + 11)?,
            rate_blocked_until: row.get(first + 12)?,
            version: row.get(first + 13)?,
            updated_at: row.get(first + 14)?,
        })
    }

    pub fn destination_id(&self) -> &str {
        &self.destination_id
    }

    /// The stored outcomes, as JSON.
    pub fn outcomes(&self) -> &str {
        &self.outcomes
    }

    /// The record, with its outcomes already read from [`Self::outcomes`].
    pub fn with_outcomes(self, outcomes: OutcomeWindow) -> StoreResult<DestinationFlow> {
        let state = CircuitState::parse(&self.state)
            .ok_or_else(|| unreadable("destination_flow.state", format!("unknown state {:?}", self.state)))?;
        let probe = match (self.probe_owner, self.probe_until) {
            (Some(owner), Some(until)) => Some(Probe { delivery_id: DeliveryId::from_trusted(owner), until }),
            _ => None,
        };
        let bucket = match (self.tokens, self.tokens_at) {
            (Some(tokens), Some(at)) => Some(TokenBucket { tokens, at }),
            _ => None,
        };
        Ok(DestinationFlow {
            destination_id: DestinationId::from_trusted(self.destination_id),
            circuit: Circuit {
                state,
                opened_at: self.opened_at,
                reason: self.reason,
                cooldown_ms: i64_to("destination_flow.cooldown_ms", self.cooldown_ms)?,
                retry_at: self.retry_at,
                consecutive_failures: i64_to(
                    "destination_flow.consecutive_failures",
                    self.consecutive_failures,
                )?,
                probe,
            },
            outcomes,
            bucket,
            rate_blocked_until: self.rate_blocked_until,
            version: self.version,
            updated_at: self.updated_at,
        })
    }
}

/// The outcomes of a record, as stored.
pub fn parse_outcomes(json: &str) -> StoreResult<OutcomeWindow> {
    serde_json::from_str(json).map_err(|e| unreadable("destination_flow.outcomes", e))
}

impl TryFrom<FlowRow> for DestinationFlow {
    type Error = StoreError;

    fn try_from(row: FlowRow) -> StoreResult<Self> {
        let outcomes = parse_outcomes(&row.outcomes)?;
        row.with_outcomes(outcomes)
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
