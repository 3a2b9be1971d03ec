-- How many leases of a delivery, in a row, ended without a recorded attempt (the twin of
-- migrations/sqlite/0009, which says how it is kept). A constant default: no table rewrite.
ALTER TABLE deliveries ADD COLUMN unfinished_attempts BIGINT NOT NULL DEFAULT 0;
