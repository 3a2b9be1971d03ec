-- How many leases of a delivery, in a row, ended without a recorded attempt: each claim adds
-- one, recording an attempt resets it, and handing a lease back unused takes the claim's one
-- off again. Past `engine.max_unfinished_attempts` the engine records the delivery dead
-- instead of running it, so a delivery that crashes whoever runs it stops crash-looping nodes
-- (the twin of migrations/postgres/0009).
ALTER TABLE deliveries ADD COLUMN unfinished_attempts INTEGER NOT NULL DEFAULT 0;
