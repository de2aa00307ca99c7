-- An outbound message's bytes are kept once: in its message-log entry ('out'), which the
-- statement that queues the message writes. The outbox row holds the rest, so its stamp no
-- longer rewrites the bytes. Before, every body was stored twice (a 2 MiB archive file as
-- two 2.7 MiB values) and each stamp wrote a third copy of a small one.
--
-- Rows queued without going through that statement (with a body, as before) keep their body
-- and are still logged by the trigger, as are the rows queued before this migration.
ALTER TABLE outbox ALTER COLUMN body DROP NOT NULL;
-- The entry holding the bytes, by its key: the statement that queues the row takes the
-- entry's id first, so the relay reads the bytes in one lookup.
ALTER TABLE outbox ADD COLUMN log_entry bigint;

CREATE OR REPLACE FUNCTION outbox_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_log (at, direction, party, message_id, message_type, case_id, group_id, body, body_sha256)
    SELECT created_at, 'out', recipient, message_id, message_type, case_id, group_id, body, sha256(body)
    FROM written WHERE body IS NOT NULL ORDER BY outbox_id;
    RETURN NULL;
END
$$;

-- Each outbox row with its bytes, wherever they are kept.
CREATE VIEW outbox_message AS
SELECT o.outbox_id, o.message_id, o.exchange, o.routing_key, o.message_type, o.recipient, o.case_id,
       o.correlation_id, o.headers,
       COALESCE(o.body, (SELECT l.body FROM message_log l WHERE l.entry_id = o.log_entry)) AS body,
       o.created_at, o.next_attempt_at, o.attempts, o.last_error, o.sent_at, o.group_id, o.log_entry
FROM outbox o;
