-- The registry of instances.
-- A released migration is never edited: sqlx keeps each applied file's checksum and refuses a
-- store whose history differs. Change the schema with a new numbered file.

-- One row per registered instance.
-- host_id is the host that serves the instance in fleet mode and NULL in host mode.
-- spec is the instance description as JSON text; the store does not interpret it.
-- revision starts at 1 and goes up by one with every write.
-- updated_at is RFC 3339 text in UTC with microseconds, the precision both backends keep.
CREATE TABLE instances (
    instance_id TEXT NOT NULL PRIMARY KEY,
    host_id     TEXT,
    spec        TEXT NOT NULL,
    revision    INTEGER NOT NULL CHECK (revision >= 1),
    updated_at  TEXT NOT NULL
) STRICT;

-- Fleet mode loads the instances of one host.
CREATE INDEX instances_host_id ON instances (host_id);

-- The source addresses an instance calls from, in canonical text form.
-- The primary key makes an address belong to at most one instance: the database refuses a second
-- claim, whichever writer makes it.
-- position keeps the order the addresses were written in.
CREATE TABLE instance_addresses (
    address     TEXT NOT NULL PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    position    INTEGER NOT NULL CHECK (position >= 0),
    UNIQUE (instance_id, position)
) STRICT;
