-- Cross-province problem records (跨省问题学籍, domain.md §C).

-- What a province says of a record's problem and of when it became what it is (C.4: the
-- later record is handled first).
ALTER TABLE student_index ADD COLUMN problem_kind text;
ALTER TABLE student_index ADD COLUMN registered_at timestamptz;
ALTER TABLE student_index ADD COLUMN key_data_changed_at timestamptz;
CREATE INDEX student_index_name_sex_birth ON student_index (name, sex, birth_date);

-- A group (问题学籍组): its whole state as the workflow keeps it (`body`), and the columns the
-- views filter on. `identity` is the de-duplication key (resident ID, student ID, or name + sex
-- + birth date): at most one unfinished group per key.
CREATE TABLE problem_group (
    group_id      uuid        PRIMARY KEY,
    kind          text        NOT NULL,
    state         text        NOT NULL,         -- open | arbitration | closed
    origin        text        NOT NULL,         -- dedup | loaded | reprocess
    identity      text        NOT NULL,
    waiting_on    text,                         -- a province, or 'national-office'
    waiting_since timestamptz NOT NULL,
    opened_at     timestamptz NOT NULL,
    closed_at     timestamptz,
    body          jsonb       NOT NULL
);
CREATE UNIQUE INDEX problem_group_one_unfinished_per_identity ON problem_group (identity) WHERE state <> 'closed';
CREATE INDEX problem_group_state ON problem_group (state, waiting_since);

-- The records of each group, to find a student's groups and a province's.
CREATE TABLE problem_member (
    group_id   uuid NOT NULL REFERENCES problem_group (group_id),
    ordinal    int  NOT NULL,
    province   text NOT NULL,
    student_id text NOT NULL,
    state      text NOT NULL,
    PRIMARY KEY (group_id, ordinal)
);
CREATE INDEX problem_member_student ON problem_member (student_id);
CREATE INDEX problem_member_province ON problem_member (province, state);

-- A group's history: every turn, result, approval, decision (with evidence by reference).
CREATE TABLE problem_event (
    event_id bigserial   PRIMARY KEY,
    group_id uuid        NOT NULL REFERENCES problem_group (group_id),
    at       timestamptz NOT NULL,
    actor    text        NOT NULL,              -- a province, 'hub', 'national-office:<subject>'
    what     text        NOT NULL,
    detail   jsonb
);
CREATE INDEX problem_event_group ON problem_event (group_id, event_id);

-- The evidence files of handling results, kept for the national office's arbitration.
CREATE TABLE problem_evidence (
    group_id   uuid   NOT NULL REFERENCES problem_group (group_id),
    sha256     text   NOT NULL,
    name       text   NOT NULL,
    media_type text   NOT NULL,
    content    bytea  NOT NULL,
    PRIMARY KEY (group_id, sha256)
);
