-- Who published an event: the authenticated caller, named as the audit log names its actors
-- (`key:<id>` or `jwt:<issuer>|<subject>`); with `request_id` (0007) it says which request.
-- Publishing writes no audit entry, so this is its record. NULL for events no authenticated
-- caller published, and for events stored before it was kept. Column names are shared with
-- the PostgreSQL schema, as in 0001.
ALTER TABLE events ADD COLUMN published_by TEXT;
