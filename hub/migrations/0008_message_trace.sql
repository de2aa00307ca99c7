-- The message trace (报文轨迹): every message the hub took or sent, both ways, slim (no body),
-- so that a case lists its messages (and the refusal that stalls it) and any message can be
-- found by its id after the outbox has pruned its copy. Written in the same transaction as the
-- inbox claim, the dead letter or the outbox row; pruned by age ([retention] trace_secs).
CREATE TABLE message_trace (
    trace_id       bigserial   PRIMARY KEY,
    message_id     uuid        NOT NULL,
    direction      text        NOT NULL CHECK (direction IN ('in', 'out')),
    party          text        NOT NULL,              -- the sender (in) or the recipient (out)
    message_type   text        NOT NULL,              -- 'unknown' when it could not be read
    case_id        uuid,
    correlation_id uuid,
    outcome        text        NOT NULL CHECK (outcome IN ('processed', 'refused', 'dead-lettered', 'queued')),
    code           text,                              -- E_… of a refusal or a dead letter
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_trace_case ON message_trace (case_id, trace_id) WHERE case_id IS NOT NULL;
CREATE INDEX message_trace_message ON message_trace (message_id);
CREATE INDEX message_trace_at ON message_trace (at);
