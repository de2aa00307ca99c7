-- A store restored from a backup (`adapter restore`) asks the hub, at the next start, to send
-- again what it sent since shortly before the backup; the marker is removed in the same
-- transaction that queues that request.
CREATE TABLE pending_replay (
    since      TEXT NOT NULL,     -- RFC 3339
    created_at TEXT NOT NULL
);
