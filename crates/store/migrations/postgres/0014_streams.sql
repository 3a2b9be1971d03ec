-- The live streams (the twin of migrations/sqlite/0014). Transactions commit in any order,
-- so `seq` is no commit order: each row records the transaction that wrote it (`xid8`, which
-- never wraps), and a stream reads only rows whose transaction is below its snapshot's
-- `xmin`, a set no commit can join any more, in `(tx, seq)` order (sql/streams.rs).
--
-- The columns are added with a constant default, so existing rows need no rewrite (they all
-- read as transaction 1, before everything), then take the writing transaction from now on.
ALTER TABLE events ADD COLUMN tx xid8 NOT NULL DEFAULT '1';
ALTER TABLE events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
CREATE INDEX events_tx_seq ON events (tx, seq);

-- A delivery's position moves to the transaction of its last status change. Inserts take it
-- from the default; status changes from a trigger, rather than from every statement that
-- moves a status (claim, settle, defer, release, retry, replay), so none can be forgotten and
-- the hot path's SQL stays as it is. The trigger fires only when the status really changes
-- (a lease renewal does not), and costs a function call per changed row: these updates
-- already rewrite an indexed column, so they were never HOT updates.
ALTER TABLE deliveries ADD COLUMN changed_tx xid8 NOT NULL DEFAULT '1';
ALTER TABLE deliveries ALTER COLUMN changed_tx SET DEFAULT pg_current_xact_id();
CREATE INDEX deliveries_changed_tx_seq ON deliveries (changed_tx, seq);

CREATE FUNCTION deliveries_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_tx := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER deliveries_status_changed BEFORE UPDATE OF status ON deliveries
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION deliveries_status_changed();
