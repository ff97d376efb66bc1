-- EKS Pod Identity associations: which role the pods of a service account get.

-- One row per association; a service account has at most one (as on EKS).
-- association_id is the association's id (a- and 17 lowercase letters and digits, as EKS gives).
-- spec is the association's role and where it came from, as JSON text; the store does not
-- interpret it.
-- revision and updated_at follow the rules of the instances table.
CREATE TABLE pod_identity_associations (
    association_id  TEXT NOT NULL PRIMARY KEY,
    namespace       TEXT NOT NULL,
    service_account TEXT NOT NULL,
    spec            TEXT NOT NULL,
    revision        INTEGER NOT NULL CHECK (revision >= 1),
    updated_at      TEXT NOT NULL,
    UNIQUE (namespace, service_account)
) STRICT;
