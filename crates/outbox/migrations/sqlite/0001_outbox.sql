-- The transactional outbox Switchyard relays (Debezium's column names). Rows are written in the
-- application's own transactions and deleted, or marked in relayed_at, once their events are
-- committed in the hub. Times are RFC 3339 UTC text with milliseconds, which sorts in time order.
CREATE TABLE IF NOT EXISTS outbox (
    id            TEXT NOT NULL PRIMARY KEY,
    aggregatetype TEXT NOT NULL,
    aggregateid   TEXT NOT NULL,
    type          TEXT NOT NULL,
    payload       TEXT NOT NULL CHECK (json_valid(payload)),
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    relayed_at    TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (created_at, id) WHERE relayed_at IS NULL;
