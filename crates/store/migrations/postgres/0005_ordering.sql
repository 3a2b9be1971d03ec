-- Ordered subscriptions (the twin of migrations/sqlite/0005).

-- A delivery carries its subscription's ordering, copied by ingest, so a claim decides
-- without a join.
ALTER TABLE deliveries ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE deliveries ADD COLUMN block_on_dead BOOLEAN NOT NULL DEFAULT FALSE;

-- The head check of an ordered claim: within one subscription and key, is a delivery in
-- flight, or pending (or dead) before this one? Each question is one seek. Only ordered rows
-- are indexed.
CREATE INDEX deliveries_ordered_key_status_seq
    ON deliveries (subscription_id, ordering_key, status, seq) WHERE ordered;

-- Retention prunes filtered deliveries as it prunes succeeded ones, the oldest first.
CREATE INDEX deliveries_filtered_updated_at ON deliveries (status, updated_at, seq)
    WHERE status = 'filtered';
