-- ECS tasks, served by the task metadata endpoint and the ECS credentials endpoint, shared by
-- every host of a fleet as instances are.

-- One row per registered task.
-- task_id is the task's 32-hex id, the last part of its ARN.
-- host_id is the host that serves the task in fleet mode and NULL in host mode.
-- spec is the task's description and the values generated for it, as JSON text; the database
-- does not interpret it.
-- revision and updated_at follow the rules of the instances table.
CREATE TABLE tasks (
    task_id    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    host_id    TEXT COLLATE "C",
    spec       TEXT NOT NULL,
    revision   BIGINT NOT NULL CHECK (revision >= 1),
    updated_at TIMESTAMPTZ NOT NULL
);

-- A host loads its own tasks at start and after every reconnection.
CREATE INDEX tasks_host_id ON tasks (host_id);

-- The source addresses of a task's containers, in canonical text form; each belongs to at most
-- one task across the database. They are apart from instance_addresses: tasks are served on
-- their own listener.
CREATE TABLE task_addresses (
    address  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    task_id  TEXT COLLATE "C" NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    UNIQUE (task_id, position)
);

-- Every committed change to a task is announced on imds_instances too, so that the host serving
-- it applies it without polling. The payload is the task id and the host it is assigned to after
-- the change (absent when it was removed), as JSON: {"task_id": ..., "host_id": ...}.
CREATE FUNCTION imds_announce_task_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('imds_instances', json_build_object('task_id', OLD.task_id)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('imds_instances',
        json_build_object('task_id', NEW.task_id, 'host_id', NEW.host_id)::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER tasks_announce
    AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION imds_announce_task_change();
