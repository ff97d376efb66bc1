-- Every committed change to a role's provider is announced on imds_instances too, so that every
-- host gives the role its new provider without polling. The payload is {"role": name}.
CREATE FUNCTION imds_announce_role_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('imds_instances', json_build_object('role', OLD.name)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('imds_instances', json_build_object('role', NEW.name)::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER roles_announce
    AFTER INSERT OR UPDATE OR DELETE ON roles
    FOR EACH ROW EXECUTE FUNCTION imds_announce_role_change();
