-- The statements of the delivery path (ingest's inserts, a settle's update) now write
-- `changed` themselves, in the row write they make anyway; 0014's triggers made that a second
-- update of the same row and of `deliveries_changed`. The triggers stay for every other
-- statement that inserts a delivery or moves its status, and stand aside when the statement
-- set the position itself: an insert leaves `changed` 0 only if it did not, an update leaves
-- it as it was only if it did not.
DROP TRIGGER deliveries_changed_on_insert;
DROP TRIGGER deliveries_changed_on_status;

CREATE TRIGGER deliveries_changed_on_insert AFTER INSERT ON deliveries
WHEN NEW.changed = 0
BEGIN
    UPDATE deliveries SET changed = (SELECT max(changed) FROM deliveries) + 1 WHERE seq = NEW.seq;
END;

CREATE TRIGGER deliveries_changed_on_status AFTER UPDATE OF status ON deliveries
WHEN OLD.status IS NOT NEW.status AND NEW.changed = OLD.changed
BEGIN
    UPDATE deliveries SET changed = (SELECT max(changed) FROM deliveries) + 1 WHERE seq = NEW.seq;
END;
