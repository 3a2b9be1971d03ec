-- The id of the API request that published an event, so the log lines of its deliveries can
-- name the request. Column names are shared with the SQLite schema, as in 0001.
ALTER TABLE events ADD COLUMN request_id TEXT;
