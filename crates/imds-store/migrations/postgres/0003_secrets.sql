-- Secrets shared by every host of the fleet (the token key and the identity-signing key), sealed
-- by imds with the operator's store key before they are written: the database holds ciphertext
-- only and does not interpret it.
-- A secret is written once, by the first host that needs it; the others read that one.
CREATE TABLE secrets (
    name  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);
