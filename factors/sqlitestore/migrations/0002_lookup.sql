-- The keyed hash of what must be unique among all factors (a passkey's
-- credential id, HMAC-SHA256 under a key derived from
-- factors.encryption_key): NULL for none (TOTP) and for rows stored before
-- this migration until stepgate fills it at start. UNIQUE allows many NULLs.
ALTER TABLE stepgate_factors ADD COLUMN lookup BLOB;
CREATE UNIQUE INDEX stepgate_factors_lookup ON stepgate_factors (lookup);
