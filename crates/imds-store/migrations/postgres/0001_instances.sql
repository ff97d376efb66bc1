-- The registry of instances, shared by every host of a fleet.
-- A released migration is never edited: sqlx keeps each applied file's checksum and refuses a
-- database whose history differs. Change the schema with a new numbered file.

-- One row per registered instance.
-- instance_id sorts byte-wise (COLLATE "C"), as SQLite sorts text, whatever the database's locale.
-- host_id is the host that serves the instance in fleet mode and NULL in host mode.
-- spec is the instance description as JSON text; the store does not interpret it.
-- revision starts at 1 and goes up by one with every write.
-- updated_at is stamped by the writer, in microseconds as both backends keep it.
CREATE TABLE instances (
    instance_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    host_id     TEXT COLLATE "C",
    spec        TEXT NOT NULL,
    revision    BIGINT NOT NULL CHECK (revision >= 1),
    updated_at  TIMESTAMPTZ NOT NULL
);

-- A host loads its own instances at start and after every reconnection.
CREATE INDEX instances_host_id ON instances (host_id);

-- The source addresses an instance calls from, in canonical text form.
-- The primary key makes an address belong to at most one instance across the whole database:
-- two hosts claiming one address are refused at write time, whichever writes second.
-- position keeps the order the addresses were written in.
CREATE TABLE instance_addresses (
    address     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    instance_id TEXT COLLATE "C" NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    position    INTEGER NOT NULL CHECK (position >= 0),
    UNIQUE (instance_id, position)
);

-- Every committed change to an instance is announced on the channel imds_instances, so that the
-- host serving it applies it without polling. The payload is the instance id and the host it
-- is assigned to after the change (absent when it was removed), as JSON.
-- Addresses change only together with their instance's row (its revision goes up), so the
-- instances table alone announces every change.
-- NOTIFY is transactional: nothing is announced for a write that rolls back, and the
-- announcement leaves at commit.
CREATE FUNCTION imds_announce_instance_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('imds_instances',
            json_build_object('instance_id', OLD.instance_id)::text);
        RETURN OLD;
    END IF;
    -- A host that serves the instance rereads it on any announcement, so the host losing it
    -- in a move learns of the move from the new host id too.
    PERFORM pg_notify('imds_instances',
        json_build_object('instance_id', NEW.instance_id, 'host_id', NEW.host_id)::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER instances_announce
    AFTER INSERT OR UPDATE OR DELETE ON instances
    FOR EACH ROW EXECUTE FUNCTION imds_announce_instance_change();
