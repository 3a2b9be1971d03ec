-- The attempts log keyed by its primary key alone. As a rowid table it was two B-trees, the
-- rows by rowid and the primary key `(delivery_id, number)` beside them, and every recorded
-- attempt wrote both: two more pages at the tail of the file in each group commit. Nothing
-- reads an attempt by rowid; every query seeks by `delivery_id`. Without a rowid the rows
-- are stored in the primary key's order, in one B-tree.
CREATE TABLE attempts_by_key (
    delivery_id   TEXT    NOT NULL REFERENCES deliveries (id),
    number        INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    outcome       TEXT    NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;

INSERT INTO attempts_by_key
    SELECT delivery_id, number, started_at, duration_ms, outcome, status_code, error, response_body
    FROM attempts;

DROP TABLE attempts;
ALTER TABLE attempts_by_key RENAME TO attempts;
