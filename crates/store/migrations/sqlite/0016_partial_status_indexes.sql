-- Three indexes led by `status` held every delivery, yet each query that reads them names the
-- statuses it wants: due pending rows (claims), in-flight leases (expiry, renewal, release),
-- and the pending and dead rows of a destination (tallies, dead-letter listings, replays).
-- Each delivery entered all three in flight and moved within them when it settled: six index
-- writes per delivery on the delivery path for ranges nothing reads. Each now keeps only the
-- rows its queries read, under the same name and columns. SQLite uses a partial index only
-- for a query that names its rows with a literal (`status = 'pending'`), as these queries
-- do; a destination's other deliveries are found through `deliveries_destination_id_seq`.
DROP INDEX deliveries_status_next_attempt_at;
CREATE INDEX deliveries_status_next_attempt_at ON deliveries (status, next_attempt_at)
    WHERE status = 'pending';

DROP INDEX deliveries_status_lease_expires_at;
CREATE INDEX deliveries_status_lease_expires_at ON deliveries (status, lease_expires_at)
    WHERE status = 'in_flight';

DROP INDEX deliveries_status_destination_id_seq;
CREATE INDEX deliveries_status_destination_id_seq ON deliveries (status, destination_id, seq)
    WHERE status = 'pending' OR status = 'dead';

-- The due queue above and the per-destination lanes (0008) now hold the same rows. A lane's
-- head is a seek on `(destination_id, next_attempt_at)`; with `status` in front of both, the
-- lanes match one more column of that query than the due queue does, so SQLite does not read a
-- lane's head through the whole due queue even without statistics.
DROP INDEX deliveries_pending_destination_id_next_attempt_at;
CREATE INDEX deliveries_pending_destination_id_next_attempt_at
    ON deliveries (status, destination_id, next_attempt_at) WHERE status = 'pending';
