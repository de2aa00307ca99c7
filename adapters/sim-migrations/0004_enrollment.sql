-- Planned cases are transfers or post-graduation enrollments.
ALTER TABLE planned_transfer ADD COLUMN business TEXT NOT NULL DEFAULT 'TRANSFER';
