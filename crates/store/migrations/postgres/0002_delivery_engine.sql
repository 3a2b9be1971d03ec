-- The delivery engine: the attempts log, and the indexes its queries seek on (the twin of
-- migrations/sqlite/0002).

-- One row per try at sending a delivery, numbered from 1 per delivery. Attempts are never
-- updated; they go only with their delivery, when retention prunes it.
CREATE TABLE attempts (
    delivery_id   TEXT    NOT NULL REFERENCES deliveries (id),
    number        BIGINT  NOT NULL,
    started_at    BIGINT  NOT NULL,
    duration_ms   BIGINT  NOT NULL,
    outcome       TEXT    NOT NULL,
    status_code   BIGINT,
    error         TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, number)
);

-- Claims find expired leases here (due pending rows use deliveries_status_next_attempt_at).
CREATE INDEX deliveries_status_lease_expires_at ON deliveries (status, lease_expires_at, seq);
-- Listings bounded by creation time.
CREATE INDEX deliveries_created_at_seq ON deliveries (created_at, seq);
-- Dead-letter listings, counts and bulk replay by destination, in creation order.
CREATE INDEX deliveries_status_destination_id_seq ON deliveries (status, destination_id, seq);
-- Listings by status alone, in creation order.
CREATE INDEX deliveries_status_seq ON deliveries (status, seq);
-- Retention: the oldest succeeded deliveries first, without walking the live ones.
CREATE INDEX deliveries_succeeded_updated_at ON deliveries (status, updated_at, seq)
    WHERE status = 'succeeded';
