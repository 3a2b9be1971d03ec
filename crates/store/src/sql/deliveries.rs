//! The delivery engine's queries: claims and leases, attempts, dead letters and retention.
//!
//! Statuses in the constant queries are literals, not parameters: the planner can then match
//! them to the partial retention index, and a test checks every literal against
//! `DeliveryStatus`. Each query notes the index SQLite serves it from (checked by
//! `EXPLAIN QUERY PLAN` in the backend's tests); none walks the whole table.

use switchyard_core::delivery::{DeliveryFilter, DeliveryStatus};

use super::{Assembled, Bind};

macro_rules! attempt_columns {
    () => {
        "delivery_id, number, started_at, duration_ms, outcome, status_code, error, response_body"
    };
}

/// Whether the delivery `settled` settled for good and so lets the next of its key go: it is
/// ordered, and succeeded, was filtered, or died without `block_on_dead`.
macro_rules! releases_its_key {
    () => {
        "settled.ordered AND (settled.status IN ('succeeded', 'filtered') \
         OR (settled.status = 'dead' AND NOT settled.block_on_dead))"
    };
}

/// Whether the delivery's destination exists and is not paused, for a query on `deliveries`.
macro_rules! destination_enabled {
    () => {
        "EXISTS (SELECT 1 FROM destinations WHERE destinations.id = deliveries.destination_id \
         AND destinations.enabled)"
    };
}

/// Whether ordering lets a pending row of `deliveries` go now. An unordered delivery always
/// may. An ordered one (its subscription has `ordering: key` and the event an
/// `ordering_key`) goes only as the head of its queue, the deliveries of one subscription
/// with one key: none of them is in flight, none is pending before it (a delivery waiting for
/// a retry keeps its place), and, under `ordering_on_dead: block`, none before it is dead.
/// "Before" is `seq`, the order of ingest. Each question is a seek on the partial index
/// `deliveries_ordered_key_status_seq` (`subscription_id, ordering_key, status, seq`), which
/// holds only ordered rows (hence `queued.ordered`).
macro_rules! ordering_allows {
    () => {
        "(NOT deliveries.ordered OR deliveries.ordering_key IS NULL OR (\
         NOT EXISTS (SELECT 1 FROM deliveries AS queued WHERE queued.ordered \
         AND queued.subscription_id = deliveries.subscription_id \
         AND queued.ordering_key = deliveries.ordering_key AND queued.status = 'in_flight') \
         AND NOT EXISTS (SELECT 1 FROM deliveries AS queued WHERE queued.ordered \
         AND queued.subscription_id = deliveries.subscription_id \
         AND queued.ordering_key = deliveries.ordering_key AND queued.status = 'pending' \
         AND queued.seq < deliveries.seq) \
         AND (NOT deliveries.block_on_dead OR NOT EXISTS (SELECT 1 FROM deliveries AS queued \
         WHERE queued.ordered AND queued.subscription_id = deliveries.subscription_id \
         AND queued.ordering_key = deliveries.ordering_key AND queued.status = 'dead' \
         AND queued.seq < deliveries.seq))))"
    };
}

/// The expired leases a claim reclaims at `$3`, at most `$4`: a range of
/// `deliveries_status_lease_expires_at` (`status = ? AND lease_expires_at <= ?`) in its
/// order, each checking its destination through the primary key of `destinations`. `$lock`
/// is empty, or PostgreSQL's row-locking clause.
macro_rules! expired_leases {
    ($lock:literal) => {
        concat!(
            "SELECT seq, next_attempt_at FROM (\
                 SELECT seq, next_attempt_at FROM deliveries \
                 WHERE status = 'in_flight' AND lease_expires_at <= $3 AND ",
            destination_enabled!(),
            " ORDER BY lease_expires_at, seq LIMIT $4",
            $lock,
            ") AS expired"
        )
    };
}

/// The destinations a claim may take deliveries of at `$now`, for a query on
/// `destinations`: enabled, and not blocked by flow control (circuit open or probing, or no
/// rate token).
macro_rules! sending {
    ($now:literal) => {
        concat!("destinations.enabled AND ", flow_admits!("destinations.id", $now))
    };
}

/// `$columns` of the first `$limit` pending deliveries of the destination `$destination` (a
/// column) that ordering lets go, `$due` bounding `next_attempt_at`, in due order: a range of
/// the partial index `deliveries_pending_destination_id_next_attempt_at` (`destination_id,
/// next_attempt_at`), read in order. `$lock` is empty, or PostgreSQL's row-locking clause.
macro_rules! lane {
    ($columns:literal, $destination:literal, $due:literal, $limit:literal, $lock:literal) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM deliveries WHERE status = 'pending' AND deliveries.destination_id = ",
            $destination,
            " AND next_attempt_at ",
            $due,
            " AND ",
            ordering_allows!(),
            " ORDER BY next_attempt_at, seq LIMIT ",
            $limit,
            $lock
        )
    };
}

/// `$column` of the head of the lane of `destinations.id`, `$due` bounding it: one seek.
macro_rules! lane_head {
    ($column:literal, $due:literal) => {
        concat!("(", lane!($column, "destinations.id", $due, "1", ""), ")")
    };
}

/// The at most `$4` sending destinations with the earliest heads due at `$3`, as `lanes`
/// (`destination_id`), earliest by due time and then by `seq`, the due queue's order. The first
/// `$4` deliveries in due order all belong to these: any other destination's head comes after
/// `$4` heads. Each head's time is read by its `seq` (the primary key).
macro_rules! lanes {
    () => {
        concat!(
            "SELECT destination_id FROM (SELECT destination_id, head_seq, (SELECT head.next_attempt_at \
             FROM deliveries AS head WHERE head.seq = head_seq) AS head_at FROM (\
             SELECT destinations.id AS destination_id, ",
            lane_head!("seq", "<= $3"),
            " AS head_seq FROM destinations WHERE ",
            sending!("$3"),
            ") AS heads WHERE head_seq IS NOT NULL) AS timed ORDER BY head_at, head_seq LIMIT $4"
        )
    };
}

/// Of the lane `lanes.destination_id`, the first `$4` pending deliveries due at `$3` that
/// ordering lets go, in due order, as `$columns`. `$lock` as in `lane!`.
macro_rules! lane_due {
    ($columns:literal, $lock:literal) => {
        lane!($columns, "lanes.destination_id", "<= $3", "$4", $lock)
    };
}

/// The update of a PostgreSQL claim, given the CTE `claimable` (`claimed_seq`).
macro_rules! claim_claimable {
    () => {
        concat!(
            "UPDATE deliveries SET ",
            lease_claimed!(),
            " FROM claimable WHERE deliveries.seq = claimable.claimed_seq RETURNING ",
            delivery_columns!()
        )
    };
}

/// Whether the destination `$destination` (a column) has a pending delivery due at `$1`.
macro_rules! pending_due {
    ($destination:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM deliveries WHERE status = 'pending' AND deliveries.destination_id = ",
            $destination,
            " AND next_attempt_at <= $1)"
        )
    };
}

/// Leases up to `$4` claimable deliveries to `$1` until `$2` at time `$3`, answering them.
///
/// Two branches, each an ordered index range cut off at the limit, so a claim reads about
/// `limit` index entries however large the backlog:
/// - due pending rows: `deliveries_status_next_attempt_at` (`status = ? AND next_attempt_at
///   <= ?`), already in `(next_attempt_at, seq)` order since SQLite ends every index with the
///   rowid, so there is no sort;
/// - expired leases (`expired_leases!`);
///
/// each checking its destination through the primary key of `destinations`. Only the at most
/// 2 × limit rows of the two branches are sorted, and the update finds them by rowid.
///
/// A held destination's due rows (paused, or blocked by flow control) would be skipped one by
/// one here, so a large held backlog at the head of the queue would cost every claim a walk
/// over it: while one has due rows ([`HELD_BACKLOG`]), claims run [`CLAIM_AROUND_HELD`]
/// instead. Without one, this claim takes no row of a paused destination, and those of a
/// destination blocked since are handed back by the engine's gate.
///
/// Ordered subscriptions (`ordering_allows!`): a due row that is not the head of its key's
/// queue is skipped the same way, each with up to three index seeks; a key's backlog behind a
/// head in flight or waiting for its retry is walked by every claim until the head settles.
/// The subqueries read the table as it was before the update, so one claim takes at most one
/// delivery per key, and none of a key with a delivery in flight. An expired lease is
/// reclaimed without the check: it was its key's head when first claimed, and its key waits
/// for it.
///
/// Only the writer runs it, inside `BEGIN IMMEDIATE`, so two claims never see the same row as
/// claimable. PostgreSQL, with concurrent claimers, runs [`CLAIM_SKIP_LOCKED`] instead.
pub const CLAIM: &str = concat!(
    "UPDATE deliveries SET ",
    lease_claimed!(),
    " WHERE seq IN (SELECT seq FROM (\
         SELECT seq, next_attempt_at FROM (\
             SELECT seq, next_attempt_at FROM deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $3 AND ",
    destination_enabled!(),
    " AND ",
    ordering_allows!(),
    " ORDER BY next_attempt_at, seq LIMIT $4) AS due \
         UNION ALL ",
    expired_leases!(""),
    ") AS claimable ORDER BY next_attempt_at, seq LIMIT $4) \
     RETURNING ",
    delivery_columns!()
);

/// [`CLAIM`] while a held destination has due deliveries: the due branch walks the
/// destinations that may send instead of the due queue. It reads each one's head (`lanes!`:
/// a seek per destination), keeps the `$4` earliest, and takes up to `$4` due rows of each
/// (`lane_due!`); the at most `$4`² rows are sorted and cut at `$4`, which gives the same
/// deliveries as [`CLAIM`] would with the held ones left out. Its cost grows with the number
/// of destinations, not with the held backlog, which it never reads. Bound like [`CLAIM`].
pub const CLAIM_AROUND_HELD: &str = concat!(
    "UPDATE deliveries SET ",
    lease_claimed!(),
    " WHERE seq IN (SELECT seq FROM (\
         SELECT picked.seq AS seq, picked.next_attempt_at AS next_attempt_at FROM (",
    lanes!(),
    ") AS lanes JOIN deliveries AS picked ON picked.seq IN (",
    lane_due!("seq", ""),
    ") UNION ALL ",
    expired_leases!(""),
    ") AS claimable ORDER BY next_attempt_at, seq LIMIT $4) \
     RETURNING ",
    delivery_columns!()
);

/// [`CLAIM`] for many concurrent claimers (PostgreSQL): the same two branches and checks,
/// each locking the rows it answers with `FOR UPDATE OF deliveries SKIP LOCKED`, so claims of
/// several nodes take disjoint rows without waiting for each other. A row another claim
/// changed and committed meanwhile is checked again on its new version (and dropped when it
/// is no longer due), so a delivery is leased once. The ordering checks see other claims'
/// rows too: a key's head locked by another claim still reads `pending` (before it), or
/// `in_flight` once committed, so the rows behind it wait either way. Both branches read
/// their index (`deliveries_status_next_attempt_at` and `deliveries_status_lease_expires_at`,
/// both ending in `seq` on PostgreSQL); with a backlog the planner reads it in order and stops
/// at the limit, with a handful of due rows it may sort that handful (see `postgres::plans`). Bound like
/// `CLAIM` (owner, lease end, now, limit); only PostgreSQL runs it, so its placeholders may
/// appear out of order.
pub const CLAIM_SKIP_LOCKED: &str = concat!(
    "WITH claimable AS (SELECT seq AS claimed_seq FROM (\
         SELECT seq, next_attempt_at FROM (\
             SELECT seq, next_attempt_at FROM deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $3 AND ",
    destination_enabled!(),
    " AND ",
    ordering_allows!(),
    " ORDER BY next_attempt_at, seq LIMIT $4 FOR UPDATE OF deliveries SKIP LOCKED) AS due \
         UNION ALL ",
    expired_leases!(" FOR UPDATE OF deliveries SKIP LOCKED"),
    ") AS candidates ORDER BY next_attempt_at, seq LIMIT $4) ",
    claim_claimable!()
);

/// [`CLAIM_AROUND_HELD`] for many concurrent claimers (PostgreSQL): each lane's rows are read
/// by a `LATERAL` subquery locking them as [`CLAIM_SKIP_LOCKED`] does. A lane's head locked by
/// another claim still counts as its head, and the lane then gives what is left of it.
pub const CLAIM_SKIP_LOCKED_AROUND_HELD: &str = concat!(
    "WITH lanes AS (",
    lanes!(),
    "), claimable AS (SELECT seq AS claimed_seq FROM (\
         SELECT picked.seq, picked.next_attempt_at FROM lanes CROSS JOIN LATERAL (",
    lane_due!("seq, next_attempt_at", " FOR UPDATE OF deliveries SKIP LOCKED"),
    ") AS picked UNION ALL ",
    expired_leases!(" FOR UPDATE OF deliveries SKIP LOCKED"),
    ") AS candidates ORDER BY next_attempt_at, seq LIMIT $4) ",
    claim_claimable!()
);

/// Whether a paused or flow-blocked destination has deliveries due at `$1`: the claim then
/// runs [`CLAIM_AROUND_HELD`]. Reads the paused destinations (`destinations_paused`) and the
/// blocked ones (`destination_flow_blocked_until`), and for each one seek on
/// `deliveries_pending_destination_id_next_attempt_at`; nothing else.
pub const HELD_BACKLOG: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM destinations WHERE NOT destinations.enabled AND ",
    pending_due!("destinations.id"),
    ") OR EXISTS (SELECT 1 FROM destination_flow WHERE destination_flow.blocked_until > $1 AND ",
    pending_due!("destination_flow.destination_id"),
    ")"
);

/// Settles an attempt on the delivery `$5` if `$6` still holds its lease; no row when it does
/// not. Served by the unique index on `id`.
/// The lease's attempt is recorded, so it no longer counts as unfinished. SQLite only
/// (PostgreSQL settles in arrays): the status change writes its stream position, and the row
/// answers its destination and whether it has an ordering key, so the settle reads neither
/// again. `OR FAIL`: the group writer undoes a failed job whole (its transaction or its
/// savepoint), so the statement needs no journal of its own to be undone alone, which SQLite
/// would keep for an update of a table with triggers that may abort half-way.
pub const SETTLE_DELIVERY: &str = concat!(
    "UPDATE OR FAIL deliveries SET status = $1, next_attempt_at = $2, \
     attempt_count = attempt_count + 1, unfinished_attempts = 0, last_error = $3, \
     lease_owner = NULL, lease_expires_at = NULL, updated_at = $4, changed = ",
    next_change!(),
    " WHERE id = $5 AND status = 'in_flight' AND lease_owner = $6 \
     RETURNING destination_id, ordering_key IS NOT NULL"
);

/// After the delivery `$2` settled for good (succeeded, filtered, or dead without
/// `block_on_dead`), makes the first pending delivery of its key due at `$1` if it was waiting
/// for its turn (no `next_attempt_at`; see `INSERT_DELIVERY`). A no-op for an unordered
/// delivery, a retry, or a head that is due already. Run in the transaction of
/// `SETTLE_DELIVERY`; the settled row is found by the unique index on `id`, the next one by
/// a seek on `deliveries_ordered_key_status_seq`.
pub const PROMOTE_NEXT: &str = concat!(
    "UPDATE deliveries SET next_attempt_at = $1, updated_at = $1 \
     WHERE next_attempt_at IS NULL AND seq = (SELECT waiting.seq FROM deliveries AS settled \
     JOIN deliveries AS waiting ON waiting.ordered \
         AND waiting.subscription_id = settled.subscription_id \
         AND waiting.ordering_key = settled.ordering_key AND waiting.status = 'pending' \
     WHERE settled.id = $2 AND ",
    releases_its_key!(),
    " ORDER BY waiting.seq LIMIT 1)"
);

/// Appends an attempt numbered after the delivery's last one (the primary key serves the
/// `MAX`). Run in the same transaction as `SETTLE_DELIVERY`, under the write lock. One row of
/// `VALUES`, not `INSERT … SELECT`: SQLite takes the latter for a write of many rows and keeps a
/// statement journal for it, as the foreign key may fail half-way.
pub const INSERT_ATTEMPT: &str = concat!(
    "INSERT INTO attempts (",
    attempt_columns!(),
    ") VALUES ($1, (SELECT COALESCE(MAX(number), 0) + 1 FROM attempts WHERE delivery_id = $1), \
     $2, $3, $4, $5, $6, $7)"
);

/// Hands the leases of `$2` back as due at `$1`, unused (`lease_handed_back!`). Served by
/// `deliveries_status_lease_expires_at` (`status = ?`): only in-flight rows are read.
pub const RELEASE_LEASES: &str = concat!(
    "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, lease_owner = NULL, \
     lease_expires_at = NULL, updated_at = $1, ",
    lease_handed_back!(),
    " WHERE status = 'in_flight' AND lease_owner = $2"
);

/// Leases renewed by one statement, at most (within both backends' parameter limits).
pub const RENEW_CHUNK: usize = 500;

/// Extends to `$1` the leases `$2` holds on the deliveries `$3`…`$(ids + 2)`: those its
/// workers are still running, so an attempt that outlives the lease (a slow destination) is
/// not claimed by another node meanwhile, while a delivery the node gave up on (a failed
/// record) still expires. Reads only in-flight rows (`deliveries_status_lease_expires_at`) or
/// the named ones (the unique index on `id`).
pub fn renew_leases(ids: usize) -> String {
    let placeholders: Vec<String> = (3..ids + 3).map(|n| format!("${n}")).collect();
    format!(
        "UPDATE deliveries SET lease_expires_at = $1 \
         WHERE status = 'in_flight' AND lease_owner = $2 AND id IN ({})",
        placeholders.join(", ")
    )
}

/// The first expiry of a lease of an enabled destination, as `due`: the head of
/// `deliveries_status_lease_expires_at`.
macro_rules! lease_due {
    () => {
        concat!(
            "SELECT due FROM (SELECT lease_expires_at AS due FROM deliveries \
             WHERE status = 'in_flight' AND lease_expires_at IS NOT NULL AND ",
            destination_enabled!(),
            " ORDER BY lease_expires_at LIMIT 1) AS lease_due"
        )
    };
}

/// The earliest instant a claim could find something: the first due time of a pending
/// delivery that ordering lets go, or the first expiry of a lease, of an enabled destination.
/// Each branch reads the head of its index (`deliveries_status_next_attempt_at`,
/// `deliveries_status_lease_expires_at`) and stops at the first row a claim would take, so a
/// key waiting behind its head does not make the dispatcher spin. Asked when no held
/// destination has due deliveries ([`HELD_BACKLOG`]), as [`CLAIM`] is.
pub const NEXT_DUE_AT: &str = concat!(
    "SELECT MIN(due) FROM (\
         SELECT due FROM (\
             SELECT next_attempt_at AS due FROM deliveries \
             WHERE status = 'pending' AND next_attempt_at IS NOT NULL AND ",
    destination_enabled!(),
    " AND ",
    ordering_allows!(),
    " ORDER BY next_attempt_at LIMIT 1) AS pending_due \
         UNION ALL ",
    lease_due!(),
    ") AS due_times"
);

/// [`NEXT_DUE_AT`] while a held destination has due deliveries, as [`CLAIM_AROUND_HELD`]
/// claims: the earliest head due by `$1` (the end of time, in practice) among the destinations
/// that may send at `$2`, a seek each, or the first expiry of a lease. The bound keeps the
/// head a range of `deliveries_pending_destination_id_next_attempt_at` read in order, which
/// the planner might otherwise trade for `deliveries_status_destination_id_seq` and a sort of
/// the whole backlog. What a blocked destination waits for is the engine's `next_unblock_at`.
pub const NEXT_DUE_AROUND_HELD: &str = concat!(
    "SELECT MIN(due) FROM (SELECT MIN(head) AS due FROM (SELECT ",
    lane_head!("next_attempt_at", "<= $1"),
    " AS head FROM destinations WHERE ",
    sending!("$2"),
    ") AS heads UNION ALL ",
    lease_due!(),
    ") AS due_times"
);

/// Per destination with pending deliveries: how many, and when the first in ingest order was
/// created. One ordered pass over the `status = 'pending'` range of
/// `deliveries_status_destination_id_seq` (index only; on SQLite the pending lanes,
/// `deliveries_pending_destination_id_next_attempt_at`, which hold those rows alone), then a
/// primary-key seek per destination.
pub const PENDING_TALLIES: &str = "SELECT tally.destination_id, tally.pending, first.created_at \
     FROM (SELECT destination_id, COUNT(*) AS pending, MIN(seq) AS first_seq FROM deliveries \
     WHERE status = 'pending' GROUP BY destination_id) AS tally \
     JOIN deliveries AS first ON first.seq = tally.first_seq";

/// Per destination with dead deliveries, how many: the `status = 'dead'` range of
/// `deliveries_status_destination_id_seq`, index only.
pub const DEAD_TALLIES: &str =
    "SELECT destination_id, COUNT(*) FROM deliveries WHERE status = 'dead' GROUP BY destination_id";

/// The destinations with a succeeded delivery: per destination, its deliveries in order until
/// a succeeded one, through `deliveries_destination_id_seq` (on SQLite,
/// `deliveries_status_destination_id_seq` holds no succeeded row).
/// A destination that has never delivered is read in full; only the status report asks. The
/// status is tested as `(…) IS TRUE` so that SQLite does not walk its partial index of every
/// succeeded delivery (`deliveries_succeeded_updated_at`) for each destination instead.
pub const SUCCEEDED_DESTINATIONS: &str = "SELECT id FROM destinations WHERE EXISTS (SELECT 1 \
     FROM deliveries WHERE deliveries.destination_id = destinations.id \
     AND (status = 'succeeded') IS TRUE)";

pub const SELECT_DELIVERY: &str = concat!("SELECT ", delivery_columns!(), " FROM deliveries WHERE id = $1");

pub const DELIVERY_STATUS: &str = "SELECT status FROM deliveries WHERE id = $1";

/// Served by the primary key of `attempts`, in its order.
pub const ATTEMPTS_OF: &str =
    concat!("SELECT ", attempt_columns!(), " FROM attempts WHERE delivery_id = $1 ORDER BY number");

/// Makes the delivery `$2` due at `$1` with a fresh budget, if it is pending or dead: of
/// attempts, and of leases that may end without one.
pub const RETRY_DELIVERY: &str = concat!(
    "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, attempt_count = 0, \
     unfinished_attempts = 0, updated_at = $1 WHERE id = $2 AND status IN ('pending', 'dead') \
     RETURNING ",
    delivery_columns!()
);

/// The oldest finished deliveries (succeeded or filtered) last updated before `$1`, at most
/// `$2` of them. Two branches, as in `CLAIM`: each a range of its partial index
/// (`deliveries_succeeded_updated_at`, `deliveries_filtered_updated_at`) in its order, cut at
/// the limit, so only 2 × limit rows are sorted. The same text selects the attempts and the
/// deliveries to delete, and both name one set as long as no one else prunes between them:
/// nothing else makes a finished delivery unfinished or gives it an older `updated_at`. On
/// SQLite the write transaction holds the whole database; on PostgreSQL each statement sees
/// what committed before it, so a prune first takes an advisory lock that only one node holds
/// at a time (`PRUNE_LOCK` in `postgres::deliveries`).
macro_rules! prunable_deliveries {
    () => {
        "SELECT seq FROM (\
             SELECT seq, updated_at FROM (\
                 SELECT seq, updated_at FROM deliveries WHERE status = 'succeeded' \
                 AND updated_at < $1 ORDER BY updated_at, seq LIMIT $2) AS succeeded \
             UNION ALL \
             SELECT seq, updated_at FROM (\
                 SELECT seq, updated_at FROM deliveries WHERE status = 'filtered' \
                 AND updated_at < $1 ORDER BY updated_at, seq LIMIT $2) AS filtered\
         ) AS finished ORDER BY updated_at, seq LIMIT $2"
    };
}

pub const PRUNE_ATTEMPTS: &str = concat!(
    "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE seq IN (",
    prunable_deliveries!(),
    "))"
);

pub const PRUNE_DELIVERIES: &str =
    concat!("DELETE FROM deliveries WHERE seq IN (", prunable_deliveries!(), ")");

/// Up to `$2` events received before `$1` with no delivery left, oldest first: a range of
/// `events_received_at_seq`, each event checked through `deliveries_event_id`. Old events
/// that keep a dead or pending delivery are read again by every call.
pub const PRUNE_EVENTS: &str = "DELETE FROM events WHERE seq IN (SELECT seq FROM events \
     WHERE received_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM deliveries WHERE deliveries.event_id = events.event_id) \
     ORDER BY received_at, seq LIMIT $2)";

/// The statuses the constant queries above write as literals.
#[cfg(test)]
pub const STATUS_LITERALS: [&str; 5] = ["pending", "in_flight", "succeeded", "dead", "filtered"];

/// Appends the conditions of a delivery listing. `status` overrides the filter's (dead-letter
/// queries force `dead`). Only the conditions present are written, so each combination can
/// seek its index: `(status, destination_id, seq)` for pending and dead letters of a destination,
/// `(destination_id, seq)`, `(subscription_id, seq)`, `(event_id)`, `(created_at, seq)`, and
/// the event type through `events_event_type_seq`.
fn filter_deliveries(
    mut query: Assembled,
    filter: &DeliveryFilter,
    status: Option<DeliveryStatus>,
    after: Option<i64>,
) -> Assembled {
    let mut joiner = " WHERE ";
    if let Some(status) = status.or(filter.status) {
        // A literal, not a parameter: SQLite uses a partial index only for a query whose
        // condition names its rows (on SQLite, `deliveries_status_destination_id_seq` holds
        // the pending and dead ones). The statuses are this enum's fixed words.
        query.sql.push_str(" WHERE status = '");
        query.sql.push_str(status.as_str());
        query.sql.push('\'');
        joiner = " AND ";
    }
    let mut condition = |query: &mut Assembled, fragment: &str, value: Bind| {
        query.sql.push_str(joiner);
        query.push(fragment, value);
        joiner = " AND ";
    };
    if let Some(destination_id) = &filter.destination_id {
        condition(&mut query, "destination_id = {}", Bind::Text(destination_id.as_str().to_owned()));
    }
    if let Some(subscription_id) = &filter.subscription_id {
        condition(&mut query, "subscription_id = {}", Bind::Text(subscription_id.as_str().to_owned()));
    }
    if let Some(event_id) = &filter.event_id {
        condition(&mut query, "event_id = {}", Bind::Text(event_id.as_str().to_owned()));
    }
    if let Some(event_type) = &filter.event_type {
        condition(
            &mut query,
            "event_id IN (SELECT event_id FROM events WHERE event_type = {})",
            Bind::Text(event_type.as_str().to_owned()),
        );
    }
    if let Some(since) = filter.since {
        condition(&mut query, "created_at >= {}", Bind::Int(since));
    }
    if let Some(until) = filter.until {
        condition(&mut query, "created_at < {}", Bind::Int(until));
    }
    if let Some(after) = after {
        condition(&mut query, "seq > {}", Bind::Int(after));
    }
    query
}

/// Deliveries matching `filter` (and after `after`), in creation order.
pub fn list(filter: &DeliveryFilter, after: Option<i64>, limit: i64, offset: i64) -> Assembled {
    let mut query = filter_deliveries(
        Assembled::new(concat!("SELECT ", delivery_columns!(), " FROM deliveries")),
        filter,
        None,
        after,
    );
    query.sql.push_str(" ORDER BY seq");
    query.push(" LIMIT {}", Bind::Int(limit));
    if offset > 0 {
        query.push(" OFFSET {}", Bind::Int(offset));
    }
    query
}

pub fn count(filter: &DeliveryFilter) -> Assembled {
    filter_deliveries(Assembled::new("SELECT COUNT(*) FROM deliveries"), filter, None, None)
}

/// Dead deliveries matching `filter`, whatever status it names.
pub fn count_dead(filter: &DeliveryFilter) -> Assembled {
    filter_deliveries(
        Assembled::new("SELECT COUNT(*) FROM deliveries"),
        filter,
        Some(DeliveryStatus::Dead),
        None,
    )
}

/// Makes the first `limit` dead deliveries matching `filter` (whatever status it names) due
/// at `now` with a fresh budget; their attempts and last error stay.
pub fn replay_dead(filter: &DeliveryFilter, now: i64, limit: i64) -> Assembled {
    let mut query = Assembled::new("");
    query.push(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = {}, attempt_count = 0, \
         updated_at = {} WHERE seq IN (SELECT seq FROM deliveries",
        Bind::Int(now),
    );
    let mut query = filter_deliveries(query, filter, Some(DeliveryStatus::Dead), None);
    query.sql.push_str(" ORDER BY seq");
    query.push(" LIMIT {})", Bind::Int(limit));
    query
}

#[cfg(test)]
mod tests {
    use switchyard_core::event::{EventId, EventType};
    use switchyard_core::id::DestinationId;

    use super::*;

    #[test]
    fn status_literals_are_delivery_statuses() {
        for literal in STATUS_LITERALS {
            assert!(DeliveryStatus::parse(literal).is_some(), "{literal}");
        }
        for sql in [
            CLAIM,
            CLAIM_AROUND_HELD,
            CLAIM_SKIP_LOCKED,
            CLAIM_SKIP_LOCKED_AROUND_HELD,
            HELD_BACKLOG,
            SETTLE_DELIVERY,
            PROMOTE_NEXT,
            RELEASE_LEASES,
            &renew_leases(2),
            NEXT_DUE_AT,
            NEXT_DUE_AROUND_HELD,
            PENDING_TALLIES,
            DEAD_TALLIES,
            SUCCEEDED_DESTINATIONS,
            RETRY_DELIVERY,
            PRUNE_DELIVERIES,
            crate::sql::INSERT_DELIVERY,
        ] {
            let mut rest = sql;
            while let Some(start) = rest.find('\'') {
                let Some(len) = rest[start + 1..].find('\'') else {
                    panic!("unbalanced quote in {sql}");
                };
                let literal = &rest[start + 1..start + 1 + len];
                assert!(STATUS_LITERALS.contains(&literal), "{literal} in {sql}");
                rest = &rest[start + len + 2..];
            }
        }
    }

    #[test]
    fn listings_write_only_the_conditions_given() {
        let plain = list(&DeliveryFilter::default(), None, 21, 0);
        assert!(!plain.sql.contains("WHERE"), "{}", plain.sql);
        assert!(plain.sql.ends_with(" FROM deliveries ORDER BY seq LIMIT $1"));
        assert_eq!(plain.binds, [Bind::Int(21)]);

        let filter = DeliveryFilter {
            status: Some(DeliveryStatus::Pending),
            event_type: Some(EventType::from_trusted("a.b")),
            until: Some(7),
            ..DeliveryFilter::default()
        };
        let query = list(&filter, Some(3), 11, 20);
        assert!(
            query.sql.ends_with(
                " FROM deliveries WHERE status = 'pending' AND event_id IN (SELECT event_id FROM \
                 events WHERE event_type = $1) AND created_at < $2 AND seq > $3 ORDER BY seq \
                 LIMIT $4 OFFSET $5"
            ),
            "{}",
            query.sql
        );
        assert_eq!(
            query.binds,
            [Bind::Text("a.b".into()), Bind::Int(7), Bind::Int(3), Bind::Int(11), Bind::Int(20)]
        );
    }

    #[test]
    fn dead_letter_queries_force_the_dead_status() {
        let filter = DeliveryFilter {
            status: Some(DeliveryStatus::Succeeded),
            destination_id: Some(DestinationId::from_trusted("dst_1")),
            event_id: Some(EventId::from_trusted("e1")),
            since: Some(5),
            ..DeliveryFilter::default()
        };
        assert_eq!(
            count_dead(&filter).sql,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'dead' AND destination_id = $1 \
             AND event_id = $2 AND created_at >= $3"
        );
        assert_eq!(count_dead(&filter).binds[0], Bind::Text("dst_1".into()));
        assert!(count(&filter).sql.contains("WHERE status = 'succeeded' AND"), "{}", count(&filter).sql);

        let replay = replay_dead(&filter, 100, 50);
        assert_eq!(
            replay.sql,
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, attempt_count = 0, \
             updated_at = $1 WHERE seq IN (SELECT seq FROM deliveries WHERE status = 'dead' \
             AND destination_id = $2 AND event_id = $3 AND created_at >= $4 ORDER BY seq \
             LIMIT $5)"
        );
        assert_eq!(
            replay.binds,
            [
                Bind::Int(100),
                Bind::Text("dst_1".into()),
                Bind::Text("e1".into()),
                Bind::Int(5),
                Bind::Int(50)
            ]
        );
    }
}
