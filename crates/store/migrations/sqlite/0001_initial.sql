-- The initial schema. Column names are shared with the PostgreSQL schema so both backends
-- run the same query text; instants are INTEGER milliseconds since the Unix epoch, JSON is
-- TEXT and booleans are INTEGER 0/1.

CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    timestamp      INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT,
    ordering_key   TEXT,
    source         TEXT    NOT NULL,
    received_at    INTEGER NOT NULL,
    content_hash   TEXT    NOT NULL
);
CREATE INDEX events_event_type_seq ON events (event_type, seq);
CREATE INDEX events_correlation_id_seq ON events (correlation_id, seq);
CREATE INDEX events_received_at_seq ON events (received_at, seq);

-- The transactional outbox: one row per event and routing subscription. No foreign keys to
-- subscriptions or destinations, which may be deleted while their deliveries remain.
CREATE TABLE deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    event_id         TEXT    NOT NULL REFERENCES events (event_id),
    subscription_id  TEXT    NOT NULL,
    destination_id   TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    ordering_key     TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deliveries_event_id ON deliveries (event_id);
CREATE INDEX deliveries_status_next_attempt_at ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_destination_id_seq ON deliveries (destination_id, seq);
CREATE INDEX deliveries_subscription_id_seq ON deliveries (subscription_id, seq);

CREATE TABLE event_types (
    name        TEXT    PRIMARY KEY,
    description TEXT,
    schema      TEXT,
    deprecated  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE destinations (
    id                 TEXT    PRIMARY KEY,
    name               TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    config             TEXT    NOT NULL,
    secrets            TEXT    NOT NULL,
    timeout_ms         INTEGER NOT NULL,
    connect_timeout_ms INTEGER NOT NULL,
    retry              TEXT    NOT NULL,
    rate_limit         TEXT,
    circuit_breaker    TEXT    NOT NULL,
    enabled            INTEGER NOT NULL,
    version            INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE subscriptions (
    id               TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL,
    destination_id   TEXT    NOT NULL REFERENCES destinations (id),
    event_types      TEXT    NOT NULL, -- JSON array of patterns
    filter           TEXT,
    transform        TEXT,
    ordering         TEXT    NOT NULL,
    ordering_on_dead TEXT    NOT NULL,
    enabled          INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX subscriptions_destination_id ON subscriptions (destination_id);

CREATE TABLE api_keys (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    prefix     TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE idempotency_keys (
    scope        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER,
    location     TEXT,
    body         BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
