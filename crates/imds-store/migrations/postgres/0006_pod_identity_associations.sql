-- EKS Pod Identity associations: which role the pods of a service account get, shared by every
-- host of a fleet (the fleet is one cluster).

-- One row per association; a service account has at most one (as on EKS).
-- association_id is the association's id (a- and 17 lowercase letters and digits, as EKS gives).
-- spec is the association's role and where it came from, as JSON text; the database does not
-- interpret it.
-- revision and updated_at follow the rules of the instances table.
CREATE TABLE pod_identity_associations (
    association_id  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    namespace       TEXT COLLATE "C" NOT NULL,
    service_account TEXT COLLATE "C" NOT NULL,
    spec            TEXT NOT NULL,
    revision        BIGINT NOT NULL CHECK (revision >= 1),
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (namespace, service_account)
);

-- Every committed change to an association is announced on imds_instances too, so that every
-- host serves it without polling. The payload is {"association_id": id}.
CREATE FUNCTION imds_announce_association_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('imds_instances',
            json_build_object('association_id', OLD.association_id)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('imds_instances',
        json_build_object('association_id', NEW.association_id)::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER pod_identity_associations_announce
    AFTER INSERT OR UPDATE OR DELETE ON pod_identity_associations
    FOR EACH ROW EXECUTE FUNCTION imds_announce_association_change();
