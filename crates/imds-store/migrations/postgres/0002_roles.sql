-- Role credential providers set through the control API or the config file.

-- One row per role that has its own provider; roles without a row use the default provider.
-- spec is the role's description as JSON text (the config file's [[roles]] keys); the store does
-- not interpret it. It may hold the keys of a "static" role: grant access to this database as
-- narrowly as to the config file.
-- revision and updated_at follow the rules of the instances table.
CREATE TABLE roles (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spec       TEXT NOT NULL,
    revision   BIGINT NOT NULL CHECK (revision >= 1),
    updated_at TIMESTAMPTZ NOT NULL
);
