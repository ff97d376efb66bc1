//! The embedded backend: SQLite through sqlx, one file in the state directory.
//!
//! Durability: the file is in WAL mode with `synchronous = FULL`, so a commit returns only after
//! its WAL frames are synced to disk, and an acknowledged write survives `kill -9` and power loss.
//!
//! Concurrency: writes go through a pool of one connection, so writers of this process queue in
//! the pool instead of spinning on SQLite's busy handler; each write is one `BEGIN IMMEDIATE`
//! transaction, which takes the file's write lock before it reads anything, so another process
//! writing the same file makes it wait (up to `BUSY_TIMEOUT`) instead of failing half-way.
//! Reads go through a separate pool and never wait for writes (WAL readers see the last commit).
//!
//! Schema: `migrations/sqlite/*.sql`, embedded at build time and applied on open inside one write
//! transaction, so several processes opening a fresh file at once apply them exactly once.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::{
    as_record_write, task_record, AssociationRecord, AssociationWrite, Change, ChangeFeed,
    InstanceRecord, InstanceWrite, Kind, RoleRecord, RoleWrite, Store, StoreError, TaskRecord,
    TaskWrite, INSTANCES, TASKS,
};

/// The schema migrations, embedded so that the binary needs no files beside it.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another process's lock on the file before failing with
/// `Unavailable`; writes are small, so a lock held this long means something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections for reads; WAL lets them run alongside the writer, and the service's reads are
/// rare (start-up and the control API), so a few suffice on a two-core host.
const READER_CONNECTIONS: u32 = 4;

/// How `updated_at` is stored: RFC 3339 in UTC with exactly six fractional digits, so the text
/// sorts like the time and both backends keep the same (microsecond) precision.
const TIMESTAMP_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// SQLite primary result codes that mean the file cannot be used right now (busy, locked, out of
/// memory, read-only, I/O error, disk full, cannot open), from <https://www.sqlite.org/rescode.html>.
const UNAVAILABLE_CODES: [i64; 7] = [5, 6, 7, 8, 10, 13, 14];

/// The embedded store: one SQLite file.
pub struct SqliteStore {
    /// The database file, for `Debug` and error messages.
    filename: PathBuf,
    /// One connection: every write of this process is queued here.
    writer: SqlitePool,
    /// Connections for `get` and `list`.
    reader: SqlitePool,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SqliteStore")
            .field("filename", &self.filename)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the store at a file path or a `sqlite:` URI, and migrates it.
    ///
    /// A URI may carry SQLite's query parameters (`sqlite://state/imds.db?mode=rwc`); the
    /// durability settings are applied over them.
    pub async fn open(path_or_uri: &str) -> Result<Self, StoreError> {
        if path_or_uri.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(path_or_uri).map_err(|error| {
                StoreError::Config(format!("store URI {path_or_uri:?}: {error}"))
            })?;
            Self::open_with(options).await
        } else {
            Self::open_path(Path::new(path_or_uri)).await
        }
    }

    /// Opens (creating if missing) the store in the file at `path`, and migrates it.
    pub async fn open_path(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // 512 KiB of page cache per connection instead of SQLite's 2 MiB: the store is read
            // at start and by the control API, never on the guest request path.
            .pragma("cache_size", "-512");
        let filename = options.get_filename().to_path_buf();
        let context = |error: StoreError| match error {
            StoreError::Unavailable(message) => {
                StoreError::Unavailable(format!("opening {}: {message}", filename.display()))
            }
            StoreError::Config(message) => {
                StoreError::Config(format!("opening {}: {message}", filename.display()))
            }
            other => other,
        };

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|error| context(store_error(error, "")))?;
        migrate(&writer).await.map_err(context)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READER_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|error| context(store_error(error, "")))?;
        Ok(SqliteStore {
            filename,
            writer,
            reader,
        })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|error| store_error(error, ""))
    }

    /// The records of `kind` that `condition` (a `WHERE` clause on `i`, its parameter `?1` bound
    /// to `value`, or nothing) selects, ordered by id.
    async fn select(
        &self,
        kind: &Kind,
        condition: &str,
        value: Option<&str>,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        // One statement, so one snapshot: no record is seen with another write's addresses.
        let Kind {
            table,
            id_column,
            addresses,
            ..
        } = kind;
        let sql = format!(
            "SELECT i.{id_column} AS id, i.host_id, i.spec, i.revision, i.updated_at, a.address \
             FROM {table} AS i \
             LEFT JOIN {addresses} AS a ON a.{id_column} = i.{id_column} \
             {condition} \
             ORDER BY i.{id_column}, a.position"
        );
        let mut query = sqlx::query(&sql);
        if let Some(value) = value {
            query = query.bind(value);
        }
        // Row by row rather than all rows at once: the rows are made on the connection's own
        // thread, and a start reading thousands of records at once left that thread's malloc
        // arena holding their freed pages (3.1 KiB of RSS per stored instance after a start with
        // 5,000, where registering them had cost 1.8 KiB).
        let mut rows = query.fetch(&self.reader);
        let mut records = Vec::new();
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|error| store_error(error, ""))?
        {
            push_row(kind, &mut records, &row)?;
        }
        Ok(records)
    }

    async fn get(&self, kind: &Kind, id: &str) -> Result<InstanceRecord, StoreError> {
        let condition = format!("WHERE i.{} = ?1", kind.id_column);
        self.select(kind, &condition, Some(id))
            .await?
            .pop()
            .ok_or_else(|| (kind.not_found)(id.to_owned()))
    }

    async fn create(
        &self,
        kind: &Kind,
        write: InstanceWrite,
    ) -> Result<InstanceRecord, StoreError> {
        let record = new_record(write, 1);
        let id = record.instance_id.as_str();
        let mut transaction = self.begin_write().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO {table} ({id_column}, host_id, spec, revision, updated_at) \
             VALUES (?1, ?2, ?3, 1, ?4) \
             ON CONFLICT ({id_column}) DO NOTHING",
            table = kind.table,
            id_column = kind.id_column,
        ))
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(format_timestamp(record.updated_at))
        .execute(&mut *transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "{} {id} is already registered",
                kind.noun
            )));
        }
        insert_addresses(&mut transaction, kind, id, &record.addresses).await?;
        commit(transaction, id).await?;
        Ok(record)
    }

    async fn update(
        &self,
        kind: &Kind,
        write: InstanceWrite,
        expected_revision: Option<i64>,
    ) -> Result<InstanceRecord, StoreError> {
        let Kind {
            table,
            id_column,
            noun,
            ..
        } = kind;
        let mut record = new_record(write, 0);
        let id = record.instance_id.as_str();
        let mut transaction = self.begin_write().await?;
        let revision: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE {table} \
             SET host_id = ?2, spec = ?3, revision = revision + 1, updated_at = ?4 \
             WHERE {id_column} = ?1 AND (?5 IS NULL OR revision = ?5) \
             RETURNING revision"
        ))
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(format_timestamp(record.updated_at))
        .bind(expected_revision)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        let Some(revision) = revision else {
            let stored: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT revision FROM {table} WHERE {id_column} = ?1"
            ))
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(|error| store_error(error, id))?;
            return Err(match (stored, expected_revision) {
                (Some(stored), Some(expected)) => StoreError::Conflict(format!(
                    "{noun} {id} is at revision {stored}, not the expected {expected}; \
                     read it again and retry"
                )),
                _ => (kind.not_found)(id.to_owned()),
            });
        };
        replace_addresses(&mut transaction, kind, id, &record.addresses).await?;
        commit(transaction, id).await?;
        record.revision = revision;
        Ok(record)
    }

    async fn upsert(
        &self,
        kind: &Kind,
        write: InstanceWrite,
    ) -> Result<InstanceRecord, StoreError> {
        let Kind {
            table,
            id_column,
            noun,
            ..
        } = kind;
        let mut record = new_record(write, 0);
        let id = record.instance_id.as_str();
        let mut transaction = self.begin_write().await?;
        // `IS` compares NULL host ids as equal, unlike `=`.
        let revision: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO {table} ({id_column}, host_id, spec, revision, updated_at) \
             VALUES (?1, ?2, ?3, 1, ?4) \
             ON CONFLICT ({id_column}) DO UPDATE \
             SET spec = excluded.spec, revision = {table}.revision + 1, \
                 updated_at = excluded.updated_at \
             WHERE {table}.host_id IS excluded.host_id \
             RETURNING revision"
        ))
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(format_timestamp(record.updated_at))
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        let Some(revision) = revision else {
            let stored_host: Option<Option<String>> = sqlx::query_scalar(&format!(
                "SELECT host_id FROM {table} WHERE {id_column} = ?1"
            ))
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(|error| store_error(error, id))?;
            let holder = match stored_host.flatten() {
                Some(host_id) => format!("host {host_id}"),
                None => "no host (host mode)".to_owned(),
            };
            return Err(StoreError::Conflict(format!(
                "{noun} {id} is served by {holder}; move it with an update, not an upsert"
            )));
        };
        replace_addresses(&mut transaction, kind, id, &record.addresses).await?;
        commit(transaction, id).await?;
        record.revision = revision;
        Ok(record)
    }

    async fn delete(&self, kind: &Kind, id: &str) -> Result<(), StoreError> {
        // The addresses go with the row (`ON DELETE CASCADE`), in the same statement.
        let deleted = sqlx::query(&format!(
            "DELETE FROM {} WHERE {} = ?1",
            kind.table, kind.id_column
        ))
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(|error| store_error(error, id))?;
        if deleted.rows_affected() == 0 {
            return Err((kind.not_found)(id.to_owned()));
        }
        Ok(())
    }
}

/// Applies the migrations this build has and the file lacks, holding the file's write lock.
///
/// Inside the outer transaction sqlx runs each migration in a savepoint, so a failed migration
/// leaves the file as it was, and a second process waits for the first and then finds nothing
/// left to apply.
async fn migrate(writer: &SqlitePool) -> Result<(), StoreError> {
    let mut transaction = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|error| store_error(error, ""))?;
    // `run_direct`, not `run`: with `run` on a connection the future is not `Send` ("implementation
    // of `Acquire` is not general enough"), so `open` could not be spawned; sqlx offers
    // `run_direct` for that case.
    MIGRATOR
        .run_direct(&mut *transaction)
        .await
        .map_err(migrate_error)?;
    transaction
        .commit()
        .await
        .map_err(|error| store_error(error, ""))
}

#[async_trait]
impl Store for SqliteStore {
    async fn list_instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.select(&INSTANCES, "", None).await
    }

    async fn list_host_instances(&self, host_id: &str) -> Result<Vec<InstanceRecord>, StoreError> {
        self.select(&INSTANCES, "WHERE i.host_id = ?1", Some(host_id))
            .await
    }

    async fn get_instance(&self, instance_id: &str) -> Result<InstanceRecord, StoreError> {
        self.get(&INSTANCES, instance_id).await
    }

    async fn create_instance(&self, write: InstanceWrite) -> Result<InstanceRecord, StoreError> {
        self.create(&INSTANCES, write).await
    }

    async fn update_instance(
        &self,
        write: InstanceWrite,
        expected_revision: Option<i64>,
    ) -> Result<InstanceRecord, StoreError> {
        self.update(&INSTANCES, write, expected_revision).await
    }

    async fn upsert_instance(&self, write: InstanceWrite) -> Result<InstanceRecord, StoreError> {
        self.upsert(&INSTANCES, write).await
    }

    async fn delete_instance(&self, instance_id: &str) -> Result<(), StoreError> {
        self.delete(&INSTANCES, instance_id).await
    }

    async fn list_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let records = self.select(&TASKS, "", None).await?;
        Ok(records.into_iter().map(task_record).collect())
    }

    async fn list_host_tasks(&self, host_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let records = self
            .select(&TASKS, "WHERE i.host_id = ?1", Some(host_id))
            .await?;
        Ok(records.into_iter().map(task_record).collect())
    }

    async fn get_task(&self, task_id: &str) -> Result<TaskRecord, StoreError> {
        self.get(&TASKS, task_id).await.map(task_record)
    }

    async fn create_task(&self, write: TaskWrite) -> Result<TaskRecord, StoreError> {
        self.create(&TASKS, as_record_write(write))
            .await
            .map(task_record)
    }

    async fn update_task(
        &self,
        write: TaskWrite,
        expected_revision: Option<i64>,
    ) -> Result<TaskRecord, StoreError> {
        self.update(&TASKS, as_record_write(write), expected_revision)
            .await
            .map(task_record)
    }

    async fn upsert_task(&self, write: TaskWrite) -> Result<TaskRecord, StoreError> {
        self.upsert(&TASKS, as_record_write(write))
            .await
            .map(task_record)
    }

    async fn delete_task(&self, task_id: &str) -> Result<(), StoreError> {
        self.delete(&TASKS, task_id).await
    }

    async fn list_associations(&self) -> Result<Vec<AssociationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT association_id, namespace, service_account, spec, revision, updated_at \
             FROM pod_identity_associations ORDER BY namespace, service_account",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|error| store_error(error, ""))?;
        rows.iter().map(association_from_row).collect()
    }

    async fn create_association(
        &self,
        write: AssociationWrite,
    ) -> Result<AssociationRecord, StoreError> {
        let updated_at = now_in_microseconds();
        sqlx::query(
            "INSERT INTO pod_identity_associations \
             (association_id, namespace, service_account, spec, revision, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 1, ?5)",
        )
        .bind(&write.association_id)
        .bind(&write.namespace)
        .bind(&write.service_account)
        .bind(&write.spec)
        .bind(format_timestamp(updated_at))
        .execute(&self.writer)
        .await
        .map_err(|error| association_error(error, &write))?;
        Ok(write.into_record(1, updated_at))
    }

    async fn put_association(
        &self,
        write: AssociationWrite,
    ) -> Result<AssociationRecord, StoreError> {
        let updated_at = now_in_microseconds();
        // One statement: atomic without an explicit transaction.
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO pod_identity_associations \
             (association_id, namespace, service_account, spec, revision, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 1, ?5) \
             ON CONFLICT (association_id) DO UPDATE \
             SET namespace = excluded.namespace, service_account = excluded.service_account, \
                 spec = excluded.spec, revision = pod_identity_associations.revision + 1, \
                 updated_at = excluded.updated_at \
             RETURNING revision",
        )
        .bind(&write.association_id)
        .bind(&write.namespace)
        .bind(&write.service_account)
        .bind(&write.spec)
        .bind(format_timestamp(updated_at))
        .fetch_one(&self.writer)
        .await
        .map_err(|error| association_error(error, &write))?;
        Ok(write.into_record(revision, updated_at))
    }

    async fn delete_association(&self, association_id: &str) -> Result<(), StoreError> {
        let deleted =
            sqlx::query("DELETE FROM pod_identity_associations WHERE association_id = ?1")
                .bind(association_id)
                .execute(&self.writer)
                .await
                .map_err(|error| store_error(error, ""))?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::AssociationNotFound(association_id.to_owned()));
        }
        Ok(())
    }

    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, spec, revision, updated_at FROM roles ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(|error| store_error(error, ""))?;
        rows.iter().map(role_from_row).collect()
    }

    async fn get_role(&self, name: &str) -> Result<RoleRecord, StoreError> {
        let row = sqlx::query("SELECT name, spec, revision, updated_at FROM roles WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(|error| store_error(error, ""))?;
        match row {
            Some(row) => role_from_row(&row),
            None => Err(StoreError::RoleNotFound(name.to_owned())),
        }
    }

    async fn put_role(&self, write: RoleWrite) -> Result<RoleRecord, StoreError> {
        let updated_at = now_in_microseconds();
        // One statement: atomic without an explicit transaction.
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO roles (name, spec, revision, updated_at) VALUES (?1, ?2, 1, ?3) \
             ON CONFLICT (name) DO UPDATE \
             SET spec = excluded.spec, revision = roles.revision + 1, \
                 updated_at = excluded.updated_at \
             RETURNING revision",
        )
        .bind(&write.name)
        .bind(&write.spec)
        .bind(format_timestamp(updated_at))
        .fetch_one(&self.writer)
        .await
        .map_err(|error| store_error(error, ""))?;
        Ok(RoleRecord {
            name: write.name,
            spec: write.spec,
            revision,
            updated_at,
        })
    }

    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        let deleted = sqlx::query("DELETE FROM roles WHERE name = ?1")
            .bind(name)
            .execute(&self.writer)
            .await
            .map_err(|error| store_error(error, ""))?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::RoleNotFound(name.to_owned()));
        }
        Ok(())
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(|error| store_error(error, ""))
    }

    async fn create_secret(&self, name: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO secrets (name, value, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&value)
        .bind(format_timestamp(now_in_microseconds()))
        .execute(&mut *transaction)
        .await
        .map_err(|error| store_error(error, ""))?;
        let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM secrets WHERE name = ?1")
            .bind(name)
            .fetch_one(&mut *transaction)
            .await
            .map_err(|error| store_error(error, ""))?;
        commit(transaction, "").await?;
        Ok(stored)
    }

    fn watch(&self) -> ChangeFeed {
        // One process writes the file, and it applies its own writes as it makes them: after the
        // first `Resync` there is nothing to follow.
        let (sender, health, feed) = ChangeFeed::channel();
        sender
            .try_send(Change::Resync)
            .expect("a new feed has room for its first change");
        health.always_connected();
        feed
    }
}

fn association_from_row(row: &SqliteRow) -> Result<AssociationRecord, StoreError> {
    let association_id: String = row.try_get("association_id").map_err(corrupt)?;
    let updated_at: String = row.try_get("updated_at").map_err(corrupt)?;
    Ok(AssociationRecord {
        namespace: row.try_get("namespace").map_err(corrupt)?,
        service_account: row.try_get("service_account").map_err(corrupt)?,
        spec: row.try_get("spec").map_err(corrupt)?,
        revision: row.try_get("revision").map_err(corrupt)?,
        updated_at: parse_timestamp(&updated_at).map_err(|error| {
            corrupt(format!(
                "association {association_id} has updated_at {updated_at:?}: {error}"
            ))
        })?,
        association_id,
    })
}

/// The error of an association write; a taken id or service account is named.
fn association_error(error: sqlx::Error, write: &AssociationWrite) -> StoreError {
    match store_error(error, "") {
        StoreError::Conflict(message) => crate::association_conflict(write, &message),
        other => other,
    }
}

fn role_from_row(row: &SqliteRow) -> Result<RoleRecord, StoreError> {
    let name: String = row.try_get("name").map_err(corrupt)?;
    let updated_at: String = row.try_get("updated_at").map_err(corrupt)?;
    Ok(RoleRecord {
        spec: row.try_get("spec").map_err(corrupt)?,
        revision: row.try_get("revision").map_err(corrupt)?,
        updated_at: parse_timestamp(&updated_at).map_err(|error| {
            corrupt(format!(
                "role {name} has updated_at {updated_at:?}: {error}"
            ))
        })?,
        name,
    })
}

/// Now, to the microsecond both backends keep.
#[allow(
    clippy::disallowed_methods,
    reason = "the store stamps a write with the time it is made"
)]
pub(crate) fn now_in_microseconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .expect("a nanosecond count rounded down stays below one second")
}

/// The record a write will store, stamped now; the caller fills in the revision it gets.
pub(crate) fn new_record(write: InstanceWrite, revision: i64) -> InstanceRecord {
    let updated_at = now_in_microseconds();
    InstanceRecord {
        addresses: canonical_addresses(&write.addresses),
        instance_id: write.instance_id,
        host_id: write.host_id,
        spec: write.spec,
        revision,
        updated_at,
    }
}

/// The addresses in canonical form (IPv4-mapped IPv6 as IPv4), first occurrence kept.
fn canonical_addresses(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let mut seen = HashSet::with_capacity(addresses.len());
    addresses
        .iter()
        .map(IpAddr::to_canonical)
        .filter(|address| seen.insert(*address))
        .collect()
}

async fn replace_addresses(
    transaction: &mut Transaction<'static, Sqlite>,
    kind: &Kind,
    id: &str,
    addresses: &[IpAddr],
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "DELETE FROM {} WHERE {} = ?1",
        kind.addresses, kind.id_column
    ))
    .bind(id)
    .execute(&mut **transaction)
    .await
    .map_err(|error| store_error(error, id))?;
    insert_addresses(transaction, kind, id, addresses).await
}

/// Claims each address for the record; `Conflict` naming the owner if one is taken.
///
/// `ON CONFLICT DO NOTHING` lets the primary key refuse the claim without failing the statement,
/// so the owner can be looked up and named in the same transaction.
async fn insert_addresses(
    transaction: &mut Transaction<'static, Sqlite>,
    kind: &Kind,
    id: &str,
    addresses: &[IpAddr],
) -> Result<(), StoreError> {
    let Kind {
        id_column,
        addresses: table,
        noun,
        ..
    } = kind;
    for (position, address) in addresses.iter().enumerate() {
        let address_text = address.to_string();
        let position = i64::try_from(position).expect("a Vec's length fits in i64");
        let inserted = sqlx::query(&format!(
            "INSERT INTO {table} (address, {id_column}, position) \
             VALUES (?1, ?2, ?3) \
             ON CONFLICT (address) DO NOTHING"
        ))
        .bind(&address_text)
        .bind(id)
        .bind(position)
        .execute(&mut **transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        if inserted.rows_affected() == 0 {
            let owner: Option<String> = sqlx::query_scalar(&format!(
                "SELECT {id_column} FROM {table} WHERE address = ?1"
            ))
            .bind(&address_text)
            .fetch_optional(&mut **transaction)
            .await
            .map_err(|error| store_error(error, id))?;
            let owner = owner.unwrap_or_else(|| format!("another {noun}"));
            return Err(StoreError::Conflict(format!(
                "address {address_text} belongs to {noun} {owner}, so {noun} {id} cannot claim it"
            )));
        }
    }
    Ok(())
}

async fn commit(
    transaction: Transaction<'static, Sqlite>,
    instance_id: &str,
) -> Result<(), StoreError> {
    transaction
        .commit()
        .await
        .map_err(|error| store_error(error, instance_id))
}

/// Adds one row of the records ⟕ addresses join, read in id order, to `records`: a new record,
/// or another address of the last one.
fn push_row(
    kind: &Kind,
    records: &mut Vec<InstanceRecord>,
    row: &SqliteRow,
) -> Result<(), StoreError> {
    let noun = kind.noun;
    {
        let instance_id: String = row.try_get("id").map_err(corrupt)?;
        let address: Option<String> = row.try_get("address").map_err(corrupt)?;
        let address = address
            .map(|text| {
                text.parse::<IpAddr>().map_err(|error| {
                    corrupt(format!(
                        "{noun} {instance_id} has address {text:?} that is not one: {error}"
                    ))
                })
            })
            .transpose()?;
        let same_instance = records
            .last()
            .is_some_and(|record| record.instance_id == instance_id);
        if !same_instance {
            let updated_at: String = row.try_get("updated_at").map_err(corrupt)?;
            records.push(InstanceRecord {
                host_id: row.try_get("host_id").map_err(corrupt)?,
                spec: row.try_get("spec").map_err(corrupt)?,
                revision: row.try_get("revision").map_err(corrupt)?,
                updated_at: parse_timestamp(&updated_at).map_err(|error| {
                    corrupt(format!(
                        "{noun} {instance_id} has updated_at {updated_at:?}: {error}"
                    ))
                })?,
                instance_id,
                addresses: Vec::new(),
            });
        }
        if let Some(address) = address {
            let record = records
                .last_mut()
                .expect("a record was pushed for this row or an earlier one");
            record.addresses.push(address);
        }
    }
    Ok(())
}

fn format_timestamp(timestamp: OffsetDateTime) -> String {
    timestamp
        .to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP_FORMAT)
        .expect("every UTC time in years 0 to 9999 formats with this description")
}

fn parse_timestamp(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    Ok(PrimitiveDateTime::parse(text, TIMESTAMP_FORMAT)?.assume_utc())
}

/// A stored value this build cannot read: the file was changed by hand or is damaged.
fn corrupt(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    let error = error.into();
    StoreError::Other(
        format!("the store file holds a value this build cannot read: {error}").into(),
    )
}

/// Maps a sqlx error to the variant callers branch on; `instance_id` names the instance if any.
fn store_error(error: sqlx::Error, instance_id: &str) -> StoreError {
    match error {
        sqlx::Error::RowNotFound => StoreError::NotFound(instance_id.to_owned()),
        sqlx::Error::Configuration(error) => StoreError::Config(error.to_string()),
        sqlx::Error::Database(database_error) => {
            if database_error.is_unique_violation() {
                // The writes name the taken id or address themselves; this is the fallback.
                let message = database_error.message();
                return StoreError::Conflict(if instance_id.is_empty() {
                    message.to_owned()
                } else {
                    format!("instance {instance_id}: {message}")
                });
            }
            let primary_code = database_error
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .map(|extended_code| extended_code & 0xff);
            if primary_code.is_some_and(|code| UNAVAILABLE_CODES.contains(&code)) {
                StoreError::Unavailable(database_error.message().to_owned())
            } else {
                StoreError::Other(Box::new(sqlx::Error::Database(database_error)))
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Migrate(error) => migrate_error(*error),
        other => StoreError::Other(Box::new(other)),
    }
}

fn migrate_error(error: MigrateError) -> StoreError {
    match error {
        MigrateError::Execute(error) => store_error(error, ""),
        MigrateError::VersionMissing(version) => StoreError::Config(format!(
            "the store file has migration {version}, which this build does not know: \
             a newer imds wrote it; run that release or a later one"
        )),
        MigrateError::VersionMismatch(version) => StoreError::Config(format!(
            "migration {version} in the store file differs from this build's: \
             the file was migrated by a build with an edited migration"
        )),
        other => StoreError::Other(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_canonical(input: &[&str], expect: &[&str]) {
        let input: Vec<IpAddr> = input.iter().map(|text| text.parse().unwrap()).collect();
        let actual: Vec<String> = canonical_addresses(&input)
            .iter()
            .map(IpAddr::to_string)
            .collect();
        assert_eq!(actual, expect);
    }

    #[test]
    fn canonical_addresses_keep_order() {
        check_canonical(&["127.0.0.3", "127.0.0.2"], &["127.0.0.3", "127.0.0.2"]);
    }

    #[test]
    fn canonical_addresses_drop_repeats() {
        check_canonical(&["::2", "127.0.0.2", "::2"], &["::2", "127.0.0.2"]);
    }

    #[test]
    fn canonical_addresses_unmap_ipv4() {
        check_canonical(&["::ffff:127.0.0.2", "127.0.0.2"], &["127.0.0.2"]);
    }

    #[test]
    fn canonical_addresses_shorten_ipv6() {
        check_canonical(&["fd00:0:0:0:0:0:0:0001"], &["fd00::1"]);
    }

    #[test]
    fn timestamps_round_trip_with_microseconds() {
        let timestamp = time::macros::datetime!(2026-11-24 16:01:07.123456 UTC);
        let text = format_timestamp(timestamp);
        assert_eq!(text, "2026-11-24T16:01:07.123456Z");
        assert_eq!(parse_timestamp(&text).unwrap(), timestamp);
    }

    #[test]
    fn timestamps_sort_like_time() {
        // Trimmed fractions would put "07.5Z" after "07.55Z".
        let earlier = format_timestamp(time::macros::datetime!(2026-11-24 16:01:07.5 UTC));
        let later = format_timestamp(time::macros::datetime!(2026-11-24 16:01:07.55 UTC));
        assert!(earlier < later, "{earlier} should sort before {later}");
    }

    #[test]
    fn timestamps_are_stored_in_utc() {
        let timestamp = time::macros::datetime!(2026-11-24 17:01:07 +01:00);
        assert_eq!(format_timestamp(timestamp), "2026-11-24T16:01:07.000000Z");
    }
}
