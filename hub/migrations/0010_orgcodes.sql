-- Organization codes (机构代码, domain.md §D): the registry's education departments, each
-- school's supervising department and stages, and the batches of change records from the
-- national institution-code system, each record at the one province it concerns.

CREATE TABLE department (
    code       text        PRIMARY KEY,            -- 12-digit division code
    province   text        NOT NULL,
    name       text        NOT NULL,
    level      text        NOT NULL,               -- PROVINCE, CITY, COUNTY
    parent     text,
    active     boolean     NOT NULL DEFAULT true,
    revoked_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Blockers of a division's revocation: departments under it …
CREATE INDEX department_parent ON department (parent) WHERE active;

ALTER TABLE school ADD COLUMN department text;     -- 主管教育部门
ALTER TABLE school ADD COLUMN stages text[] NOT NULL DEFAULT '{}';
ALTER TABLE school ADD COLUMN revoked_stages text[] NOT NULL DEFAULT '{}';
ALTER TABLE school ADD COLUMN revoked_at timestamptz;
-- … and schools under it.
CREATE INDEX school_department ON school (department) WHERE active;
-- Blockers of a school's revocation: students on its roll.
CREATE INDEX student_index_school ON student_index (school, status);

CREATE TABLE orgcode_batch (
    batch_id     text        NOT NULL,
    version      integer     NOT NULL,
    kind         text        NOT NULL,             -- DIVISION, SCHOOL
    published_on date        NOT NULL,
    sha256       text        NOT NULL,             -- of the canonical content: the same again is a no-op
    records      integer     NOT NULL,
    loaded_by    text        NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, version)
);

-- Each province's own sequence of change records: 1, 2, 3, … without gaps.
CREATE TABLE orgcode_sequence (
    province text   PRIMARY KEY,
    last     bigint NOT NULL
);

CREATE TABLE orgcode_change (
    change_id    uuid        PRIMARY KEY,
    batch_id     text        NOT NULL,
    version      integer     NOT NULL,
    ordinal      integer     NOT NULL,             -- its place in the batch
    province     text        NOT NULL,
    sequence     bigint      NOT NULL,
    kind         text        NOT NULL,
    action       text        NOT NULL,             -- ADD, CHANGE, REVOKE, REVOKE_STAGE
    unit         text        NOT NULL,             -- division or school code
    stage        text,
    confirm_by   text        NOT NULL,
    record       jsonb       NOT NULL,
    state        text        NOT NULL,             -- UNCONFIRMED, CONFIRMED, DONE
    confirmed_by text,
    confirmed_at timestamptz,
    done_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (batch_id, version) REFERENCES orgcode_batch,
    UNIQUE (province, sequence),
    UNIQUE (batch_id, version, ordinal)
);
-- Revocations waiting for their blockers, per province.
CREATE INDEX orgcode_change_waiting ON orgcode_change (province, sequence) WHERE state = 'CONFIRMED';
CREATE INDEX orgcode_change_unit ON orgcode_change (unit, sequence);

-- A record's history: loaded, confirmed (by whom), waiting, executed.
CREATE TABLE orgcode_event (
    event_id  bigserial   PRIMARY KEY,
    change_id uuid        NOT NULL REFERENCES orgcode_change ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    what      text        NOT NULL,
    detail    text        NOT NULL
);
CREATE INDEX orgcode_event_change ON orgcode_event (change_id, event_id);
