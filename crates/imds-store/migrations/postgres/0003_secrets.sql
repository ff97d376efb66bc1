-- Secrets that every host of the fleet must agree on: the session-token key and the
-- identity-signing key. Values are sealed by imds with a key the operator provides before they
-- reach the database; the database keeps ciphertext only and does not interpret it.
-- A secret is written once (the first host to start makes it) and never replaced.
CREATE TABLE secrets (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
