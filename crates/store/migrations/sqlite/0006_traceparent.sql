-- The W3C `traceparent` an event arrived with, passed on to its deliveries. Column names are
-- shared with the PostgreSQL schema, as in 0001.
ALTER TABLE events ADD COLUMN traceparent TEXT;
