-- What operators did with a dead letter (死信处置): still open, replayed after its cause was
-- fixed (processed then, exactly once), or discarded; by whom, with which audit entry. A
-- dead letter seen again after a replay (the cause was not fixed) is open again.
ALTER TABLE dead_letter
    ADD COLUMN state       text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'replayed', 'discarded')),
    ADD COLUMN settled_at  timestamptz,
    ADD COLUMN settled_by  text,
    ADD COLUMN audit_id    bigint;
-- Operators list the open ones first.
CREATE INDEX dead_letter_open ON dead_letter (dead_letter_id) WHERE state = 'open';

-- Link health (链路状态) reads each province's last message from this index, at any inbox size.
CREATE INDEX inbox_sender_received ON inbox (sender, received_at);

-- The national overview reads the last 30 days of review decisions, and the open cases.
CREATE INDEX case_step_decided ON case_step (decided_at);
CREATE INDEX business_case_open ON business_case (created_at) WHERE closed_at IS NULL;
