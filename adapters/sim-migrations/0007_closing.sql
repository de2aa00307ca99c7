-- Every case.closed this province was handed, by case. After a broker node fails, a closing can
-- arrive before the case.accepted that links the case to this province's application; the
-- acceptance then applies the closing it finds here.
CREATE TABLE case_closing (
    case_id   TEXT PRIMARY KEY,
    outcome   TEXT NOT NULL,
    code      TEXT,
    closed_at TEXT NOT NULL
);
