//! Flow control's queries: the per-destination record of circuit, outcomes and rate bucket,
//! and deferring claimed deliveries without an attempt.
//!
//! The record is read, changed by the pure rules of `switchyard_core::flow`, and written back
//! with a version check (`UPDATE_FLOW`), so the same text is safe on both backends: under
//! SQLite's write lock the check always holds; on PostgreSQL a concurrent writer makes it
//! match nothing and the caller reads again.

macro_rules! flow_columns {
    () => {
        "destination_id, state, opened_at, reason, cooldown_ms, retry_at, consecutive_failures, \
         probe_owner, probe_until, outcomes, tokens, tokens_at, rate_blocked_until, version, \
         updated_at"
    };
}

/// Whether flow control lets a new delivery of the destination `$destination` (a column) go
/// at the instant `$now` (a placeholder): no circuit open or probing, and a token in the
/// bucket. One seek on the primary key of `destination_flow`. The claim passes over what it
/// refuses (`sql::deliveries::CLAIM_AROUND_HELD`); the engine adds [`NEXT_UNBLOCK_AT`] to its
/// idle wait, so a blocked destination is claimed again when it unblocks.
macro_rules! flow_admits {
    ($destination:literal, $now:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM destination_flow WHERE destination_flow.destination_id = ",
            $destination,
            " AND destination_flow.blocked_until > ",
            $now,
            ")"
        )
    };
}

/// Creates the record of destination `$1` at `$2`, closed and empty (version 1: version 0
/// means "not stored"), unless it exists or the destination does not.
pub const ENSURE_FLOW: &str = "INSERT INTO destination_flow (destination_id, state, \
     cooldown_ms, consecutive_failures, outcomes, blocked_until, version, updated_at) \
     SELECT $1, 'closed', 0, 0, '[]', 0, 1, $2 WHERE EXISTS (SELECT 1 FROM destinations \
     WHERE id = $1) ON CONFLICT (destination_id) DO NOTHING";

/// Stores a new record (version 1); no row when another writer stored one first.
pub const INSERT_FLOW: &str = concat!(
    "INSERT INTO destination_flow (",
    flow_columns!(),
    ", blocked_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15) \
     ON CONFLICT (destination_id) DO NOTHING"
);

/// Served by the primary key.
pub const SELECT_FLOW: &str =
    concat!("SELECT ", flow_columns!(), " FROM destination_flow WHERE destination_id = $1");

/// Every record, for the status report and the metrics: the whole table, a row a destination.
pub const ALL_FLOWS: &str = concat!("SELECT ", flow_columns!(), " FROM destination_flow");

/// [`SELECT_FLOW`] locking the row until the transaction ends (PostgreSQL), so concurrent
/// nodes change the record one after another: a rate limit spends each token once cluster-wide.
pub const SELECT_FLOW_FOR_UPDATE: &str =
    concat!("SELECT ", flow_columns!(), " FROM destination_flow WHERE destination_id = $1 FOR UPDATE");

/// Writes the record computed from version `$16`; no row when another writer got there first.
pub const UPDATE_FLOW: &str = "UPDATE destination_flow SET state = $1, opened_at = $2, \
     reason = $3, cooldown_ms = $4, retry_at = $5, consecutive_failures = $6, probe_owner = $7, \
     probe_until = $8, outcomes = $9, tokens = $10, tokens_at = $11, rate_blocked_until = $12, \
     blocked_until = $13, version = version + 1, updated_at = $14 \
     WHERE destination_id = $15 AND version = $16";

/// A destination's circuit-breaker policy and its record (the columns of [`SELECT_FLOW`], all
/// NULL when it has none yet), on SQLite: a seek on each primary key. No row when the
/// destination is gone.
pub const CIRCUIT_POLICY_AND_FLOW: &str = "SELECT d.circuit_breaker, f.destination_id, f.state, \
     f.opened_at, f.reason, f.cooldown_ms, f.retry_at, f.consecutive_failures, f.probe_owner, \
     f.probe_until, f.outcomes, f.tokens, f.tokens_at, f.rate_blocked_until, f.version, \
     f.updated_at FROM destinations d LEFT JOIN destination_flow f ON f.destination_id = d.id \
     WHERE d.id = $1";

/// Hands the delivery `$3` back as pending, due at `$1`, if `$4` holds its lease: no attempt
/// is recorded, `attempt_count` stays, and the lease does not count as unfinished
/// (`lease_handed_back!`). Served by the unique index on `id`.
pub const DEFER_DELIVERY: &str = concat!(
    "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, lease_owner = NULL, \
     lease_expires_at = NULL, updated_at = $2, ",
    lease_handed_back!(),
    " WHERE id = $3 AND status = 'in_flight' AND lease_owner = $4"
);

/// The first instant after `$1` at which a blocked destination unblocks: the head of
/// `destination_flow_blocked_until` past `$1`.
pub const NEXT_UNBLOCK_AT: &str = "SELECT MIN(blocked_until) FROM destination_flow WHERE blocked_until > $1";

#[cfg(test)]
mod tests {
    use super::*;

    /// The record's columns are read by position: both statements name them in one order.
    #[test]
    fn the_policy_and_flow_read_names_the_columns_of_select_flow_in_order() {
        let record = CIRCUIT_POLICY_AND_FLOW
            .split_once("d.circuit_breaker, ")
            .and_then(|(_, rest)| rest.split_once(" FROM"))
            .map(|(columns, _)| columns.replace("f.", ""))
            .expect("the statement lists the record's columns after the policy");
        fn normalize(columns: &str) -> Vec<&str> {
            columns.split(',').map(str::trim).collect()
        }
        assert_eq!(normalize(&record), normalize(flow_columns!()));
    }
}
