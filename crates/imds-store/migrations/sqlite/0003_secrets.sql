-- Secrets that every server sharing the store must agree on: the session-token key and the
-- identity-signing key. Values are sealed by the server with a key the operator provides before
-- they reach the store; the store keeps opaque bytes.
-- A secret is written once (the first server to start makes it) and never replaced.
CREATE TABLE secrets (
    name       TEXT NOT NULL PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
