-- Cross-province cases (跨省业务): transfers and enrollments share these tables.

-- The school registry (学校标识码), loaded from the national institution-code system. A case
-- may name only active schools of the right province whose code is usable.
CREATE TABLE school (
    code          text        PRIMARY KEY,
    province      text        NOT NULL,
    name          text        NOT NULL,
    active        boolean     NOT NULL DEFAULT true,
    -- A newly linked code syncs to the national side within 1–2 days ([003 Q39]); until
    -- then cross-province business is refused with E_SCHOOL_NO_CODE.
    code_usable_from timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE business_case (
    case_id        uuid        PRIMARY KEY,
    business       text        NOT NULL CHECK (business IN ('TRANSFER', 'ENROLLMENT')),
    student_id     text        NOT NULL,
    student_name   text        NOT NULL,
    in_province    text        NOT NULL,
    in_school      text        NOT NULL,
    out_province   text        NOT NULL,
    out_school     text        NOT NULL,
    application_id uuid        NOT NULL UNIQUE,      -- the apply message: one case per application
    data           jsonb       NOT NULL,             -- the whole case as the workflow sees it
    stage          text        NOT NULL,
    state          text        NOT NULL,             -- as told to the provinces (CaseState)
    waiting_party  text,                             -- who must act now …
    waiting_step   text,
    since          timestamptz NOT NULL,             -- … since when
    deadline       date,                             -- of the pending review step
    attempts       integer     NOT NULL DEFAULT 1,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    closed_at      timestamptz
);
-- One open cross-province case per student; a cancellation that has not finished keeps its
-- case open, so a new application is refused until the out-province has closed its side.
CREATE UNIQUE INDEX business_case_one_open_per_student ON business_case (student_id) WHERE closed_at IS NULL;
CREATE INDEX business_case_student ON business_case (student_id);
CREATE INDEX business_case_in ON business_case (in_province, state);
CREATE INDEX business_case_out ON business_case (out_province, state);
CREATE INDEX business_case_waiting ON business_case (waiting_party, since) WHERE closed_at IS NULL;

-- Every reviewer's decision: who, when, opinion.
CREATE TABLE case_step (
    case_id    uuid        NOT NULL REFERENCES business_case (case_id),
    seq        integer     NOT NULL,
    step       text        NOT NULL,
    province   text        NOT NULL,
    decision   text        NOT NULL,
    unit       text        NOT NULL,
    reviewer   text        NOT NULL,
    opinion    text        NOT NULL,
    decided_at timestamptz NOT NULL,
    PRIMARY KEY (case_id, seq)
);

-- Every change of stage, and what caused it (a message, a timer, an operator).
CREATE TABLE case_event (
    event_id   bigserial   PRIMARY KEY,
    case_id    uuid        NOT NULL REFERENCES business_case (case_id),
    at         timestamptz NOT NULL,
    from_stage text,
    to_stage   text        NOT NULL,
    cause      text        NOT NULL,
    detail     text
);
CREATE INDEX case_event_case ON case_event (case_id, event_id);

-- The initiator's evidence (证明材料), shown to reviewers on both sides.
CREATE TABLE case_evidence (
    case_id    uuid    NOT NULL REFERENCES business_case (case_id),
    name       text    NOT NULL,
    media_type text    NOT NULL,
    size       bigint  NOT NULL,
    sha256     text    NOT NULL,
    content    bytea   NOT NULL,
    PRIMARY KEY (case_id, name)
);

-- The archive package as received from the out-province and checked by the hub.
CREATE TABLE archive_package (
    case_id     uuid        PRIMARY KEY REFERENCES business_case (case_id),
    record      jsonb       NOT NULL,
    manifest    jsonb       NOT NULL,               -- the attachments it announces
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE archive_attachment (
    case_id     uuid        NOT NULL REFERENCES business_case (case_id),
    name        text        NOT NULL,
    media_type  text        NOT NULL,
    size        bigint      NOT NULL,
    sha256      text        NOT NULL,
    content     bytea       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, name)
);

-- What operators and the national office did, and who.
CREATE TABLE audit (
    audit_id bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,                  -- the certificate's CN
    role     text        NOT NULL,
    action   text        NOT NULL,
    case_id  uuid,
    detail   text        NOT NULL
);
CREATE INDEX audit_case ON audit (case_id, audit_id);
