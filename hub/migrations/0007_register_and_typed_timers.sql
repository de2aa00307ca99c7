-- One register of open business (在办业务登记): every business that holds a student writes its
-- row in the same transaction as its own state, and removes it when it lets go. "One open
-- business per student" is its primary key; lookups' open-business answer, admission and an
-- organization-code revocation's blockers all read it.
CREATE TABLE open_business (
    student_id  text        PRIMARY KEY,           -- national student ID
    business    text        NOT NULL,              -- transfer, enrollment, problem-group, …
    business_id uuid        NOT NULL,              -- the case, group, … holding the student
    schools     text[]      NOT NULL,              -- schools it names (both sides)
    divisions   text[]      NOT NULL DEFAULT '{}', -- education departments it names
    opened_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX open_business_holder ON open_business (business, business_id);
-- Blockers of a school's or a division's revocation.
CREATE INDEX open_business_schools ON open_business USING gin (schools);
CREATE INDEX open_business_divisions ON open_business USING gin (divisions);

INSERT INTO open_business (student_id, business, business_id, schools)
SELECT student_id, lower(business), case_id, ARRAY[in_school, out_school]
FROM business_case WHERE closed_at IS NULL;
-- The register replaces the case table's own one-open-case rule.
DROP INDEX business_case_one_open_per_student;

-- Timers of any business: an owner (business and id), a slot (one timer per owner and slot:
-- re-arming replaces it) and a kind the owner's business reads back as a typed value.
ALTER TABLE timer ADD COLUMN owner_business text;
ALTER TABLE timer ADD COLUMN owner_id uuid;
ALTER TABLE timer ADD COLUMN slot text;
UPDATE timer SET owner_business = 'case', owner_id = case_id, slot = kind,
                 kind = CASE WHEN kind = 'case.reminder' THEN 'case.reminder.' || lower(payload->>'kind') ELSE kind END;
DELETE FROM timer WHERE owner_id IS NULL;
ALTER TABLE timer ALTER COLUMN owner_business SET NOT NULL;
ALTER TABLE timer ALTER COLUMN owner_id SET NOT NULL;
ALTER TABLE timer ALTER COLUMN slot SET NOT NULL;
DROP INDEX timer_one_per_case;
ALTER TABLE timer DROP COLUMN case_id;
ALTER TABLE timer DROP COLUMN payload;
CREATE UNIQUE INDEX timer_one_per_slot ON timer (owner_business, owner_id, slot);

-- The archive package now lives in the case's own state until it is delivered; its files stay
-- beside the case (archive_attachment).
DROP TABLE archive_package;
