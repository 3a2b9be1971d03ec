-- Sources: where events enter the hub other than through `POST /v1/events` (a `webhook` source
-- receives a provider's signed requests), and the request headers such a source forwards with
-- each event. Column names are shared with the PostgreSQL schema, as in 0001 (the twin of
-- migrations/postgres/0011).

-- Kept as destinations are: `config` is JSON text without the secrets, which `secrets` holds
-- sealed (`v1:<key id>:<base64>`, see src/seal.rs, bound to `sources.secrets` and the row's
-- id); never in clear, since no version wrote them so.
CREATE TABLE sources (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    config     TEXT    NOT NULL,
    secrets    TEXT    NOT NULL,
    enabled    INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- Listings page in creation order.
CREATE INDEX sources_created_at_id ON sources (created_at, id);

-- The request headers a webhook source forwarded with the event (its `forward_headers`), a
-- JSON object by lowercase name. NULL for events without, and for events stored before it was
-- kept. Not part of the event's content hash.
ALTER TABLE events ADD COLUMN headers TEXT;
