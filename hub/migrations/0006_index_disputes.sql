-- An index entry the holding province contradicted: its verification found no such student
-- although the index lists him there (转出省份校验错误). Until the province reports the student
-- again (index.resync asks it to), lookups do not offer him as eligible and applications for
-- him are refused; operators list the disputes.
ALTER TABLE student_index ADD COLUMN disputed_at timestamptz;
ALTER TABLE student_index ADD COLUMN dispute_case uuid;
CREATE INDEX student_index_disputed ON student_index (disputed_at) WHERE disputed_at IS NOT NULL;
