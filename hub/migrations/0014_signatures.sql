-- Signed messages (报文签名): every message a province sends carries a detached signature over
-- its exact bytes, made with the key of one of its registered certificates, named by the
-- certificate's SHA-256 fingerprint. The hub finds the certificate by that fingerprint.
CREATE INDEX certificate_fingerprint ON certificate (fingerprint);

-- A dead letter keeps the signature it arrived with, so that an operator's replay checks it
-- again exactly as on arrival (a replay never turns an unsigned message into an accepted one).
ALTER TABLE dead_letter ADD COLUMN signature text, ADD COLUMN signer text;
