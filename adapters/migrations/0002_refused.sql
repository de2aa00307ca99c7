-- Messages found in this province's queue that did not come from the hub: the user_id the
-- broker checked against the sender's login is not `hub` (or is missing). They are never
-- handed to the provincial system as the hub's; they are kept here, unparsed and bounded, for
-- the province's operators, and counted in /status.
CREATE TABLE refused (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT    NOT NULL UNIQUE,        -- the AMQP message id, or the body's SHA-256
    user_id     TEXT,                           -- as the broker delivered it
    reason      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    head        BLOB    NOT NULL,               -- at most the first 64 KiB
    received_at TEXT    NOT NULL
);
