-- The adapter's durable pipe: what the provincial system submitted (outbox) and what the hub
-- sent (inbox). Times are RFC 3339 UTC text.

-- Submitted messages, in submission order (seq). A row is 'queued' until the broker confirms
-- it, then 'confirmed'; answered_by names the hub's reply once it arrives.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      TEXT    NOT NULL UNIQUE,
    message_type    TEXT    NOT NULL,
    case_id         TEXT,
    digest          BLOB    NOT NULL,           -- SHA-256 of the body: a resubmission must match
    body            BLOB    NOT NULL,           -- the XML as it goes out
    submitted_at    TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('queued', 'confirmed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TEXT    NOT NULL,
    confirmed_at    TEXT,
    answered_by     TEXT
);
CREATE INDEX outbox_queued ON outbox (seq) WHERE state = 'queued';

-- Messages from the hub, one row per message id, written before the broker is acknowledged.
-- acknowledged_at is set when the provincial system has taken the message.
CREATE TABLE inbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      TEXT    NOT NULL UNIQUE,
    message_type    TEXT    NOT NULL,           -- 'unreadable' when the body could not be parsed
    case_id         TEXT,
    correlation_id  TEXT,
    body            BLOB    NOT NULL,
    parse_error     TEXT,
    received_at     TEXT    NOT NULL,
    acknowledged_at TEXT,
    push_attempts   INTEGER NOT NULL DEFAULT 0,
    next_push_at    TEXT,
    last_push_error TEXT
);
CREATE INDEX inbox_pending ON inbox (seq) WHERE acknowledged_at IS NULL;
CREATE INDEX inbox_correlation ON inbox (correlation_id);
