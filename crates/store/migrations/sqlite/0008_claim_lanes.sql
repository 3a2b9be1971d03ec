-- Claims pass over paused destinations and those flow control blocks without reading their
-- backlog (the twin of migrations/postgres/0008). While such a destination has due
-- deliveries, a claim walks the destinations that may send instead of the one due queue,
-- taking the head of each from this index: one seek per destination, however large the
-- backlog that waits. Only pending rows are indexed.
CREATE INDEX deliveries_pending_destination_id_next_attempt_at
    ON deliveries (destination_id, next_attempt_at) WHERE status = 'pending';

-- Which destinations are paused, without reading the others.
CREATE INDEX destinations_paused ON destinations (id) WHERE NOT enabled;
