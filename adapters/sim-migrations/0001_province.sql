-- The simulated provincial system's own records (省级学籍系统).
CREATE TABLE school (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE student (
    student_id     TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    sex            TEXT NOT NULL,
    birth_date     TEXT NOT NULL,
    document_type  TEXT NOT NULL,
    document_no    TEXT,
    school         TEXT NOT NULL REFERENCES school (code),
    grade          TEXT NOT NULL,
    status         TEXT NOT NULL,
    problem_record INTEGER NOT NULL,
    open_business  INTEGER NOT NULL,
    changed_at     TEXT NOT NULL,
    synced_at      TEXT               -- changed_at of the version last sent to the national index
);

-- What the simulated system did and saw, for progress lines and tallies.
CREATE TABLE event (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL
);
