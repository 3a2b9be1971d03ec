-- Ordered subscriptions and jq filters. Column names are shared with the PostgreSQL schema,
-- as in 0001.

-- A delivery carries its subscription's ordering, copied by ingest, so a claim decides
-- without a join: `ordered` (the subscription had `ordering: key` and the event an
-- `ordering_key`) and `block_on_dead` (`ordering_on_dead: block`). Deliveries made earlier
-- are unordered.
ALTER TABLE deliveries ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN block_on_dead INTEGER NOT NULL DEFAULT 0;

-- The head check of an ordered claim: within one subscription and key, is a delivery in
-- flight, or pending (or dead) before this one? Each question is one seek. Only ordered rows
-- are indexed.
CREATE INDEX deliveries_ordered_key_status_seq
    ON deliveries (subscription_id, ordering_key, status, seq) WHERE ordered;

-- Retention prunes filtered deliveries (the subscription chose not to send them) as it prunes
-- succeeded ones, the oldest first.
CREATE INDEX deliveries_filtered_updated_at ON deliveries (status, updated_at)
    WHERE status = 'filtered';
