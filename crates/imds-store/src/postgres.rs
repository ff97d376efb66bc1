//! The shared backend of fleet mode: PostgreSQL through sqlx, one database for every host.
//!
//! Durability: each write is one transaction, acknowledged after PostgreSQL's commit (durable
//! as the server's `synchronous_commit` makes it; the default waits for the WAL flush).
//!
//! Concurrency: many hosts write at once. Rows are locked by the statements that change them
//! (`UPDATE`, `INSERT ... ON CONFLICT`), so writes to one instance queue behind each other and
//! none is lost, and the primary key on `instance_addresses.address` lets exactly one claim of an
//! address win, whichever host makes it. A conditional update (`expected_revision`) compares in
//! the same statement that writes.
//!
//! Schema: `migrations/postgres/*.sql`, embedded at build time and applied on open. sqlx holds a
//! PostgreSQL advisory lock (`pg_advisory_lock`, keyed by the database name) on one connection
//! while it migrates, so hosts starting at once apply each migration exactly once: the others
//! wait for the lock and then find nothing left to do.
//!
//! Change feed: triggers announce every committed change of the `instances` and `roles` tables
//! on the channel `imds_instances` (`pg_notify`, delivered at commit); `watch` listens on a connection of
//! its own, reconnects with backoff when it is lost, and sends `Change::Resync` after each
//! (re)connection because notifications sent while nobody listened are gone.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::sqlite::{new_record, now_in_microseconds};
use crate::{
    redact_uri, Change, ChangeFeed, InstanceRecord, InstanceWrite, RoleRecord, RoleWrite, Store,
    StoreError,
};

/// The schema migrations, embedded so that the binary needs no files beside it.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel the `instances` trigger announces changes on (`0001_instances.sql`).
const CHANNEL: &str = "imds_instances";

/// Connections for queries; the change feed holds one more. A host's reads are rare (start-up,
/// resynchronisation, the control API), and a hundred hosts share the server's
/// `max_connections` (100 by default), so each keeps few.
const POOL_CONNECTIONS: u32 = 4;

/// How long a query waits for a connection, which includes connecting: a database that cannot
/// be reached in this time makes control-API writes fail (503) instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first wait before reconnecting the change feed; doubled after each failure up to
/// `MAX_BACKOFF`, so a database down for long is asked every few seconds, not in a tight loop.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between attempts to reconnect the change feed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The shared store: one PostgreSQL database.
pub struct PostgresStore {
    /// The URI without its password, for `Debug` and error messages.
    redacted_uri: String,
    /// Connections for queries.
    pool: PgPool,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PostgresStore")
            .field("uri", &self.redacted_uri)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database a `postgres://` URI names, and migrates it.
    ///
    /// The URI takes libpq's parameters (`sslmode`, `sslrootcert`, `application_name`, ...); the
    /// password may also come from `PGPASSWORD` or `~/.pgpass`.
    pub async fn open(uri: &str) -> Result<Self, StoreError> {
        let redacted_uri = redact_uri(uri);
        let context = |error: StoreError| match error {
            StoreError::Unavailable(message) => {
                StoreError::Unavailable(format!("connecting to {redacted_uri}: {message}"))
            }
            StoreError::Config(message) => {
                StoreError::Config(format!("connecting to {redacted_uri}: {message}"))
            }
            other => other,
        };
        let options = PgConnectOptions::from_str(uri)
            .map_err(|error| context(StoreError::Config(error.to_string())))?
            .application_name("imds");
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS + 1)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|error| context(store_error(error, "")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|error| context(migrate_error(error)))?;
        Ok(PostgresStore {
            redacted_uri: redacted_uri.clone(),
            pool,
        })
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin()
            .await
            .map_err(|error| store_error(error, ""))
    }

    async fn select_instances(
        &self,
        condition: &str,
        value: Option<&str>,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        // One statement, so one snapshot: no instance is seen with another write's addresses.
        let sql = format!(
            "SELECT i.instance_id, i.host_id, i.spec, i.revision, i.updated_at, a.address \
             FROM instances AS i \
             LEFT JOIN instance_addresses AS a ON a.instance_id = i.instance_id \
             {condition} \
             ORDER BY i.instance_id, a.position"
        );
        let rows = sqlx::query(&sql)
            .bind(value)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| store_error(error, value.unwrap_or_default()))?;
        records_from_rows(&rows)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn list_instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        // `$1 IS NULL` binds the (absent) parameter so one query shape serves every listing.
        self.select_instances("WHERE $1::text IS NULL", None).await
    }

    async fn list_host_instances(&self, host_id: &str) -> Result<Vec<InstanceRecord>, StoreError> {
        self.select_instances("WHERE i.host_id = $1", Some(host_id))
            .await
    }

    async fn get_instance(&self, instance_id: &str) -> Result<InstanceRecord, StoreError> {
        self.select_instances("WHERE i.instance_id = $1", Some(instance_id))
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound(instance_id.to_owned()))
    }

    async fn create_instance(&self, write: InstanceWrite) -> Result<InstanceRecord, StoreError> {
        let record = new_record(write, 1);
        let id = record.instance_id.as_str();
        let mut transaction = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO instances (instance_id, host_id, spec, revision, updated_at) \
             VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (instance_id) DO NOTHING",
        )
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(record.updated_at)
        .execute(&mut *transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "instance {id} is already registered"
            )));
        }
        insert_addresses(&mut transaction, id, &record.addresses).await?;
        commit(transaction, id).await?;
        Ok(record)
    }

    async fn update_instance(
        &self,
        write: InstanceWrite,
        expected_revision: Option<i64>,
    ) -> Result<InstanceRecord, StoreError> {
        let mut record = new_record(write, 0);
        let id = record.instance_id.as_str();
        let mut transaction = self.begin().await?;
        // `$5::bigint`: PostgreSQL cannot infer the type of a parameter only compared with NULL.
        let revision: Option<i64> = sqlx::query_scalar(
            "UPDATE instances \
             SET host_id = $2, spec = $3, revision = revision + 1, updated_at = $4 \
             WHERE instance_id = $1 AND ($5::bigint IS NULL OR revision = $5::bigint) \
             RETURNING revision",
        )
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(record.updated_at)
        .bind(expected_revision)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        let Some(revision) = revision else {
            let stored: Option<i64> =
                sqlx::query_scalar("SELECT revision FROM instances WHERE instance_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(|error| store_error(error, id))?;
            return Err(match (stored, expected_revision) {
                (Some(stored), Some(expected)) => StoreError::Conflict(format!(
                    "instance {id} is at revision {stored}, not the expected {expected}; \
                     read it again and retry"
                )),
                _ => StoreError::NotFound(id.to_owned()),
            });
        };
        replace_addresses(&mut transaction, id, &record.addresses).await?;
        commit(transaction, id).await?;
        record.revision = revision;
        Ok(record)
    }

    async fn upsert_instance(&self, write: InstanceWrite) -> Result<InstanceRecord, StoreError> {
        let mut record = new_record(write, 0);
        let id = record.instance_id.as_str();
        let mut transaction = self.begin().await?;
        // `IS NOT DISTINCT FROM` compares NULL host ids as equal, unlike `=`.
        let revision: Option<i64> = sqlx::query_scalar(
            "INSERT INTO instances AS stored (instance_id, host_id, spec, revision, updated_at) \
             VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (instance_id) DO UPDATE \
             SET spec = excluded.spec, revision = stored.revision + 1, \
                 updated_at = excluded.updated_at \
             WHERE stored.host_id IS NOT DISTINCT FROM excluded.host_id \
             RETURNING revision",
        )
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(record.updated_at)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        let Some(revision) = revision else {
            let stored_host: Option<Option<String>> =
                sqlx::query_scalar("SELECT host_id FROM instances WHERE instance_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(|error| store_error(error, id))?;
            let holder = match stored_host.flatten() {
                Some(host_id) => format!("host {host_id}"),
                None => "no host (host mode)".to_owned(),
            };
            return Err(StoreError::Conflict(format!(
                "instance {id} is served by {holder}; move it with an update, not an upsert"
            )));
        };
        replace_addresses(&mut transaction, id, &record.addresses).await?;
        commit(transaction, id).await?;
        record.revision = revision;
        Ok(record)
    }

    async fn delete_instance(&self, instance_id: &str) -> Result<(), StoreError> {
        // The addresses go with the row (`ON DELETE CASCADE`), in the same statement.
        let deleted = sqlx::query("DELETE FROM instances WHERE instance_id = $1")
            .bind(instance_id)
            .execute(&self.pool)
            .await
            .map_err(|error| store_error(error, instance_id))?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(instance_id.to_owned()));
        }
        Ok(())
    }

    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, spec, revision, updated_at FROM roles ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(|error| store_error(error, ""))?;
        rows.iter().map(role_from_row).collect()
    }

    async fn get_role(&self, name: &str) -> Result<RoleRecord, StoreError> {
        let row = sqlx::query("SELECT name, spec, revision, updated_at FROM roles WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| store_error(error, ""))?;
        match row {
            Some(row) => role_from_row(&row),
            None => Err(StoreError::RoleNotFound(name.to_owned())),
        }
    }

    async fn put_role(&self, write: RoleWrite) -> Result<RoleRecord, StoreError> {
        let updated_at = now_in_microseconds();
        // One statement: atomic without an explicit transaction, and the row lock of the
        // conflicting insert queues concurrent puts of one role.
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO roles AS stored (name, spec, revision, updated_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (name) DO UPDATE \
             SET spec = excluded.spec, revision = stored.revision + 1, \
                 updated_at = excluded.updated_at \
             RETURNING revision",
        )
        .bind(&write.name)
        .bind(&write.spec)
        .bind(updated_at)
        .fetch_one(&self.pool)
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
        let deleted = sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(|error| store_error(error, ""))?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::RoleNotFound(name.to_owned()));
        }
        Ok(())
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| store_error(error, ""))
    }

    async fn create_secret(&self, name: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        // A racing writer's insert makes this one do nothing (it waits for that transaction
        // and then sees its row); the read in the same transaction returns the winner's value.
        let mut transaction = self.begin().await?;
        sqlx::query(
            "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&value)
        .bind(now_in_microseconds())
        .execute(&mut *transaction)
        .await
        .map_err(|error| store_error(error, ""))?;
        let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *transaction)
            .await
            .map_err(|error| store_error(error, ""))?;
        commit(transaction, "").await?;
        Ok(stored)
    }

    fn watch(&self) -> ChangeFeed {
        let (sender, feed) = ChangeFeed::channel();
        tokio::spawn(follow(self.pool.clone(), sender));
        feed
    }
}

/// What the triggers announce (`0001_instances.sql`, `0004_announce_roles.sql`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Announcement {
    Instance {
        instance_id: String,
        #[serde(default)]
        host_id: Option<String>,
    },
    Role {
        role: String,
    },
}

/// Listens for announcements and passes them on, until the feed is dropped.
async fn follow(pool: PgPool, sender: mpsc::Sender<Change>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match listen(&pool).await {
            Ok(mut listener) => {
                if backoff > MIN_BACKOFF {
                    tracing::info!(message = "Change feed reconnected; resynchronising.");
                }
                backoff = MIN_BACKOFF;
                // Whatever was announced while nobody listened is gone: the reader rereads all.
                if sender.send(Change::Resync).await.is_err() {
                    return;
                }
                loop {
                    let received = tokio::select! {
                        () = sender.closed() => return,
                        received = listener.try_recv() => received,
                    };
                    match received {
                        Ok(Some(notification)) => {
                            let change = match serde_json::from_str::<Announcement>(
                                notification.payload(),
                            ) {
                                Ok(Announcement::Instance {
                                    instance_id,
                                    host_id,
                                }) => Change::Instance {
                                    instance_id,
                                    host_id,
                                },
                                Ok(Announcement::Role { role }) => Change::Role { name: role },
                                Err(error) => {
                                    // Not from this schema's trigger: reread everything.
                                    tracing::warn!(
                                        message = "Unreadable change announcement; resynchronising.",
                                        %error,
                                    );
                                    Change::Resync
                                }
                            };
                            if sender.send(change).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(
                                message = "Change feed lost its connection; reconnecting."
                            );
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(
                                message = "Change feed failed; reconnecting.",
                                error = %store_error(error, ""),
                            );
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(
                    message = "Change feed cannot connect; retrying.",
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                );
            }
        }
        tokio::select! {
            () = sender.closed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A fresh listening connection.
async fn listen(pool: &PgPool) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(|error| store_error(error, ""))?;
    // Reconnection is done by `follow`, which must know of it to resynchronise.
    listener.eager_reconnect(false);
    listener
        .listen(CHANNEL)
        .await
        .map_err(|error| store_error(error, ""))?;
    Ok(listener)
}

async fn replace_addresses(
    transaction: &mut Transaction<'static, Postgres>,
    instance_id: &str,
    addresses: &[IpAddr],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM instance_addresses WHERE instance_id = $1")
        .bind(instance_id)
        .execute(&mut **transaction)
        .await
        .map_err(|error| store_error(error, instance_id))?;
    insert_addresses(transaction, instance_id, addresses).await
}

/// Claims each address for the instance; `Conflict` naming the owner if one is taken.
///
/// `ON CONFLICT DO NOTHING` lets the primary key refuse the claim without aborting the
/// transaction, so the owner can be looked up and named in it. A concurrent claim of the same
/// address waits for the other transaction and then sees its outcome.
async fn insert_addresses(
    transaction: &mut Transaction<'static, Postgres>,
    instance_id: &str,
    addresses: &[IpAddr],
) -> Result<(), StoreError> {
    for (position, address) in addresses.iter().enumerate() {
        let address_text = address.to_string();
        let position = i32::try_from(position).map_err(|_| {
            StoreError::Other(format!("instance {instance_id} has too many addresses").into())
        })?;
        let inserted = sqlx::query(
            "INSERT INTO instance_addresses (address, instance_id, position) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (address) DO NOTHING",
        )
        .bind(&address_text)
        .bind(instance_id)
        .bind(position)
        .execute(&mut **transaction)
        .await
        .map_err(|error| store_error(error, instance_id))?;
        if inserted.rows_affected() == 0 {
            let owner: Option<String> =
                sqlx::query_scalar("SELECT instance_id FROM instance_addresses WHERE address = $1")
                    .bind(&address_text)
                    .fetch_optional(&mut **transaction)
                    .await
                    .map_err(|error| store_error(error, instance_id))?;
            let owner = owner.unwrap_or_else(|| "another instance".to_owned());
            return Err(StoreError::Conflict(format!(
                "address {address_text} belongs to instance {owner}, so instance {instance_id} \
                 cannot claim it"
            )));
        }
    }
    Ok(())
}

async fn commit(
    transaction: Transaction<'static, Postgres>,
    instance_id: &str,
) -> Result<(), StoreError> {
    transaction
        .commit()
        .await
        .map_err(|error| store_error(error, instance_id))
}

/// Groups the rows of the instances ⟕ addresses join, ordered by instance, into records.
fn records_from_rows(rows: &[PgRow]) -> Result<Vec<InstanceRecord>, StoreError> {
    let mut records: Vec<InstanceRecord> = Vec::new();
    for row in rows {
        let instance_id: String = row.try_get("instance_id").map_err(corrupt)?;
        let address: Option<String> = row.try_get("address").map_err(corrupt)?;
        let address = address
            .map(|text| {
                text.parse::<IpAddr>().map_err(|error| {
                    corrupt(format!(
                        "instance {instance_id} has address {text:?} that is not one: {error}"
                    ))
                })
            })
            .transpose()?;
        let same_instance = records
            .last()
            .is_some_and(|record| record.instance_id == instance_id);
        if !same_instance {
            let updated_at: OffsetDateTime = row.try_get("updated_at").map_err(corrupt)?;
            records.push(InstanceRecord {
                host_id: row.try_get("host_id").map_err(corrupt)?,
                spec: row.try_get("spec").map_err(corrupt)?,
                revision: row.try_get("revision").map_err(corrupt)?,
                updated_at,
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
    Ok(records)
}

fn role_from_row(row: &PgRow) -> Result<RoleRecord, StoreError> {
    Ok(RoleRecord {
        name: row.try_get("name").map_err(corrupt)?,
        spec: row.try_get("spec").map_err(corrupt)?,
        revision: row.try_get("revision").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
    })
}

/// A stored value this build cannot read: the database was changed by hand.
fn corrupt(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    let error = error.into();
    StoreError::Other(format!("the database holds a value this build cannot read: {error}").into())
}

/// SQLSTATE classes and codes that mean the server cannot be used right now, from
/// <https://www.postgresql.org/docs/current/errcodes-appendix.html>: connection exceptions
/// (`08`), insufficient resources (`53`), operator intervention such as a shutdown (`57`), and
/// system errors (`58`).
fn is_unavailable(code: &str) -> bool {
    ["08", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// Maps a sqlx error to the variant callers branch on; `instance_id` names the instance if any.
fn store_error(error: sqlx::Error, instance_id: &str) -> StoreError {
    match error {
        sqlx::Error::RowNotFound => StoreError::NotFound(instance_id.to_owned()),
        sqlx::Error::Configuration(error) => StoreError::Config(error.to_string()),
        sqlx::Error::Database(database_error) => {
            let code = database_error.code().map(|code| code.into_owned());
            let code = code.as_deref().unwrap_or_default();
            let message = database_error.message().to_owned();
            if database_error.is_unique_violation() {
                // The writes name the taken id or address themselves; this is the fallback.
                return StoreError::Conflict(if instance_id.is_empty() {
                    message
                } else {
                    format!("instance {instance_id}: {message}")
                });
            }
            match code {
                // serialization_failure, deadlock_detected: another writer won; nothing was
                // written, and the same write may succeed now.
                "40001" | "40P01" => StoreError::Conflict(format!(
                    "instance {instance_id} was written concurrently by another host; retry"
                )),
                // invalid_catalog_name, invalid authorization, insufficient_privilege: retrying
                // will not help until the operator fixes the URI or the grants.
                "3D000" | "28000" | "28P01" | "42501" => StoreError::Config(message),
                code if is_unavailable(code) => StoreError::Unavailable(message),
                _ => StoreError::Other(Box::new(sqlx::Error::Database(database_error))),
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
            "the database has migration {version}, which this build does not know: \
             a newer imds migrated it; run that release or a later one"
        )),
        MigrateError::VersionMismatch(version) => StoreError::Config(format!(
            "migration {version} in the database differs from this build's: \
             it was migrated by a build with an edited migration"
        )),
        other => StoreError::Other(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_unavailable(code: &str, expect: bool) {
        assert_eq!(is_unavailable(code), expect, "{code}");
    }

    #[test]
    fn unavailable_codes() {
        check_unavailable("08006", true);
        check_unavailable("57P01", true);
        check_unavailable("53300", true);
        check_unavailable("23505", false);
        check_unavailable("42P01", false);
        check_unavailable("", false);
    }
}
