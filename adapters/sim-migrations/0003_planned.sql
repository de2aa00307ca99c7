-- Transfers this province intends to apply for: looked up first (全国学籍查询), applied for
-- once the national index knows the student.
CREATE TABLE planned_transfer (
    student_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    school     TEXT NOT NULL,
    grade      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    TEXT NOT NULL,
    applied_at TEXT
);
