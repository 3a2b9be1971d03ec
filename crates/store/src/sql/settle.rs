//! PostgreSQL's group settle (`postgres::settle`): the attempts of many calls recorded by a
//! few statements, each given one array per column (`UNNEST($1::text[], …)`), so the text
//! never changes with the size of the group. Every array holds one element per call, and no
//! delivery appears twice in one group. Only PostgreSQL runs these.

/// Settles each delivery `$1[i]` if `$2[i]` still holds its lease, as `SETTLE_DELIVERY` does
/// for one: status `$3[i]`, due at `$4[i]`, last error `$5[i]`, at `$6[i]`. Answers, for each
/// one settled, its id, destination, whether it is ordered, and its destination's circuit
/// breaker policy (`NULL` when the destination is gone). Served by the unique index on `id`.
pub const SETTLE_DELIVERIES: &str = "UPDATE deliveries SET status = settle.status, \
     next_attempt_at = settle.next_attempt_at, attempt_count = attempt_count + 1, \
     unfinished_attempts = 0, last_error = settle.last_error, lease_owner = NULL, \
     lease_expires_at = NULL, updated_at = settle.settled_at \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[]) \
     AS settle(id, owner, status, next_attempt_at, last_error, settled_at) \
     WHERE deliveries.id = settle.id AND deliveries.status = 'in_flight' \
     AND deliveries.lease_owner = settle.owner \
     RETURNING deliveries.id, deliveries.destination_id, deliveries.ordered, \
     (SELECT destinations.circuit_breaker FROM destinations \
      WHERE destinations.id = deliveries.destination_id)";

/// Appends one attempt to each delivery `$1[i]`, numbered after its last one (the primary key
/// serves the `MAX`), as `INSERT_ATTEMPT` does for one. Run after `SETTLE_DELIVERIES` in its
/// transaction, for the deliveries it settled: their rows are locked, so no other writer
/// numbers an attempt of theirs meanwhile.
pub const INSERT_ATTEMPTS: &str = concat!(
    "INSERT INTO attempts (",
    attempt_columns!(),
    ") SELECT attempt.delivery_id, COALESCE((SELECT MAX(earlier.number) FROM attempts AS earlier \
     WHERE earlier.delivery_id = attempt.delivery_id), 0) + 1, attempt.started_at, \
     attempt.duration_ms, attempt.outcome, attempt.status_code, attempt.error, \
     attempt.response_body \
     FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::text[], \
     $7::text[]) AS attempt(delivery_id, started_at, duration_ms, outcome, status_code, error, \
     response_body)"
);

/// `PROMOTE_NEXT` for each delivery `$1[i]` settled at `$2[i]` in this transaction: if it
/// released its key, the first pending delivery of the key, if it waited for its turn, becomes
/// due then. Each settled row is found by the unique index on `id`; the head of its key is read
/// with the key as parameters, so it is a seek on `deliveries_ordered_key_status_seq` (joined
/// at the same level, the planner would rather walk `deliveries` in `seq` order).
pub const PROMOTE_NEXT_OF_EACH: &str = concat!(
    "UPDATE deliveries SET next_attempt_at = promoted.settled_at, updated_at = promoted.settled_at \
     FROM (SELECT settle.settled_at, (SELECT waiting.seq FROM deliveries AS waiting \
         WHERE waiting.ordered AND waiting.subscription_id = settled.subscription_id \
         AND waiting.ordering_key = settled.ordering_key AND waiting.status = 'pending' \
         ORDER BY waiting.seq LIMIT 1) AS seq \
     FROM UNNEST($1::text[], $2::int8[]) AS settle(id, settled_at) \
     JOIN deliveries AS settled ON settled.id = settle.id WHERE ",
    releases_its_key!(),
    ") AS promoted \
     WHERE deliveries.seq = promoted.seq AND deliveries.next_attempt_at IS NULL"
);

/// The flow records of the destinations `$1`, read without a lock: what the outcomes of a
/// group are decided on first. Seeks on the primary key.
pub const SELECT_FLOWS: &str =
    concat!("SELECT ", flow_columns!(), " FROM destination_flow WHERE destination_id = ANY($1::text[])");

#[cfg(test)]
mod tests {
    use super::super::deliveries::STATUS_LITERALS;
    use super::*;

    #[test]
    fn status_literals_are_delivery_statuses() {
        for sql in [SETTLE_DELIVERIES, PROMOTE_NEXT_OF_EACH] {
            let mut rest = sql;
            while let Some(start) = rest.find('\'') {
                let len = rest[start + 1..].find('\'').unwrap_or_else(|| panic!("unbalanced quote in {sql}"));
                let literal = &rest[start + 1..start + 1 + len];
                assert!(STATUS_LITERALS.contains(&literal), "{literal} in {sql}");
                rest = &rest[start + len + 2..];
            }
        }
    }
}
