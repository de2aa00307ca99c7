-- Organization-code changes the registrars are to confirm, when.
CREATE TABLE pending_confirm (
    change_id TEXT PRIMARY KEY,
    unit      TEXT NOT NULL,
    due_at    TEXT NOT NULL
);
