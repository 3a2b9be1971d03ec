-- The transactional outbox Switchyard relays (Debezium's column names). Rows are written in the
-- application's own transactions and deleted, or marked in relayed_at, once their events are
-- committed in the hub.
CREATE TABLE IF NOT EXISTS outbox (
    id            text        PRIMARY KEY,
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    relayed_at    timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (created_at, id) WHERE relayed_at IS NULL;

-- Wakes the relay at once instead of at its next poll.
CREATE OR REPLACE FUNCTION switchyard_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_outbox', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT
    EXECUTE FUNCTION switchyard_outbox_notify();
