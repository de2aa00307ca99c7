-- The message log (报文日志): every message the hub takes from a province (once, when it claims
-- it) and every message it sends, byte for byte, with the sender's signature; chained by hash
-- in the order the sealer reaches them, and sealed by checkpoints the hub signs. The format of
-- an entry, the chain and the bundle an auditor checks: hub/src/evidence.
CREATE TABLE message_log (
    entry_id     bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    direction    text        NOT NULL CHECK (direction IN ('in', 'out')),
    party        text        NOT NULL,            -- the province it came from or went to
    message_id   uuid        NOT NULL,
    message_type text        NOT NULL,
    case_id      uuid,
    body         bytea       NOT NULL,
    body_sha256  bytea       NOT NULL,
    signature    bytea,                            -- the sender's, over body (inbound)
    signer       text                              -- the fingerprint of its certificate
);
CREATE INDEX message_log_case ON message_log (case_id) WHERE case_id IS NOT NULL;
CREATE INDEX message_log_at ON message_log (at);

-- An entry is never changed: the hub has no update path, and the database refuses one.
CREATE FUNCTION message_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the message log is append-only';
END
$$;
CREATE TRIGGER message_log_immutable BEFORE UPDATE ON message_log
    FOR EACH ROW EXECUTE FUNCTION message_log_immutable();

-- The chain: position n holds entry_id and the SHA-256 of the entry's text, which names the
-- hash at n - 1. Written only by the sealer, one process at a time.
CREATE TABLE message_log_chain (
    position bigint PRIMARY KEY,
    entry_id bigint NOT NULL UNIQUE,
    hash     bytea  NOT NULL
);
CREATE TRIGGER message_log_chain_immutable BEFORE UPDATE ON message_log_chain
    FOR EACH ROW EXECUTE FUNCTION message_log_immutable();

-- The hub's signed statements that the entry at `position` has `hash`.
CREATE TABLE message_log_checkpoint (
    position  bigint      PRIMARY KEY,
    hash      bytea       NOT NULL,
    at        timestamptz NOT NULL,
    signature bytea       NOT NULL,
    signer    text        NOT NULL,
    certificate text      NOT NULL                 -- the hub's certificate (PEM) that signed it
);

-- What the sealer has still to chain: entries join it as they are written and leave it as
-- they are chained, so the sealer never searches the log for what it has not chained (an entry
-- whose transaction commits late is chained when it appears).
CREATE TABLE message_log_unsealed (entry_id bigint PRIMARY KEY);
CREATE FUNCTION message_log_unsealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_log_unsealed SELECT entry_id FROM written;
    RETURN NULL;
END
$$;
CREATE TRIGGER message_log_unsealed AFTER INSERT ON message_log
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION message_log_unsealed();

-- Every message the hub sends is logged as it is queued, whichever code queues it.
CREATE FUNCTION outbox_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_log (at, direction, party, message_id, message_type, case_id, body, body_sha256)
    SELECT created_at, 'out', recipient, message_id, message_type, case_id, body, sha256(body)
    FROM written ORDER BY outbox_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_logged AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION outbox_logged();
