-- The live streams (the twin of migrations/postgres/0014). SQLite's one writer commits in
-- `seq` order, so the events stream reads by `seq` and needs nothing new. The deliveries
-- stream reads status changes in the order they were written: `changed` takes the table's
-- largest value plus one on every insert and every status change.
--
-- Triggers rather than the writes' own SQL: every statement that inserts a delivery or moves
-- its status (ingest, claim, settle, defer, release, retry, replay, expiry) is covered
-- without touching the hot path's text, and a forgotten one cannot open a gap. The cost is
-- one more indexed update of the same row, in the same transaction, per change; the
-- `max(changed)` it reads is the last entry of `deliveries_changed`. Rows from before keep 0
-- and are ordered by `seq` among themselves.
ALTER TABLE deliveries ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;

-- Ends in the rowid (`seq`), so it orders `(changed, seq)`.
CREATE INDEX deliveries_changed ON deliveries (changed);

CREATE TRIGGER deliveries_changed_on_insert AFTER INSERT ON deliveries
BEGIN
    UPDATE deliveries SET changed = (SELECT max(changed) FROM deliveries) + 1 WHERE seq = NEW.seq;
END;

CREATE TRIGGER deliveries_changed_on_status AFTER UPDATE OF status ON deliveries
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE deliveries SET changed = (SELECT max(changed) FROM deliveries) + 1 WHERE seq = NEW.seq;
END;
