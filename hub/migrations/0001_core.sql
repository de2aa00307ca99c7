-- Core of the hub: inbox (deduplication), outbox (publication), timers, the certificate
-- registry and the national student index.
-- Naming: singular table names; primary keys <table>_id unless a natural key exists.

-- Every message the hub has taken responsibility for. Message ids are made by senders, so the
-- key is (sender, message_id): one province cannot collide with another's ids. The digest
-- tells a redelivery (same bytes: skip) from a reused id (other bytes: E_DUPLICATE).
CREATE TABLE inbox (
    sender       text        NOT NULL,
    message_id   uuid        NOT NULL,
    message_type text        NOT NULL,                -- 'unknown' when the body could not be read
    digest       bytea       NOT NULL,                -- SHA-256 of the AMQP body
    outcome      text        NOT NULL CHECK (outcome IN ('processed', 'refused', 'poison')),
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender, message_id)
);

-- Messages to publish, written in the same transaction as the effect that causes them. The
-- relay publishes them with confirms and stamps sent_at; a crash before that stamp means the
-- row goes out again, and receivers deduplicate by message_id.
CREATE TABLE outbox (
    outbox_id       bigserial   PRIMARY KEY,
    message_id      uuid        NOT NULL UNIQUE,      -- derived from the cause: replays collide here
    exchange        text        NOT NULL,
    routing_key     text        NOT NULL,
    message_type    text        NOT NULL,
    recipient       text        NOT NULL,
    case_id         uuid,
    correlation_id  text,
    headers         jsonb       NOT NULL DEFAULT '{}',
    body            bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    sent_at         timestamptz
);
-- The relay only ever looks at unsent rows, oldest first.
CREATE INDEX outbox_unsent ON outbox (outbox_id) WHERE sent_at IS NULL;

-- Timers: deadlines, reminders, resends, stuck checks. Claimed with FOR UPDATE SKIP LOCKED, run
-- and deleted in one transaction, so each fires once even with several hub processes.
CREATE TABLE timer (
    timer_id   bigserial   PRIMARY KEY,
    kind       text        NOT NULL,
    case_id    uuid,
    due_at     timestamptz NOT NULL,
    payload    jsonb       NOT NULL DEFAULT '{}',
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timer_due ON timer (due_at);
-- At most one timer of a kind per case: re-arming replaces it.
CREATE UNIQUE INDEX timer_one_per_case ON timer (kind, case_id) WHERE case_id IS NOT NULL;

-- Certificates admitted to the exchange. A party may speak only while it holds at least one
-- registered, unrevoked, unexpired certificate.
CREATE TABLE certificate (
    serial        text        PRIMARY KEY,            -- lower-case hex
    principal     text        NOT NULL,               -- CN: prov-NN, hub, op-…, moe-…
    role          text        NOT NULL,
    subject       text        NOT NULL,
    fingerprint   text        NOT NULL,               -- SHA-256 of the DER
    not_before    timestamptz NOT NULL,
    not_after     timestamptz NOT NULL,
    pem           text        NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX certificate_principal ON certificate (principal);

-- The national student index (全国学籍索引), kept current by the provinces (index.*).
CREATE TABLE student_index (
    student_id     text        PRIMARY KEY,           -- national student ID
    province       text        NOT NULL,              -- GB/T 2260 code of the province holding the record
    name           text        NOT NULL,
    sex            text        NOT NULL,
    birth_date     date        NOT NULL,
    document_type  text        NOT NULL,
    document_no    text,
    school         text        NOT NULL,
    grade          text        NOT NULL,
    status         text        NOT NULL,
    problem_record boolean     NOT NULL,
    open_business  boolean     NOT NULL,
    changed_at     timestamptz NOT NULL,              -- the province's change time: newer wins
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Lookup by name + ID-document number (全国学籍查询).
CREATE INDEX student_index_document ON student_index (document_no) WHERE document_no IS NOT NULL;
