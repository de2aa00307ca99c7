-- The simulated province's side of cross-province cases.
ALTER TABLE student ADD COLUMN held_for_case TEXT;          -- held while another province's case runs
ALTER TABLE student ADD COLUMN transferred_out_case TEXT;   -- record kept, marked transferred out (R32)
ALTER TABLE student ADD COLUMN transferred_in_case TEXT;    -- imported from another province

-- Applications this province made as the receiving side.
CREATE TABLE application (
    message_id TEXT PRIMARY KEY,
    case_id    TEXT,
    student_id TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    outcome    TEXT,                -- COMPLETED, REJECTED, CANCELLED, REFUSED (or an error code)
    code       TEXT,
    closed_at  TEXT
);
CREATE INDEX application_case ON application (case_id);

-- Review requests waiting for this province's reviewers.
CREATE TABLE pending_review (
    case_id  TEXT NOT NULL,
    step     TEXT NOT NULL,
    due_at   TEXT NOT NULL,
    school   TEXT NOT NULL,
    PRIMARY KEY (case_id, step)
);

-- Archives delivered to this province, and their attachments.
CREATE TABLE incoming_archive (
    case_id     TEXT PRIMARY KEY,
    deliver     BLOB NOT NULL,     -- the archive.deliver message (XML)
    imported_at TEXT
);
CREATE TABLE incoming_attachment (
    case_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    PRIMARY KEY (case_id, name)
);
