//! The query text of retention beside the deliveries' (`deliveries::PRUNE_*`): each deletes a
//! batch of the oldest rows past a cutoff (`$1`), at most `$2`, read in order from an index on
//! the time it compares, so a batch costs the same however much is kept. PostgreSQL's forms
//! collect the batch into an array first: given an `IN (subquery)`, its planner may hash the
//! whole table to join a few hundred rows.

/// Up to `$2` audit entries recorded before `$1`, oldest first: a range of `audit_log_at_seq`.
pub const PRUNE_AUDIT_LOG: &str = "DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log \
     WHERE at < $1 ORDER BY at, seq LIMIT $2)";

/// [`PRUNE_AUDIT_LOG`] for PostgreSQL: the batch's rows then found by primary key.
pub const PRUNE_AUDIT_LOG_BY_ARRAY: &str = "DELETE FROM audit_log WHERE seq = ANY(ARRAY(SELECT seq \
     FROM audit_log WHERE at < $1 ORDER BY at, seq LIMIT $2))";

/// Up to `$2` `Idempotency-Key` records created before `$1`, oldest first, whether answered or
/// still claimed: a range of `idempotency_keys_created_at`, each row then found by its key.
pub const PRUNE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE (scope, key) IN \
     (SELECT scope, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)";

/// [`PRUNE_IDEMPOTENCY_KEYS`] for PostgreSQL: the batch's rows then found by their place in
/// the table (a row changed meanwhile has moved and waits for the next batch).
pub const PRUNE_IDEMPOTENCY_KEYS_BY_CTID: &str = "DELETE FROM idempotency_keys WHERE ctid = \
     ANY(ARRAY(SELECT ctid FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2))";
