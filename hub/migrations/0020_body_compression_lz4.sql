-- Stored message bodies and files are compressed with lz4 instead of PostgreSQL's default,
-- pglz. An archive file travels as base64 inside XML: pglz finds matches in the XML around it,
-- then works through the whole value (about 80 ms for a 2 MiB file on the reference machine)
-- only to keep it uncompressed, since base64 of a scan never saves the 25 % it asks for; each
-- file is written three times. lz4 gives up or finishes in a fifth of the time and still
-- compresses the small XML messages that the log keeps for 400 days.
--
-- Only new values are affected; values already stored stay readable as they are. A server
-- built without lz4 keeps pglz (a notice says so): correct, only slower.
DO $$
BEGIN
    ALTER TABLE message_log ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE outbox ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE dead_letter ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE case_evidence ALTER COLUMN content SET COMPRESSION lz4;
    ALTER TABLE archive_attachment ALTER COLUMN content SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server: stored bodies keep pglz compression';
END
$$;
