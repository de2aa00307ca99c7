-- The problem group (问题学籍组) a logged message is about, so that the national office exports
-- a group's evidence: problem messages name their group in the body, not in the envelope's
-- case id. Written by the inbox claim (inbound) and by the outbox's trigger (outbound).
ALTER TABLE message_log ADD COLUMN group_id uuid;
CREATE INDEX message_log_group ON message_log (group_id) WHERE group_id IS NOT NULL;
-- An export finds the messages a case's or a group's trace names by their ids.
CREATE INDEX message_log_message ON message_log (message_id);

ALTER TABLE outbox ADD COLUMN group_id uuid;

CREATE OR REPLACE FUNCTION outbox_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_log (at, direction, party, message_id, message_type, case_id, group_id, body, body_sha256)
    SELECT created_at, 'out', recipient, message_id, message_type, case_id, group_id, body, sha256(body)
    FROM written ORDER BY outbox_id;
    RETURN NULL;
END
$$;
