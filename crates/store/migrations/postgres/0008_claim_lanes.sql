-- Claims pass over paused destinations and those flow control blocks (the twin of
-- migrations/sqlite/0008, which says how).
CREATE INDEX deliveries_pending_destination_id_next_attempt_at
    ON deliveries (destination_id, next_attempt_at, seq) WHERE status = 'pending';

CREATE INDEX destinations_paused ON destinations (id) WHERE NOT enabled;
