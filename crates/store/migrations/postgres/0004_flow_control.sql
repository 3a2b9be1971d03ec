-- Flow control per destination (the twin of migrations/sqlite/0004): its circuit breaker, its
-- recent outcomes and its rate-limit bucket, one row shared by every node. Every change locks
-- the row (`SELECT ... FOR UPDATE`), so a rate limit and a circuit hold for the whole cluster.

CREATE TABLE destination_flow (
    destination_id       TEXT    PRIMARY KEY REFERENCES destinations (id) ON DELETE CASCADE,
    state                TEXT    NOT NULL, -- closed | open | half_open
    opened_at            BIGINT,           -- when it last left closed
    reason               TEXT,
    cooldown_ms          BIGINT  NOT NULL, -- of the current open period; doubles to the cap
    retry_at             BIGINT,           -- open: when the probe may go
    consecutive_failures BIGINT  NOT NULL,
    probe_owner          TEXT,             -- half-open: the delivery holding the probe lease
    probe_until          BIGINT,           -- ... until then
    outcomes             TEXT    NOT NULL, -- JSON: recent outcome counts and latency histograms
    tokens               DOUBLE PRECISION, -- the rate-limit bucket, when the destination has one
    tokens_at            BIGINT,
    rate_blocked_until   BIGINT,           -- the bucket is empty until then
    blocked_until        BIGINT  NOT NULL, -- nothing new may go before this (0: not blocked)
    version              BIGINT  NOT NULL, -- updates are optimistic
    updated_at           BIGINT  NOT NULL
);
-- The engine's idle wait: the next destination to unblock.
CREATE INDEX destination_flow_blocked_until ON destination_flow (blocked_until);
