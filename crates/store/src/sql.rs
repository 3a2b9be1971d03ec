//! Every query the store runs, as text both backends accept: `$n` placeholders numbered in
//! order of first appearance, instants as integer milliseconds, JSON as text, and `WHERE flag`
//! rather than `flag = 1` so a PostgreSQL `BOOLEAN` column reads the same. Backends differ
//! only in how they open connections and transactions.

use switchyard_core::audit::AuditFilter;
use switchyard_core::event::EventFilter;

macro_rules! event_columns {
    () => {
        "seq, event_id, event_type, timestamp, payload, correlation_id, causation_id, traceparent, request_id, \
         ordering_key, source, received_at, published_by, content_hash, headers"
    };
}

macro_rules! delivery_columns {
    () => {
        "seq, id, event_id, subscription_id, destination_id, status, attempt_count, \
         unfinished_attempts, next_attempt_at, lease_owner, lease_expires_at, last_error, \
         ordering_key, created_at, updated_at"
    };
}

/// What a claim writes on each delivery it leases to `$1` until `$2` at `$3`. The lease is
/// counted as an attempt that has not finished (`unfinished_attempts`) until one is recorded
/// (`SETTLE_DELIVERY` resets the count) or the lease is handed back unused
/// (`lease_handed_back!`): a count that keeps growing means every node that ran the delivery
/// stopped before it could record anything.
macro_rules! lease_claimed {
    () => {
        "status = 'in_flight', lease_owner = $1, lease_expires_at = $2, updated_at = $3, \
         unfinished_attempts = unfinished_attempts + 1"
    };
}

/// Takes a lease handed back without an attempt (a deferral, a release on shutdown) off the
/// delivery's `unfinished_attempts`, so waiting never counts towards giving up on it; never
/// below 0.
macro_rules! lease_handed_back {
    () => {
        "unfinished_attempts = CASE WHEN unfinished_attempts > 0 THEN unfinished_attempts - 1 ELSE 0 END"
    };
}

/// SQLite: the stream position of a delivery written now, past every other (migration 0014
/// orders the deliveries stream by `changed`). Statements of the delivery path write it
/// themselves; the migrations' triggers write it for the rest.
macro_rules! next_change {
    () => {
        "(SELECT coalesce(max(changed), 0) + 1 FROM deliveries)"
    };
}

// Declared after the column macros it uses; `flow` first, for its claim fragment.
#[macro_use]
pub mod flow;
#[macro_use]
pub mod deliveries;
pub mod retention;
pub mod settle;
pub mod sources;
pub mod streams;

macro_rules! event_type_columns {
    () => {
        "name, description, schema, deprecated, version, created_at, updated_at"
    };
}

macro_rules! destination_columns {
    () => {
        "id, name, kind, config, secrets, timeout_ms, connect_timeout_ms, retry, rate_limit, \
         circuit_breaker, enabled, version, created_at, updated_at"
    };
}

macro_rules! subscription_columns {
    () => {
        "id, name, destination_id, event_types, filter, transform, ordering, ordering_on_dead, \
         enabled, version, created_at, updated_at"
    };
}

macro_rules! api_key_columns {
    () => {
        "id, name, role, prefix, token_hash, created_at, revoked_at"
    };
}

// ---- events and deliveries ----------------------------------------------------------------

/// The first `$2` events of the flow `$1` in ingest order, without payloads: a range of
/// `events_correlation_id_seq` in its order.
pub const LINKS_OF_FLOW: &str = "SELECT event_id, event_type, causation_id, timestamp, received_at \
     FROM events WHERE correlation_id = $1 ORDER BY seq LIMIT $2";

pub const SELECT_EVENT: &str = concat!("SELECT ", event_columns!(), " FROM events WHERE event_id = $1");

/// Deliveries start with no attempts, carrying their subscription's ordering (`$6` ordered,
/// `$8` block on dead; see `deliveries::CLAIM`), due at once (`next_attempt_at` = `$9`, the
/// creation time) unless they must wait for their turn: an ordered delivery whose key already
/// has one pending or in flight (or dead, under `block`) waits with no `next_attempt_at` until
/// `deliveries::PROMOTE_NEXT` makes it due. Two or three seeks on
/// `deliveries_ordered_key_status_seq`.
macro_rules! insert_delivery {
    ($columns:expr, $values:expr) => {
        concat!(
            "INSERT INTO deliveries (id, event_id, subscription_id, \
             destination_id, status, attempt_count, next_attempt_at, ordering_key, ordered, \
             block_on_dead, created_at, updated_at",
            $columns,
            ") VALUES ($1, $2, $3, $4, $5, 0, \
             CASE WHEN $6 AND (EXISTS (SELECT 1 FROM deliveries AS queued WHERE queued.ordered \
                 AND queued.subscription_id = $3 AND queued.ordering_key = $7 \
                 AND queued.status IN ('pending', 'in_flight')) \
               OR ($8 AND EXISTS (SELECT 1 FROM deliveries AS queued WHERE queued.ordered \
                 AND queued.subscription_id = $3 AND queued.ordering_key = $7 \
                 AND queued.status = 'dead'))) \
             THEN NULL ELSE $9 END, \
             $7, $6, $8, $9, $9",
            $values,
            ")"
        )
    };
}
pub const INSERT_DELIVERY: &str = insert_delivery!("", "");

/// SQLite only: [`INSERT_DELIVERY`] writing the row's stream position (`changed`, see
/// [`next_change!`]) in the insert itself.
pub const SQLITE_INSERT_DELIVERY: &str = insert_delivery!(", changed", concat!(", ", next_change!()));

/// A delivery written leased to the node that ingests its event (`$6` until `$7`), so that
/// node runs it without a claim: what `deliveries::CLAIM` would have written on it, in flight
/// with one unfinished attempt (see `lease_claimed!`), created at `$5`. Only for unordered
/// subscriptions: an ordered delivery's turn is the claim's to decide. SQLite only (PostgreSQL
/// inserts them in arrays), so it writes the row's stream position too ([`next_change!`]).
pub const INSERT_LEASED_DELIVERY: &str = concat!(
    "INSERT INTO deliveries (id, event_id, subscription_id, \
     destination_id, status, attempt_count, unfinished_attempts, next_attempt_at, lease_owner, \
     lease_expires_at, ordering_key, ordered, block_on_dead, created_at, updated_at, changed) \
     VALUES ($1, $2, $3, $4, 'in_flight', 0, 1, $5, $6, $7, $8, FALSE, FALSE, $5, $5, ",
    next_change!(),
    ")"
);

/// PostgreSQL only: [`INSERT_LEASED_DELIVERY`] for many deliveries at once, one array per
/// column (the group ingest's `UNNEST` form).
pub const INSERT_LEASED_DELIVERIES: &str = "INSERT INTO deliveries (id, event_id, subscription_id, \
     destination_id, status, attempt_count, unfinished_attempts, next_attempt_at, lease_owner, \
     lease_expires_at, ordering_key, ordered, block_on_dead, created_at, updated_at) \
     SELECT id, event_id, subscription_id, destination_id, 'in_flight', 0, 1, created_at, \
     lease_owner, lease_expires_at, ordering_key, FALSE, FALSE, created_at, created_at \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::int8[], $8::int8[]) \
     AS d(id, event_id, subscription_id, destination_id, ordering_key, lease_owner, \
     lease_expires_at, created_at)";

pub const DELIVERIES_OF_EVENT: &str =
    concat!("SELECT ", delivery_columns!(), " FROM deliveries WHERE event_id = $1 ORDER BY seq");

/// A bound value of a query assembled at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Int(i64),
}

/// A query assembled from fixed fragments; only the set of conditions varies, never the text
/// of a value, so it is as safe as a constant.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl Assembled {
    fn new(head: &str) -> Self {
        Self { sql: head.to_owned(), binds: Vec::new() }
    }

    /// Appends `fragment` with its `{}` replaced by the next placeholder.
    fn push(&mut self, fragment: &str, value: Bind) {
        self.binds.push(value);
        let placeholder = format!("${}", self.binds.len());
        self.sql.push_str(&fragment.replace("{}", &placeholder));
    }
}

/// Builds the conditions of an event listing. Only the conditions present are written, so
/// each combination can use its index (`(event_type, seq)`, `(correlation_id, seq)`,
/// `(received_at, seq)`) and a cursor seeks rather than scans.
fn filter_events(mut query: Assembled, filter: &EventFilter, after: Option<i64>) -> Assembled {
    let mut joiner = " WHERE ";
    let mut condition = |query: &mut Assembled, fragment: &str, value: Bind| {
        query.sql.push_str(joiner);
        query.push(fragment, value);
        joiner = " AND ";
    };
    if let Some(event_type) = &filter.event_type {
        condition(&mut query, "event_type = {}", Bind::Text(event_type.as_str().to_owned()));
    }
    if let Some(correlation_id) = &filter.correlation_id {
        condition(&mut query, "correlation_id = {}", Bind::Text(correlation_id.clone()));
    }
    if let Some(since) = filter.since {
        condition(&mut query, "received_at >= {}", Bind::Int(since));
    }
    if let Some(until) = filter.until {
        condition(&mut query, "received_at < {}", Bind::Int(until));
    }
    if let Some(after) = after {
        condition(&mut query, "seq > {}", Bind::Int(after));
    }
    query
}

/// Events matching `filter` (and after `after`), in ingest order.
pub fn list_events(filter: &EventFilter, after: Option<i64>, limit: i64, offset: i64) -> Assembled {
    let mut query =
        filter_events(Assembled::new(concat!("SELECT ", event_columns!(), " FROM events")), filter, after);
    query.sql.push_str(" ORDER BY seq");
    query.push(" LIMIT {}", Bind::Int(limit));
    if offset > 0 {
        query.push(" OFFSET {}", Bind::Int(offset));
    }
    query
}

pub fn count_events(filter: &EventFilter) -> Assembled {
    filter_events(Assembled::new("SELECT COUNT(*) FROM events"), filter, None)
}

// ---- subscriptions ------------------------------------------------------------------------

/// What ingest routes by, read once per call.
pub const ENABLED_SUBSCRIPTIONS: &str =
    concat!("SELECT ", subscription_columns!(), " FROM subscriptions WHERE enabled ORDER BY created_at, id");

/// The paused destinations, whose deliveries an ingest never leases (claims pass over them):
/// `destinations_paused`, usually empty.
pub const PAUSED_DESTINATIONS: &str = "SELECT id FROM destinations WHERE NOT enabled";

pub const INSERT_SUBSCRIPTION: &str = concat!(
    "INSERT INTO subscriptions (",
    subscription_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);

pub const SELECT_SUBSCRIPTION: &str =
    concat!("SELECT ", subscription_columns!(), " FROM subscriptions WHERE id = $1");

pub const LIST_SUBSCRIPTIONS: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    " FROM subscriptions ORDER BY created_at, id LIMIT $1 OFFSET $2"
);

pub const COUNT_SUBSCRIPTIONS: &str = "SELECT COUNT(*) FROM subscriptions";

pub const LIST_SUBSCRIPTIONS_OF_DESTINATION: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    " FROM subscriptions WHERE destination_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3"
);

pub const COUNT_SUBSCRIPTIONS_OF_DESTINATION: &str =
    "SELECT COUNT(*) FROM subscriptions WHERE destination_id = $1";

pub const UPDATE_SUBSCRIPTION: &str = concat!(
    "UPDATE subscriptions SET name = $1, destination_id = $2, event_types = $3, filter = $4, \
     transform = $5, ordering = $6, ordering_on_dead = $7, enabled = $8, version = version + 1, \
     updated_at = $9 WHERE id = $10 AND version = $11 RETURNING ",
    subscription_columns!()
);

pub const SUBSCRIPTION_VERSION: &str = "SELECT version FROM subscriptions WHERE id = $1";

pub const DELETE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = $1";

// ---- destinations -------------------------------------------------------------------------

pub const INSERT_DESTINATION: &str = concat!(
    "INSERT INTO destinations (",
    destination_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);

pub const SELECT_DESTINATION: &str =
    concat!("SELECT ", destination_columns!(), " FROM destinations WHERE id = $1");

pub const DESTINATION_EXISTS: &str = "SELECT COUNT(*) FROM destinations WHERE id = $1";

pub const LIST_DESTINATIONS: &str = concat!(
    "SELECT ",
    destination_columns!(),
    " FROM destinations ORDER BY created_at, id LIMIT $1 OFFSET $2"
);

pub const COUNT_DESTINATIONS: &str = "SELECT COUNT(*) FROM destinations";

pub const UPDATE_DESTINATION: &str = concat!(
    "UPDATE destinations SET name = $1, kind = $2, config = $3, secrets = $4, timeout_ms = $5, \
     connect_timeout_ms = $6, retry = $7, rate_limit = $8, circuit_breaker = $9, enabled = $10, \
     version = version + 1, updated_at = $11 WHERE id = $12 AND version = $13 RETURNING ",
    destination_columns!()
);

pub const DESTINATION_VERSION: &str = "SELECT version FROM destinations WHERE id = $1";

pub const DELETE_DESTINATION: &str = "DELETE FROM destinations WHERE id = $1";

// ---- event types --------------------------------------------------------------------------

pub const INSERT_EVENT_TYPE: &str =
    concat!("INSERT INTO event_types (", event_type_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)");

pub const SELECT_EVENT_TYPE: &str =
    concat!("SELECT ", event_type_columns!(), " FROM event_types WHERE name = $1");

pub const LIST_EVENT_TYPES: &str =
    concat!("SELECT ", event_type_columns!(), " FROM event_types ORDER BY name LIMIT $1 OFFSET $2");

pub const COUNT_EVENT_TYPES: &str = "SELECT COUNT(*) FROM event_types";

pub const UPDATE_EVENT_TYPE: &str = concat!(
    "UPDATE event_types SET description = $1, schema = $2, deprecated = $3, version = version + 1, \
     updated_at = $4 WHERE name = $5 AND version = $6 RETURNING ",
    event_type_columns!()
);

pub const EVENT_TYPE_VERSION: &str = "SELECT version FROM event_types WHERE name = $1";

pub const DELETE_EVENT_TYPE: &str = "DELETE FROM event_types WHERE name = $1";

// ---- API keys -----------------------------------------------------------------------------

pub const INSERT_API_KEY: &str =
    concat!("INSERT INTO api_keys (", api_key_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)");

pub const FIND_ACTIVE_API_KEY: &str =
    concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE token_hash = $1 AND revoked_at IS NULL");

pub const LIST_ACTIVE_API_KEYS: &str = concat!(
    "SELECT ",
    api_key_columns!(),
    " FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id LIMIT $1 OFFSET $2"
);

pub const COUNT_ACTIVE_API_KEYS: &str = "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL";

pub const REVOKE_API_KEY: &str = "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";

// ---- idempotency keys ---------------------------------------------------------------------

/// Forgets a record older than the cutoff, whether an abandoned claim or an expired response.
/// Forgets the record of `$2` in `$1` if it was created before `$3`, or before `$4` and still
/// has no response (`status` is set with it).
pub const DELETE_STALE_IDEMPOTENCY_KEY: &str = "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 \
     AND (created_at < $3 OR (status IS NULL AND created_at < $4))";

pub const CLAIM_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO NOTHING";

pub const SELECT_IDEMPOTENCY_KEY: &str =
    "SELECT request_hash, status, location, body FROM idempotency_keys WHERE scope = $1 AND key = $2";

/// Stores the response of the claim of `$5` in `$4` made at `$6`, not of a later one.
pub const COMPLETE_IDEMPOTENCY_KEY: &str = "UPDATE idempotency_keys SET status = $1, location = $2, \
     body = $3 WHERE scope = $4 AND key = $5 AND created_at = $6";

/// Forgets the claim of `$2` in `$1` made at `$3`, not a later one.
pub const RELEASE_IDEMPOTENCY_KEY: &str =
    "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3";

// ---- audit log ----------------------------------------------------------------------------

macro_rules! audit_columns {
    () => {
        "seq, id, at, actor, role, action, method, route, resource_type, resource_id, request_id, \
         status, success"
    };
}

/// An `INSERT` of `rows` audit entries, twelve numbered parameters a row in column order.
pub fn insert_audit_entries(rows: usize) -> String {
    const COLUMNS: usize = 12;
    let mut statement = String::from(
        "INSERT INTO audit_log (id, at, actor, role, action, method, route, resource_type, \
         resource_id, request_id, status, success) VALUES ",
    );
    for row in 0..rows {
        statement.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..COLUMNS {
            if column > 0 {
                statement.push_str(", ");
            }
            statement.push('$');
            statement.push_str(&(row * COLUMNS + column + 1).to_string());
        }
        statement.push(')');
    }
    statement
}

/// Builds the conditions of an audit listing, as [`filter_events`] does for events: each
/// combination seeks on its index (`(actor, seq)`, `(action, seq)`, `(at, seq)`).
fn filter_audit(mut query: Assembled, filter: &AuditFilter, after: Option<i64>) -> Assembled {
    let mut joiner = " WHERE ";
    let mut condition = |query: &mut Assembled, fragment: &str, value: Bind| {
        query.sql.push_str(joiner);
        query.push(fragment, value);
        joiner = " AND ";
    };
    if let Some(actor) = &filter.actor {
        condition(&mut query, "actor = {}", Bind::Text(actor.clone()));
    }
    if let Some(action) = &filter.action {
        condition(&mut query, "action = {}", Bind::Text(action.clone()));
    }
    if let Some(since) = filter.since {
        condition(&mut query, "at >= {}", Bind::Int(since));
    }
    if let Some(until) = filter.until {
        condition(&mut query, "at < {}", Bind::Int(until));
    }
    if let Some(after) = after {
        condition(&mut query, "seq > {}", Bind::Int(after));
    }
    query
}

/// Audit entries matching `filter` (and after `after`), in append order.
pub fn list_audit_log(filter: &AuditFilter, after: Option<i64>, limit: i64, offset: i64) -> Assembled {
    let mut query =
        filter_audit(Assembled::new(concat!("SELECT ", audit_columns!(), " FROM audit_log")), filter, after);
    query.sql.push_str(" ORDER BY seq");
    query.push(" LIMIT {}", Bind::Int(limit));
    if offset > 0 {
        query.push(" OFFSET {}", Bind::Int(offset));
    }
    query
}

pub fn count_audit_log(filter: &AuditFilter) -> Assembled {
    filter_audit(Assembled::new("SELECT COUNT(*) FROM audit_log"), filter, None)
}

// ---- secrets at rest ----------------------------------------------------------------------

pub const ALL_DESTINATION_SECRETS: &str = "SELECT id, secrets FROM destinations ORDER BY id";

pub const RESEAL_DESTINATION_SECRETS: &str = "UPDATE destinations SET secrets = $1 WHERE id = $2";

/// The first bytes of every kept response: enough to tell plaintext from sealed and the key.
pub const IDEMPOTENCY_BODY_HEADS: &str = "SELECT scope, key, substr(body, 1, 12) FROM idempotency_keys \
     WHERE body IS NOT NULL ORDER BY scope, key";

pub const IDEMPOTENCY_BODY: &str = "SELECT body FROM idempotency_keys WHERE scope = $1 AND key = $2";

pub const RESEAL_IDEMPOTENCY_BODY: &str =
    "UPDATE idempotency_keys SET body = $1 WHERE scope = $2 AND key = $3";

// ---- schema -------------------------------------------------------------------------------

/// The migrations sqlx recorded as applied, to compare with the embedded ones.
pub const APPLIED_MIGRATIONS: &str = "SELECT version, checksum FROM _sqlx_migrations WHERE success";

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::event::EventType;

    /// Placeholders must be numbered in order of first appearance with no gaps, or the same
    /// text would bind differently on the two backends.
    fn placeholders_in_order(sql: &str) -> bool {
        let mut highest = 0;
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            let digits: String = rest[at + 1..].chars().take_while(char::is_ascii_digit).collect();
            let n: usize = digits.parse().unwrap_or(0);
            if n > highest + 1 || n == 0 {
                return false;
            }
            highest = highest.max(n);
            rest = &rest[at + 1 + digits.len()..];
        }
        true
    }

    #[test]
    fn constant_queries_number_placeholders_in_order() {
        for sql in [
            SELECT_EVENT,
            LINKS_OF_FLOW,
            INSERT_DELIVERY,
            SQLITE_INSERT_DELIVERY,
            INSERT_LEASED_DELIVERY,
            INSERT_LEASED_DELIVERIES,
            PAUSED_DESTINATIONS,
            INSERT_SUBSCRIPTION,
            UPDATE_SUBSCRIPTION,
            LIST_SUBSCRIPTIONS_OF_DESTINATION,
            INSERT_DESTINATION,
            UPDATE_DESTINATION,
            INSERT_EVENT_TYPE,
            UPDATE_EVENT_TYPE,
            INSERT_API_KEY,
            REVOKE_API_KEY,
            DELETE_STALE_IDEMPOTENCY_KEY,
            CLAIM_IDEMPOTENCY_KEY,
            COMPLETE_IDEMPOTENCY_KEY,
            &insert_audit_entries(3),
            RESEAL_DESTINATION_SECRETS,
            IDEMPOTENCY_BODY,
            RESEAL_IDEMPOTENCY_BODY,
            deliveries::CLAIM,
            deliveries::CLAIM_AROUND_HELD,
            deliveries::HELD_BACKLOG,
            deliveries::NEXT_DUE_AT,
            deliveries::NEXT_DUE_AROUND_HELD,
            deliveries::SETTLE_DELIVERY,
            deliveries::PROMOTE_NEXT,
            deliveries::INSERT_ATTEMPT,
            deliveries::RELEASE_LEASES,
            deliveries::RETRY_DELIVERY,
            deliveries::PRUNE_ATTEMPTS,
            deliveries::PRUNE_DELIVERIES,
            deliveries::PRUNE_EVENTS,
            retention::PRUNE_AUDIT_LOG,
            retention::PRUNE_IDEMPOTENCY_KEYS,
            retention::PRUNE_AUDIT_LOG_BY_ARRAY,
            retention::PRUNE_IDEMPOTENCY_KEYS_BY_CTID,
            flow::ENSURE_FLOW,
            flow::INSERT_FLOW,
            flow::UPDATE_FLOW,
            flow::DEFER_DELIVERY,
            settle::SETTLE_DELIVERIES,
            settle::INSERT_ATTEMPTS,
            settle::PROMOTE_NEXT_OF_EACH,
            settle::SELECT_FLOWS,
            sources::INSERT_SOURCE,
            sources::SELECT_SOURCE,
            sources::LIST_SOURCES,
            sources::UPDATE_SOURCE,
            sources::RESEAL_SOURCE_SECRETS,
            streams::SQLITE_STREAM_EVENTS,
            streams::SQLITE_STREAM_DELIVERIES,
            streams::PG_STREAM_EVENTS,
            streams::PG_STREAM_DELIVERIES,
        ] {
            assert!(placeholders_in_order(sql), "{sql}");
        }
    }

    /// No trigger numbers the deliveries SQLite inserts (migration 0017): each insert writes its
    /// stream position itself.
    #[test]
    fn sqlite_inserts_of_deliveries_write_their_stream_position() {
        for sql in [SQLITE_INSERT_DELIVERY, INSERT_LEASED_DELIVERY] {
            let columns = &sql[..sql.find(')').expect("a column list")];
            assert!(columns.ends_with(", changed"), "{sql}");
        }
    }

    #[test]
    fn event_listings_write_only_the_conditions_given() {
        let plain = list_events(&EventFilter::default(), None, 21, 0);
        assert_eq!(plain.binds, [Bind::Int(21)]);
        assert!(!plain.sql.contains("WHERE"));

        let filter = EventFilter {
            event_type: Some(EventType::from_trusted("a.b")),
            since: Some(5),
            ..EventFilter::default()
        };
        let query = list_events(&filter, Some(9), 11, 40);
        assert!(
            query.sql.contains("WHERE event_type = $1 AND received_at >= $2 AND seq > $3"),
            "{}",
            query.sql
        );
        assert!(query.sql.ends_with("ORDER BY seq LIMIT $4 OFFSET $5"), "{}", query.sql);
        assert_eq!(
            query.binds,
            [Bind::Text("a.b".into()), Bind::Int(5), Bind::Int(9), Bind::Int(11), Bind::Int(40)]
        );
        assert_eq!(
            count_events(&filter).sql,
            "SELECT COUNT(*) FROM events WHERE event_type = $1 AND received_at >= $2"
        );
    }

    #[test]
    fn audit_listings_write_only_the_conditions_given() {
        let plain = list_audit_log(&AuditFilter::default(), None, 21, 0);
        assert_eq!(plain.binds, [Bind::Int(21)]);
        assert!(!plain.sql.contains("WHERE"));

        let filter = AuditFilter {
            actor: Some("key_1".into()),
            action: Some("destination.create".into()),
            until: Some(9),
            ..AuditFilter::default()
        };
        let query = list_audit_log(&filter, Some(3), 11, 0);
        assert!(
            query.sql.contains("WHERE actor = $1 AND action = $2 AND at < $3 AND seq > $4"),
            "{}",
            query.sql
        );
        assert!(query.sql.ends_with("ORDER BY seq LIMIT $5"), "{}", query.sql);
        assert_eq!(
            count_audit_log(&filter).sql,
            "SELECT COUNT(*) FROM audit_log WHERE actor = $1 AND action = $2 AND at < $3"
        );
    }
}
