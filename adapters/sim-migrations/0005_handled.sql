-- Inbox messages the simulated province has handled: taken again after an acknowledgement
-- that did not reach the adapter (it was restarting), a message is not handled twice.
CREATE TABLE handled_message (
    message_id TEXT PRIMARY KEY,
    handled_at TEXT NOT NULL
);
