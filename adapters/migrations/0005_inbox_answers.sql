-- A message from the hub that answers a submission marks it answered as it is stored, by the
-- insert itself: the adapter then stores each inbound message in one statement instead of a
-- transaction of three (each statement is a round trip to SQLite's worker thread). The first
-- answer stays the one named.
CREATE TRIGGER inbox_answers AFTER INSERT ON inbox
WHEN NEW.correlation_id IS NOT NULL
BEGIN
    UPDATE outbox SET answered_by = COALESCE(answered_by, NEW.message_id) WHERE message_id = NEW.correlation_id;
END;
