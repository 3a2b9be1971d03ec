-- Flow control per destination: its circuit breaker, its recent outcomes and its rate-limit
-- bucket, one row shared by every node. Column names are shared with the PostgreSQL schema,
-- as in 0001.
--
-- The failure-ratio trigger and the health report read `outcomes`, counters in time buckets
-- updated with each attempt (O(1)), rather than counting a range of `attempts`: that would
-- need a destination column and index on the busiest table, and a count of up to a minute of
-- attempts on every failure.

CREATE TABLE destination_flow (
    destination_id       TEXT    PRIMARY KEY REFERENCES destinations (id) ON DELETE CASCADE,
    state                TEXT    NOT NULL, -- closed | open | half_open
    opened_at            INTEGER,          -- when it last left closed
    reason               TEXT,
    cooldown_ms          INTEGER NOT NULL, -- of the current open period; doubles to the cap
    retry_at             INTEGER,          -- open: when the probe may go
    consecutive_failures INTEGER NOT NULL,
    probe_owner          TEXT,             -- half-open: the delivery holding the probe lease
    probe_until          INTEGER,          -- ... until then
    outcomes             TEXT    NOT NULL, -- JSON: recent outcome counts and latency histograms
    tokens               REAL,             -- the rate-limit bucket, when the destination has one
    tokens_at            INTEGER,
    rate_blocked_until   INTEGER,          -- the bucket is empty until then
    blocked_until        INTEGER NOT NULL, -- nothing new may go before this (0: not blocked)
    version              INTEGER NOT NULL, -- updates are optimistic
    updated_at           INTEGER NOT NULL
);
-- The engine's idle wait: the next destination to unblock.
CREATE INDEX destination_flow_blocked_until ON destination_flow (blocked_until);
