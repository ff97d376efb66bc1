-- Secrets shared by every server of the store (fleet mode: the token key and the identity-signing
-- key), sealed by the server with the operator's store key before they are written: the store
-- holds ciphertext only and does not interpret it.
-- A secret is written once, by the first server that needs it; the others read that one.
CREATE TABLE secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
