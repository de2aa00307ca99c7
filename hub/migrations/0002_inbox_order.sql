-- The order in which the hub took messages in, and the case each belongs to: operators and
-- tests read a case's messages in arrival order.
ALTER TABLE inbox ADD COLUMN inbox_seq bigserial;
ALTER TABLE inbox ADD COLUMN case_id uuid;
CREATE INDEX inbox_case ON inbox (case_id, inbox_seq) WHERE case_id IS NOT NULL;
