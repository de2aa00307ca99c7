-- The lookup audit (查询审计): every national lookup — who asked (the province, and the user its
-- system names), about whom, when, and what was answered. "About whom" is a keyed digest
-- (HMAC-SHA256 under the hub's own audit key), never the identifier itself: the audit is kept
-- longer than the index and read by more people, and must not become a second register of
-- minors' identity numbers. The national office finds the lookups of a student by digesting
-- the identifier it asks about under the same key.
CREATE TABLE lookup_audit (
    audit_id          bigserial   PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    province          text        NOT NULL,
    requested_by      text,
    message_id        uuid        NOT NULL,
    -- 'student_id' or 'document' (a resident ID or another document's number).
    key_kind          text        NOT NULL CHECK (key_kind IN ('student_id', 'document')),
    key_digest        bytea       NOT NULL,
    -- 'found', 'not_found' (no student, or a name that does not match: the same answer), or the
    -- limit that refused it: 'limited_province', 'limited_student'.
    outcome           text        NOT NULL
                      CHECK (outcome IN ('found', 'not_found', 'limited_province', 'limited_student')),
    -- What was answered, for a found student: his province and the digest of his student ID.
    found_province    text,
    found_digest      bytea
);
-- The limits count a province's answered lookups in the last minute, and its lookups of one
-- student in the last hour; the national office searches by student.
CREATE INDEX lookup_audit_province_at ON lookup_audit (province, at);
CREATE INDEX lookup_audit_key ON lookup_audit (key_digest, at);
CREATE INDEX lookup_audit_found ON lookup_audit (found_digest, at) WHERE found_digest IS NOT NULL;
CREATE INDEX lookup_audit_at ON lookup_audit (at);

-- Secrets the hub makes for itself, once. 'lookup_audit': the key of the audit's digests, 32
-- random bytes (two random UUIDs' 244 random bits).
CREATE TABLE hub_secret (
    name   text  PRIMARY KEY,
    value  bytea NOT NULL
);
INSERT INTO hub_secret (name, value)
VALUES ('lookup_audit', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
