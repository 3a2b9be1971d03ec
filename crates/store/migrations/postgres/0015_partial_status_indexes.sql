-- The twin of migrations/sqlite/0016. Three indexes led by `status` held every delivery, yet
-- each query that reads them names the statuses it wants, as a literal: due pending rows
-- (claims), in-flight leases (expiry, renewal, release), and the pending and dead rows of a
-- destination (tallies, dead-letter listings, replays). A status change is never a HOT
-- update, so every settle put a new entry into all three, and every insert too, for ranges
-- nothing reads. Each now keeps only the rows its queries read, under the same name and
-- columns.
DROP INDEX deliveries_status_next_attempt_at;
CREATE INDEX deliveries_status_next_attempt_at ON deliveries (status, next_attempt_at, seq)
    WHERE status = 'pending';

DROP INDEX deliveries_status_lease_expires_at;
CREATE INDEX deliveries_status_lease_expires_at ON deliveries (status, lease_expires_at, seq)
    WHERE status = 'in_flight';

DROP INDEX deliveries_status_destination_id_seq;
CREATE INDEX deliveries_status_destination_id_seq ON deliveries (status, destination_id, seq)
    WHERE status IN ('pending', 'dead');
