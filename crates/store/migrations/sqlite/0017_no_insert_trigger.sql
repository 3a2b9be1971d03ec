-- Every statement that inserts a delivery writes its stream position itself (the ingest's
-- two inserts; a test in `sql.rs` holds the rest to it), so 0015's insert trigger never fires.
-- Its presence still cost every insert: SQLite treats an insert into a table with a trigger
-- as a write of many rows, and a write of many rows that may fail half-way (the foreign key
-- to `events`, the unique `id`) is guarded by a statement journal, a copy of every page the
-- insert touches (the table's and each of its indexes'), made before it writes them.
DROP TRIGGER deliveries_changed_on_insert;
