-- The last organization-code record (orgcode.change) passed on to the provincial system, by
-- the province's sequence number: records pass in order, once; a gap is asked for
-- (orgcode.resend) and the record after it waits for the resend.
CREATE TABLE orgcode_cursor (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last        INTEGER NOT NULL,
    asked_after INTEGER,              -- the last resend asked for …
    asked_at    TEXT                  -- … and when (RFC 3339)
);
