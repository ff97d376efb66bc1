//! Durable storage of registered instances, ECS tasks, roles' credential providers, and the
//! secrets that servers sharing a store must agree on.
//!
//! `Store` is what the server needs from a database, in domain terms only: no SQL types appear in
//! its signatures, so the embedded SQLite backend and a PostgreSQL backend implement the same
//! trait and the server does not know which one it talks to. The backend is chosen from the URI
//! scheme (`sqlite:` or `postgres://`).
//!
//! A write that returns `Ok` is durable: it survives the process being killed at any moment.
//! A write that returns `Err` changed nothing: each write is one transaction.
//!
//! Addresses are stored in canonical form: an IPv4-mapped IPv6 address (`::ffff:127.0.0.2`) is
//! the IPv4 address it maps (`127.0.0.2`), so the two spellings cannot belong to two instances.
//! A record's addresses keep the order they were written in, without repeats.
//!
//! Tasks are kept as instances are (a description as JSON text, a host, source addresses that
//! are unique among tasks, a revision), in tables of their own: an address may be an instance's
//! and a task's at once, as they are served on different listeners.
//!
//! EKS Pod Identity associations are kept as roles are, shared by every host: one row per
//! association, at most one per service account.
//!
//! # Layout
//! - `sqlite`: the embedded backend (SQLite through sqlx, WAL mode).
//! - `postgres`: the shared backend of fleet mode (PostgreSQL through sqlx), with a change feed
//!   over `LISTEN`/`NOTIFY`.
//! - `migrations/sqlite/`, `migrations/postgres/`: their schemas, one versioned file per change,
//!   applied on open.
//! - `feed`: `ChangeFeed`, what `Store::watch` returns.
//! - `tests/it/`: the conformance story every backend passes unchanged.
#![forbid(unsafe_code)]

mod feed;
mod postgres;
mod sqlite;
#[cfg(feature = "test-server")]
pub mod test_server;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use time::OffsetDateTime;

pub use crate::feed::{Change, ChangeFeed, FeedHealth, FeedStatus};
pub use crate::postgres::PostgresStore;
pub use crate::sqlite::SqliteStore;

/// Opens the store that `uri` names with the default `StoreSettings`, applying its schema
/// migrations first; see `open_with`.
pub async fn open(uri: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(uri, StoreSettings::default()).await
}

/// Opens the store that `uri` names, applying its schema migrations first.
///
/// The scheme picks the backend: `sqlite:PATH` (or `sqlite://PATH`) is the embedded store, created
/// if missing; `postgres://` (or `postgresql://`) is the shared store of fleet mode, whose
/// database must exist. Any other scheme is a `Config` error.
///
/// In a `sqlite:` URI, `?` starts SQLite's query parameters and `%` escapes a byte, so a file
/// path that may contain them is better opened with `SqliteStore::open_path`.
///
/// `settings` bound the waits of the shared store (PostgreSQL); the embedded one, a local file,
/// has none to bound and ignores them.
pub async fn open_with(uri: &str, settings: StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    if uri.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::open(uri).await?));
    }
    if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open_with(uri, settings).await?));
    }
    // The URI may carry a password, so the error names only its scheme.
    let scheme = match uri.split_once(':') {
        Some((scheme, _)) => format!("scheme {scheme:?}"),
        None => "no scheme".to_owned(),
    };
    Err(StoreError::Config(format!(
        "the store URI has {scheme}; use sqlite:PATH or postgres://USER@HOST/DATABASE"
    )))
}

/// How long the shared store waits on its database before it gives up: every wait on the network
/// has one of these bounds, so that a database that is down, or cut off without a reset, makes
/// operations fail within seconds instead of hanging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// The longest one store operation takes, waiting for a free connection and connecting
    /// included; past it the operation fails as `Unavailable` and changes nothing.
    /// PostgreSQL is asked to give up at the same time (`statement_timeout`, `lock_timeout`,
    /// `idle_in_transaction_session_timeout`), so a statement left behind by a host that lost
    /// its connection holds no lock for longer. Opening the store and each attempt of the
    /// change feed to connect are bounded by it too.
    pub operation_timeout: Duration,
    /// How long the change feed may go without hearing from the database before it asks
    /// whether its connection still works (a heartbeat query); the feed's reconnection attempts
    /// are never further apart than this either.
    pub heartbeat_interval: Duration,
    /// How long a connection has to answer a heartbeat, or the check of an idle pooled
    /// connection before it is used, before it is taken for dead and replaced.
    pub heartbeat_timeout: Duration,
}

impl Default for StoreSettings {
    /// 5 s per operation (what the fleet documentation promises a write that cannot reach the
    /// database), a heartbeat after 2 s of silence, answered within 3 s: a dead feed connection
    /// is noticed within 5 s.
    fn default() -> Self {
        StoreSettings {
            operation_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(3),
        }
    }
}

impl StoreSettings {
    /// A `Config` error naming the first bound that is zero (a zero bound would fail every
    /// operation).
    pub fn check(&self) -> Result<(), StoreError> {
        for (name, bound) in [
            ("operation timeout", self.operation_timeout),
            ("heartbeat interval", self.heartbeat_interval),
            ("heartbeat timeout", self.heartbeat_timeout),
        ] {
            if bound.is_zero() {
                return Err(StoreError::Config(format!(
                    "the store's {name} must be longer than zero"
                )));
            }
        }
        Ok(())
    }
}

/// The URI without its password, for logs and error messages.
pub fn redact_uri(uri: &str) -> String {
    // `scheme://user:password@host/...`: everything between the first `:` after `//` and the
    // last `@` before the path is the password.
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:<redacted>@{host}{path}"),
            None => uri.to_owned(),
        },
        None => uri.to_owned(),
    }
}

/// One registered instance as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// The instance id, unique in the store.
    pub instance_id: String,
    /// The host that serves the instance (fleet mode); `None` in host mode.
    pub host_id: Option<String>,
    /// The source addresses the instance calls from; each belongs to at most one instance.
    pub addresses: Vec<IpAddr>,
    /// The instance description as JSON text, in the config file's keys; the store does not
    /// interpret it.
    pub spec: String,
    /// Bumped by every write; lets writers detect that someone else wrote in between.
    pub revision: i64,
    /// When the record was last written.
    pub updated_at: OffsetDateTime,
}

/// What is written: everything but the revision and timestamp, which the store assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceWrite {
    /// The instance id.
    pub instance_id: String,
    /// The serving host, if any.
    pub host_id: Option<String>,
    /// Source addresses.
    pub addresses: Vec<IpAddr>,
    /// The description as JSON text.
    pub spec: String,
}

/// One ECS task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task id (32 hex digits), unique in the store.
    pub task_id: String,
    /// The host that serves the task (fleet mode); `None` in host mode.
    pub host_id: Option<String>,
    /// The source addresses of the task's containers; each belongs to at most one task.
    pub addresses: Vec<IpAddr>,
    /// The task description and its generated values as JSON text; the store does not
    /// interpret it.
    pub spec: String,
    /// Bumped by every write.
    pub revision: i64,
    /// When the record was last written.
    pub updated_at: OffsetDateTime,
}

/// What is written of a task: everything but the revision and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWrite {
    /// The task id.
    pub task_id: String,
    /// The serving host, if any.
    pub host_id: Option<String>,
    /// Source addresses.
    pub addresses: Vec<IpAddr>,
    /// The description as JSON text.
    pub spec: String,
}

/// Which table of records an operation is on: instances and tasks are kept alike (a row with a
/// description, a host and a revision, and a table of the addresses each claims), so the
/// backends write both with the same statements.
#[derive(Debug)]
pub(crate) struct Kind {
    /// The records' table.
    pub(crate) table: &'static str,
    /// Its id column.
    pub(crate) id_column: &'static str,
    /// The table of the addresses its records claim.
    pub(crate) addresses: &'static str,
    /// What a record is, in messages.
    pub(crate) noun: &'static str,
    /// The error of a missing record.
    pub(crate) not_found: fn(String) -> StoreError,
}

/// Instances: `instances` and `instance_addresses`.
pub(crate) const INSTANCES: Kind = Kind {
    table: "instances",
    id_column: "instance_id",
    addresses: "instance_addresses",
    noun: "instance",
    not_found: StoreError::NotFound,
};

/// Tasks: `tasks` and `task_addresses`.
pub(crate) const TASKS: Kind = Kind {
    table: "tasks",
    id_column: "task_id",
    addresses: "task_addresses",
    noun: "task",
    not_found: StoreError::TaskNotFound,
};

/// A task's write as the backends' shared statements take it (the fields are the same).
pub(crate) fn as_record_write(write: TaskWrite) -> InstanceWrite {
    InstanceWrite {
        instance_id: write.task_id,
        host_id: write.host_id,
        addresses: write.addresses,
        spec: write.spec,
    }
}

/// A task's record as the backends' shared statements read it.
pub(crate) fn task_record(record: InstanceRecord) -> TaskRecord {
    TaskRecord {
        task_id: record.instance_id,
        host_id: record.host_id,
        addresses: record.addresses,
        spec: record.spec,
        revision: record.revision,
        updated_at: record.updated_at,
    }
}

/// One EKS Pod Identity association as stored: the role the pods of one service account get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationRecord {
    /// The association id, unique in the store.
    pub association_id: String,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The service account; (namespace, service account) is unique in the store.
    pub service_account: String,
    /// The association's role and origin as JSON text; the store does not interpret it.
    pub spec: String,
    /// Bumped by every write.
    pub revision: i64,
    /// When the record was last written.
    pub updated_at: OffsetDateTime,
}

/// What is written of an association: everything but the revision and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationWrite {
    /// The association id.
    pub association_id: String,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The role and origin as JSON text.
    pub spec: String,
}

impl AssociationWrite {
    /// The record this write makes at `revision`, written at `updated_at`.
    pub(crate) fn into_record(
        self,
        revision: i64,
        updated_at: OffsetDateTime,
    ) -> AssociationRecord {
        AssociationRecord {
            association_id: self.association_id,
            namespace: self.namespace,
            service_account: self.service_account,
            spec: self.spec,
            revision,
            updated_at,
        }
    }
}

/// The `Conflict` of an association write that breaks a uniqueness rule, from the database's
/// `message`: its service account has another association, or its id is taken.
pub(crate) fn association_conflict(write: &AssociationWrite, message: &str) -> StoreError {
    StoreError::Conflict(if message.contains("namespace") {
        format!(
            "the service account {}/{} has a pod identity association already",
            write.namespace, write.service_account
        )
    } else {
        format!("the association id {} is taken", write.association_id)
    })
}

/// One role's credential provider as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleRecord {
    /// The role name, unique in the store.
    pub name: String,
    /// The role's description as JSON text (the config file's `[[roles]]` keys); the store does
    /// not interpret it. It may hold a `static` role's secret key, so `Debug` leaves it out.
    pub spec: String,
    /// Bumped by every write.
    pub revision: i64,
    /// When the record was last written.
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for RoleRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleRecord")
            .field("name", &self.name)
            .field("revision", &self.revision)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// What is written of a role: its name and description.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleWrite {
    /// The role name.
    pub name: String,
    /// The description as JSON text.
    pub spec: String,
}

impl std::fmt::Debug for RoleWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleWrite")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// No such instance.
    #[error("instance {0} is not registered")]
    NotFound(String),
    /// No such role.
    #[error("role {0} has no provider of its own")]
    RoleNotFound(String),
    /// No such task.
    #[error("task {0} is not registered")]
    TaskNotFound(String),
    /// No such Pod Identity association.
    #[error("pod identity association {0} does not exist")]
    AssociationNotFound(String),
    /// The write would break a uniqueness rule (id or address already taken) or its expected
    /// revision is stale.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store is unreachable or failed; the write did not happen.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store URI or the store file cannot be used as given: an unknown scheme, a backend this
    /// build lacks, or a store file written by a newer release; retrying will not help.
    #[error("store configuration: {0}")]
    Config(String),
    /// Anything else.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Durable storage of registered instances.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Every instance, ordered by instance id.
    async fn list_instances(&self) -> Result<Vec<InstanceRecord>, StoreError>;

    /// The instances assigned to `host_id` (fleet mode), ordered by instance id.
    async fn list_host_instances(&self, host_id: &str) -> Result<Vec<InstanceRecord>, StoreError>;

    /// One instance, or `NotFound`.
    async fn get_instance(&self, instance_id: &str) -> Result<InstanceRecord, StoreError>;

    /// Registers a new instance (revision 1). `Conflict` if the id or one of the addresses is
    /// taken.
    async fn create_instance(&self, write: InstanceWrite) -> Result<InstanceRecord, StoreError>;

    /// Replaces an instance. With `expected_revision`, fails with `Conflict` unless the stored
    /// revision is that one. `NotFound` if absent; `Conflict` if an address is another's.
    async fn update_instance(
        &self,
        write: InstanceWrite,
        expected_revision: Option<i64>,
    ) -> Result<InstanceRecord, StoreError>;

    /// Creates or replaces an instance (used for instances defined in the config file).
    ///
    /// It replaces only an instance of the same `host_id`: `Conflict` if the stored instance is
    /// served by another host, so two hosts whose config files define one instance do not take it
    /// from each other at every start. `update_instance` is how an instance moves between hosts.
    async fn upsert_instance(&self, write: InstanceWrite) -> Result<InstanceRecord, StoreError>;

    /// Removes an instance; `NotFound` if absent.
    async fn delete_instance(&self, instance_id: &str) -> Result<(), StoreError>;

    /// Every task, ordered by task id.
    async fn list_tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;

    /// The tasks assigned to `host_id` (fleet mode), ordered by task id.
    async fn list_host_tasks(&self, host_id: &str) -> Result<Vec<TaskRecord>, StoreError>;

    /// One task, or `TaskNotFound`.
    async fn get_task(&self, task_id: &str) -> Result<TaskRecord, StoreError>;

    /// Registers a new task (revision 1). `Conflict` if the id or one of the addresses is taken
    /// by another task.
    async fn create_task(&self, write: TaskWrite) -> Result<TaskRecord, StoreError>;

    /// Replaces a task. With `expected_revision`, fails with `Conflict` unless the stored
    /// revision is that one. `TaskNotFound` if absent; `Conflict` if an address is another's.
    async fn update_task(
        &self,
        write: TaskWrite,
        expected_revision: Option<i64>,
    ) -> Result<TaskRecord, StoreError>;

    /// Creates or replaces a task of the config file; only one of the same `host_id`, as
    /// `upsert_instance`.
    async fn upsert_task(&self, write: TaskWrite) -> Result<TaskRecord, StoreError>;

    /// Removes a task; `TaskNotFound` if absent.
    async fn delete_task(&self, task_id: &str) -> Result<(), StoreError>;

    /// Every Pod Identity association, ordered by namespace and service account.
    async fn list_associations(&self) -> Result<Vec<AssociationRecord>, StoreError>;

    /// Creates an association (revision 1). `Conflict` if its id is taken or its service
    /// account has an association already.
    async fn create_association(
        &self,
        write: AssociationWrite,
    ) -> Result<AssociationRecord, StoreError>;

    /// Creates an association or replaces the one with its id (next revision). `Conflict` if
    /// its service account has another association.
    async fn put_association(
        &self,
        write: AssociationWrite,
    ) -> Result<AssociationRecord, StoreError>;

    /// Removes an association; `AssociationNotFound` if absent.
    async fn delete_association(&self, association_id: &str) -> Result<(), StoreError>;

    /// Every role with a provider of its own, ordered by name.
    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError>;

    /// One role, or `RoleNotFound`.
    async fn get_role(&self, name: &str) -> Result<RoleRecord, StoreError>;

    /// Creates a role (revision 1) or replaces it (next revision).
    async fn put_role(&self, write: RoleWrite) -> Result<RoleRecord, StoreError>;

    /// Removes a role; `RoleNotFound` if absent.
    async fn delete_role(&self, name: &str) -> Result<(), StoreError>;

    /// The shared secret `name` (opaque bytes, sealed by the caller), or `None`.
    async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` as the secret `name` unless one is stored already, and returns the stored
    /// value: the first writer wins, so servers starting at once agree on one value.
    async fn create_secret(&self, name: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError>;

    /// Follows the changes other writers make to instances, tasks, associations and roles, for
    /// as long as the feed is held.
    ///
    /// The feed starts with `Change::Resync` and sends it again after every reconnection to the
    /// database, so that a reader who reloads on `Resync` and rereads each changed instance
    /// misses no change, whatever was lost while the connection was down. A store only one
    /// process writes (SQLite) sends `Resync` once and nothing more: that process made every
    /// change itself, and its feed's health is always connected.
    fn watch(&self) -> ChangeFeed;

    /// The health of the feed `watch` returned last (the one a server follows), for whoever
    /// reports on the store without holding the feed (metrics); `None` before any `watch`.
    fn feed_health(&self) -> Option<FeedHealth> {
        None
    }
}
