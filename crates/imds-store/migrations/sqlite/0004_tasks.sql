-- ECS tasks, served by the task metadata endpoint and the ECS credentials endpoint.

-- One row per registered task, as instances are kept.
-- task_id is the task's 32-hex id, the last part of its ARN.
-- host_id is the host that serves the task in fleet mode and NULL in host mode.
-- spec is the task's description and the values generated for it, as JSON text; the store does
-- not interpret it.
-- revision and updated_at follow the rules of the instances table.
CREATE TABLE tasks (
    task_id    TEXT NOT NULL PRIMARY KEY,
    host_id    TEXT,
    spec       TEXT NOT NULL,
    revision   INTEGER NOT NULL CHECK (revision >= 1),
    updated_at TEXT NOT NULL
) STRICT;

-- Fleet mode loads the tasks of one host.
CREATE INDEX tasks_host_id ON tasks (host_id);

-- The source addresses of a task's containers, in canonical text form; each belongs to at most
-- one task. They are apart from instance_addresses: tasks are served on their own listener.
CREATE TABLE task_addresses (
    address  TEXT NOT NULL PRIMARY KEY,
    task_id  TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    UNIQUE (task_id, position)
) STRICT;
