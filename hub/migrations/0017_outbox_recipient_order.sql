-- The relay holds a province's later messages while an earlier one waits to be tried again
-- after the broker refused it: this index finds such an earlier row per recipient.
CREATE INDEX outbox_unsent_recipient ON outbox (recipient, outbox_id) WHERE sent_at IS NULL;
