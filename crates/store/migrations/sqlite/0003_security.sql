-- Security: the audit log. Column names are shared with the PostgreSQL schema, as in 0001.
--
-- Secrets at rest need no schema change: `destinations.secrets` and `idempotency_keys.body`
-- hold sealed text (`v1:<key id>:<base64>`, see src/seal.rs) in the columns they had. Values
-- written in clear by earlier versions are sealed when a node starts, in one transaction.

-- One row per API request that may write, in the order the requests were answered. Rows are
-- never updated nor pruned by retention.
CREATE TABLE audit_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    at            INTEGER NOT NULL,
    actor         TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    route         TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT,
    request_id    TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    success       INTEGER NOT NULL
);
-- Listings filtered by actor, by action or by time, each in append order from a cursor.
CREATE INDEX audit_log_actor_seq ON audit_log (actor, seq);
CREATE INDEX audit_log_action_seq ON audit_log (action, seq);
CREATE INDEX audit_log_at_seq ON audit_log (at, seq);
