-- Dead letters (死信): what the hub could not process, kept once and bounded. A dead letter
-- is either refused by the hub (source 'hub': unreadable, forged, oversize, revoked…) or given
-- up by the broker (source 'broker': delivered too often, e.g. a message the hub crashed on).
-- Of the body at most [limits] dead_letter_body_bytes are kept, with the SHA-256 and size of
-- the whole; rows older than [retention] dead_letter_secs are pruned.
CREATE TABLE dead_letter (
    dead_letter_id bigserial   PRIMARY KEY,
    sender         text        NOT NULL,              -- broker user (prov-NN), or 'unknown'
    message_id     uuid        NOT NULL,              -- as the inbox keys it
    message_type   text,                              -- when it could be read
    case_id        uuid,
    code           text        NOT NULL,              -- E_… (schemas/src/error.rs)
    reason         text        NOT NULL,
    size           bigint      NOT NULL,              -- of the whole body
    sha256         bytea       NOT NULL,
    body           bytea       NOT NULL,              -- the first bytes only, when truncated
    truncated      boolean     NOT NULL,
    source         text        NOT NULL CHECK (source IN ('hub', 'broker')),
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    seen           integer     NOT NULL DEFAULT 1,   -- deliveries of the same message
    UNIQUE (sender, message_id)
);
-- The per-sender rate and the pruning both look at recent / old rows.
CREATE INDEX dead_letter_sender_seen ON dead_letter (sender, first_seen);
CREATE INDEX dead_letter_first_seen ON dead_letter (first_seen);

-- Poison over the per-sender rate ([limits] poison_per_minute) is counted here, not kept, so
-- one province cannot fill the hub's disk; operators still see how much and from whom.
CREATE TABLE dead_letter_suppressed (
    sender text        NOT NULL,
    minute timestamptz NOT NULL,
    code   text        NOT NULL,
    count  integer     NOT NULL,
    bytes  bigint      NOT NULL,
    PRIMARY KEY (sender, minute, code)
);

-- Pruning published outbox rows by age.
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
-- Pruning the inbox by age.
CREATE INDEX inbox_received ON inbox (received_at);
