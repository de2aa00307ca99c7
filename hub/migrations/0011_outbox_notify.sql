-- The relay is woken by the database itself, once per statement that adds to the outbox (and
-- PostgreSQL folds a transaction's identical notifications into one, delivered at commit):
-- no round trip per message for it.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
