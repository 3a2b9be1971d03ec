//! The reads of the live streams. Each reads the rows after a position `($1, $2)` in commit
//! order, `$3` at most; the backends differ in what a commit position is.
//!
//! SQLite has one writer, which commits in `seq` order: an event's position is its `seq` alone
//! (the first half is always 0), and a delivery's is `changed`, a counter the migration's
//! triggers take from the table's largest value on every insert and status change.
//!
//! On PostgreSQL transactions commit in any order, so `seq` (taken at insert) is no commit
//! order. A row's position is its writing transaction's id (`tx`, `changed_tx`, set by
//! `pg_current_xact_id()`), and a read takes only rows whose transaction id is below the
//! snapshot's `xmin`: every transaction with a smaller id has finished, so no row can still
//! join that set, and reading it in `(tx, seq)` order leaves no gap and repeats nothing. The
//! cost: a transaction left open anywhere on the server holds `xmin` back, and with it the
//! streams, until it ends.

macro_rules! stream_events {
    ($position:literal, $condition:literal) => {
        concat!("SELECT ", $position, " AS position, ", event_columns!(), " FROM events WHERE ", $condition)
    };
}

macro_rules! stream_deliveries {
    ($position:literal, $condition:literal) => {
        concat!(
            "SELECT ",
            $position,
            " AS position, ",
            delivery_columns!(),
            " FROM deliveries WHERE ",
            $condition
        )
    };
}

/// `events`' primary key; `$1` is PostgreSQL's half of the cursor and is 0 here.
pub const SQLITE_STREAM_EVENTS: &str = stream_events!("0", "$1 >= 0 AND seq > $2 ORDER BY seq LIMIT $3");

pub const SQLITE_STREAM_HEAD_EVENTS: &str = "SELECT 0, coalesce(max(seq), 0) FROM events";

/// `deliveries_changed`.
pub const SQLITE_STREAM_DELIVERIES: &str =
    stream_deliveries!("changed", "(changed, seq) > ($1, $2) ORDER BY changed, seq LIMIT $3");

/// Past every row: the largest `changed` with the largest `seq` (rows of that `changed` have
/// no larger one). Two reads of an index each.
pub const SQLITE_STREAM_HEAD_DELIVERIES: &str = "SELECT coalesce(max(changed), 0), \
     coalesce((SELECT max(seq) FROM deliveries), 0) FROM deliveries";

/// `events_tx_seq`. Rows from transactions still open, or that might still be, are left for a
/// later read (see the top of this file): a long transaction on the server delays the stream.
pub const PG_STREAM_EVENTS: &str = stream_events!(
    "tx::text::bigint",
    "(tx, seq) > ($1::bigint::text::xid8, $2) AND tx < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY tx, seq LIMIT $3"
);

/// `deliveries_changed_tx_seq`, under the same rule as [`PG_STREAM_EVENTS`].
pub const PG_STREAM_DELIVERIES: &str = stream_deliveries!(
    "changed_tx::text::bigint",
    "(changed_tx, seq) > ($1::bigint::text::xid8, $2) \
     AND changed_tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY changed_tx, seq LIMIT $3"
);

/// Just before the oldest transaction that may still commit: everything after it is read
/// once it is final, nothing committed before is. The same for both tables.
pub const PG_STREAM_HEAD: &str =
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1, 9223372036854775807::bigint";
