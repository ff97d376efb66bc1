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
//! Change feed: triggers announce every committed change of the `instances`, `tasks` and
//! `roles` tables on the channel `imds_instances` (`pg_notify`, delivered at commit); `watch` listens on a
//! connection of its own, reconnects with backoff when it is lost, and sends `Change::Resync`
//! after each (re)connection because notifications sent while nobody listened are gone.
//!
//! Failures of the network: a connection whose packets are silently dropped (a partition, no
//! reset) looks from the socket like a slow database, and TCP alone takes many minutes to give
//! up on it. sqlx 0.8 opens its sockets itself and sets no keepalive or `TCP_USER_TIMEOUT` on
//! them, with no way to ask it to, so every wait is bounded here instead (`StoreSettings`):
//! each operation as a whole, waiting for a pooled connection and connecting included; each
//! check of an idle pooled connection before use and after release; each connection attempt of
//! the feed; and the feed's silence, broken by a heartbeat query on its own connection. An
//! operation that runs out of time closes its connection instead of returning it to the pool,
//! since the connection may be dead or mid-statement. PostgreSQL's side of each session is told
//! to give up too (`SET` after connecting): statements and lock waits end with the operation's
//! bound, a transaction left open by a vanished host ends as soon, and its TCP keepalive and user
//! timeout make it drop a silent host's sessions within about twice the time the host itself
//! takes to declare a connection dead.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgListener, PgNotification, PgPool, PgPoolOptions, PgRow,
};
use sqlx::{Connection, Executor, Postgres, Row};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

use crate::feed::FeedHealth;
use crate::{
    as_record_write, redact_uri, task_record, AssociationRecord, AssociationWrite, Change,
    ChangeFeed, InstanceRecord, InstanceWrite, Kind, RoleRecord, RoleWrite, Store, StoreError,
    StoreSettings, TaskRecord, TaskWrite, INSTANCES, TASKS,
};

/// The schema migrations, embedded so that the binary needs no files beside it.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel the `instances` trigger announces changes on (`0001_instances.sql`).
const CHANNEL: &str = "imds_instances";

/// Connections for queries; the change feed holds one more, in a pool of its own. A host's
/// reads are rare (start-up, resynchronisation, the control API), and a hundred hosts share the
/// server's `max_connections` (100 by default), so each keeps few.
const POOL_CONNECTIONS: u32 = 4;

/// How long migrating at start-up may take. It is not `operation_timeout`: a host may wait here
/// for another host's migration (the advisory lock), and a migration of a large table takes
/// longer than any query; a host that cannot migrate in this time exits, saying so.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an operation waits for a pooled connection before trying to connect on its own to
/// learn whether the server refuses connections. sqlx's pool retries a refused connection until
/// its acquire timeout; the probe makes that refusal the operation's answer at once. An idle
/// connection is handed out, and a new one made on a local network, well within this, so the
/// probe runs only when something is slow or wrong.
const REFUSAL_PROBE_DELAY: Duration = Duration::from_millis(100);

/// How long one probe's outcome stands for every operation that waits meanwhile, so that however
/// many wait (a saturated pool), the server sees at most about one probe a second.
const REFUSAL_PROBE_REUSE: Duration = Duration::from_secs(1);

/// The first wait before reconnecting the change feed; doubled after each failure up to the
/// heartbeat interval, so a database down for long is asked every few seconds, not in a tight
/// loop.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The query that tells a live connection from a dead one: the cheapest round trip.
const HEARTBEAT: &str = "SELECT 1";

/// Runs `$operation`, an expression that uses `$connection: &mut PgConnection`, on a pooled
/// connection within the operation timeout; evaluates to its result.
macro_rules! bounded {
    ($store:expr, |$connection:ident| $operation:expr) => {{
        let mut session = $store.session().await?;
        let deadline = session.deadline;
        let $connection: &mut PgConnection = &mut session.connection;
        let outcome = timeout_at(deadline, $operation).await;
        session.finish(outcome)
    }};
}

/// The shared store: one PostgreSQL database.
pub struct PostgresStore {
    /// The URI without its password, for `Debug` and error messages.
    redacted_uri: String,
    /// How to connect (it may hold the password, so `Debug` leaves it out): for the change
    /// feed's connections and the refusal probe.
    options: PgConnectOptions,
    /// The bounds of every wait.
    settings: StoreSettings,
    /// Connections for queries.
    pool: PgPool,
    /// Tells operations waiting for `pool` when the server refuses connections.
    probe: RefusalProbe,
    /// The health of the last feed `watch` made, for `feed_health`.
    feed: std::sync::Mutex<Option<FeedHealth>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PostgresStore")
            .field("uri", &self.redacted_uri)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One operation's pooled connection, and the time the operation must be done by.
struct Session {
    connection: PoolConnection<Postgres>,
    deadline: Instant,
    /// The operation timeout, for the error that says it ran out.
    bound: Duration,
}

impl Session {
    /// The operation's result; if it ran out of time, its connection is closed rather than
    /// returned to the pool: it may be dead, or in the middle of a statement.
    fn finish<T>(
        mut self,
        outcome: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok(result) => result,
            Err(_) => {
                self.connection.close_on_drop();
                Err(no_answer(self.bound))
            }
        }
    }
}

impl PostgresStore {
    /// Connects to the database a `postgres://` URI names, and migrates it, with the default
    /// `StoreSettings`.
    pub async fn open(uri: &str) -> Result<Self, StoreError> {
        Self::open_with(uri, StoreSettings::default()).await
    }

    /// Connects to the database a `postgres://` URI names, and migrates it.
    ///
    /// The URI takes libpq's parameters (`sslmode`, `sslrootcert`, `application_name`, ...); the
    /// password may also come from `PGPASSWORD` or `~/.pgpass`. Connecting is bounded by
    /// `settings.operation_timeout`, migrating by a minute.
    pub async fn open_with(uri: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        settings.check()?;
        let settings = &settings;
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
        // Migrations run on a connection of their own, without the sessions' timeouts: they may
        // wait for another host's migration lock.
        let migration_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(MIGRATION_TIMEOUT)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options.clone());
        // Connecting first, with the operation's bound, fails at once when the server refuses.
        let probe = RefusalProbe::new(&options, settings);
        let connection = timeout(settings.operation_timeout, acquire(&migration_pool, &probe))
            .await
            .map_err(|_| context(no_answer(settings.operation_timeout)))?
            .map_err(context)?;
        drop(connection);
        let migrated = timeout(MIGRATION_TIMEOUT, MIGRATOR.run(&migration_pool))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "migrating the database did not finish within {MIGRATION_TIMEOUT:?}"
                ))
            })
            .and_then(|migrated| migrated.map_err(migrate_error));
        let _ = timeout(settings.heartbeat_timeout, migration_pool.close()).await;
        migrated.map_err(context)?;
        let pool = pool_options(settings)
            .max_connections(POOL_CONNECTIONS)
            .connect_lazy_with(options.clone());
        Ok(PostgresStore {
            redacted_uri: redacted_uri.clone(),
            options,
            probe,
            feed: std::sync::Mutex::new(None),
            settings: *settings,
            pool,
        })
    }

    /// A pooled connection for one operation, within the operation timeout.
    #[allow(
        clippy::disallowed_methods,
        reason = "bounds and health of the connection to PostgreSQL are measured on the monotonic clock"
    )]
    async fn session(&self) -> Result<Session, StoreError> {
        let bound = self.settings.operation_timeout;
        let deadline = Instant::now() + bound;
        let connection = timeout_at(deadline, acquire(&self.pool, &self.probe))
            .await
            .map_err(|_| no_answer(bound))??;
        Ok(Session {
            connection,
            deadline,
            bound,
        })
    }
}

/// A connection of `pool`, or the server's refusal at once: sqlx's pool would retry a refused
/// connection until its own timeout.
async fn acquire(
    pool: &PgPool,
    probe: &RefusalProbe,
) -> Result<PoolConnection<Postgres>, StoreError> {
    tokio::select! {
        acquired = pool.acquire() => acquired.map_err(|error| store_error(error, "")),
        refusal = probe.refusal() => Err(refusal),
    }
}

/// Finds out whether the server refuses connections, for operations that wait for the pool.
struct RefusalProbe {
    /// How to connect.
    options: PgConnectOptions,
    /// How long closing a probe's connection may take.
    close_bound: Duration,
    /// When the last probe ran, and the server's refusal if it refused (one at a time: the lock
    /// is held while probing).
    last: tokio::sync::Mutex<Option<(Instant, Option<String>)>>,
}

impl RefusalProbe {
    fn new(options: &PgConnectOptions, settings: &StoreSettings) -> Self {
        RefusalProbe {
            options: options.clone(),
            close_bound: settings.heartbeat_timeout,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// After `REFUSAL_PROBE_DELAY`, the error of a connection attempt of its own (or of another
    /// waiter's, made less than `REFUSAL_PROBE_REUSE` ago); never returns if the server answers.
    #[allow(
        clippy::disallowed_methods,
        reason = "bounds and health of the connection to PostgreSQL are measured on the monotonic clock"
    )]
    async fn refusal(&self) -> StoreError {
        tokio::time::sleep(REFUSAL_PROBE_DELAY).await;
        let mut last = self.last.lock().await;
        let outcome = match &*last {
            Some((probed_at, outcome)) if probed_at.elapsed() < REFUSAL_PROBE_REUSE => {
                outcome.clone()
            }
            _ => {
                let outcome = match PgConnection::connect_with(&self.options).await {
                    Ok(connection) => {
                        let _ = timeout(self.close_bound, connection.close()).await;
                        None
                    }
                    Err(error) => Some(store_error(error, "").to_string()),
                };
                *last = Some((Instant::now(), outcome.clone()));
                outcome
            }
        };
        drop(last);
        match outcome {
            Some(refusal) => StoreError::Unavailable(refusal),
            // The server answers: the pool's own attempt will get there.
            None => std::future::pending().await,
        }
    }
}

/// The pool settings both pools share: bounded checks of idle connections before use and after
/// release (sqlx's own are unbounded), and the session settings on every new connection.
fn pool_options(settings: &StoreSettings) -> PgPoolOptions {
    let check = settings.heartbeat_timeout;
    let session_settings: std::sync::Arc<str> = session_settings(settings).into();
    PgPoolOptions::new()
        .min_connections(0)
        // A backstop only: every acquisition is in an operation, which gives up first.
        .acquire_timeout(settings.operation_timeout * 2)
        .test_before_acquire(false)
        .before_acquire(move |connection, _| Box::pin(answers_within(connection, check)))
        .after_release(move |connection, _| Box::pin(answers_within(connection, check)))
        .after_connect(move |connection, _| {
            let session_settings = session_settings.clone();
            Box::pin(async move {
                connection.execute(&*session_settings).await?;
                Ok(())
            })
        })
}

/// Whether `connection` answers a round trip within `bound`; one that does not is closed by the
/// pool, which connects anew.
async fn answers_within(
    connection: &mut PgConnection,
    bound: Duration,
) -> Result<bool, sqlx::Error> {
    Ok(matches!(
        timeout(bound, connection.ping()).await,
        Ok(Ok(()))
    ))
}

/// What each session asks of PostgreSQL's side, from `StoreSettings` (the settings are
/// described in <https://www.postgresql.org/docs/current/runtime-config-client.html> and
/// <https://www.postgresql.org/docs/current/runtime-config-connection.html>).
///
/// Statements, lock waits and open transactions end with the operation's bound. The host takes a
/// connection for dead after `heartbeat_interval + heartbeat_timeout` of silence; PostgreSQL
/// starts probing after as long and gives up after about twice that, whether the session is idle
/// (keepalive probes, one a second) or has unacknowledged data to send (`tcp_user_timeout`), so
/// the sessions of a host cut off from it do not linger (and do not hold its connection slots).
/// PostgreSQL ignores the TCP settings on a Unix socket.
fn session_settings(settings: &StoreSettings) -> String {
    let operation_ms = whole_milliseconds(settings.operation_timeout);
    let dead_after = settings.heartbeat_interval + settings.heartbeat_timeout;
    let dead_after_seconds = dead_after
        .as_millis()
        .div_ceil(1000)
        .clamp(1, i32::MAX as u128);
    let user_timeout_ms = whole_milliseconds(dead_after * 2);
    format!(
        "SET statement_timeout = {operation_ms}; \
         SET lock_timeout = {operation_ms}; \
         SET idle_in_transaction_session_timeout = {operation_ms}; \
         SET tcp_keepalives_idle = {dead_after_seconds}; \
         SET tcp_keepalives_interval = 1; \
         SET tcp_keepalives_count = {dead_after_seconds}; \
         SET tcp_user_timeout = {user_timeout_ms}"
    )
}

/// `duration` in milliseconds, at least one (zero turns PostgreSQL's timeouts off), at most
/// what PostgreSQL's settings hold (`i32::MAX`).
fn whole_milliseconds(duration: Duration) -> u128 {
    duration.as_millis().clamp(1, i32::MAX as u128)
}

/// The error of a wait that ran out.
fn no_answer(bound: Duration) -> StoreError {
    StoreError::Unavailable(format!("the database did not answer within {bound:?}"))
}

#[async_trait]
impl Store for PostgresStore {
    async fn list_instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        // `$1 IS NULL` binds the (absent) parameter so one query shape serves every listing.
        bounded!(self, |connection| queries::select(
            connection,
            &INSTANCES,
            "WHERE $1::text IS NULL",
            None
        ))
    }

    async fn list_host_instances(&self, host_id: &str) -> Result<Vec<InstanceRecord>, StoreError> {
        bounded!(self, |connection| queries::select(
            connection,
            &INSTANCES,
            "WHERE i.host_id = $1",
            Some(host_id)
        ))
    }

    async fn get_instance(&self, instance_id: &str) -> Result<InstanceRecord, StoreError> {
        bounded!(self, |connection| queries::get(
            connection,
            &INSTANCES,
            instance_id
        ))
    }

    async fn create_instance(&self, write: InstanceWrite) -> Result<InstanceRecord, StoreError> {
        bounded!(self, |connection| queries::create(
            connection, &INSTANCES, write
        ))
    }

    async fn update_instance(
        &self,
        write: InstanceWrite,
        expected_revision: Option<i64>,
    ) -> Result<InstanceRecord, StoreError> {
        bounded!(self, |connection| queries::update(
            connection,
            &INSTANCES,
            write,
            expected_revision
        ))
    }

    async fn upsert_instance(&self, write: InstanceWrite) -> Result<InstanceRecord, StoreError> {
        bounded!(self, |connection| queries::upsert(
            connection, &INSTANCES, write
        ))
    }

    async fn delete_instance(&self, instance_id: &str) -> Result<(), StoreError> {
        bounded!(self, |connection| queries::delete(
            connection,
            &INSTANCES,
            instance_id
        ))
    }

    async fn list_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let records = bounded!(self, |connection| queries::select(
            connection,
            &TASKS,
            "WHERE $1::text IS NULL",
            None
        ))?;
        Ok(records.into_iter().map(task_record).collect())
    }

    async fn list_host_tasks(&self, host_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let records = bounded!(self, |connection| queries::select(
            connection,
            &TASKS,
            "WHERE i.host_id = $1",
            Some(host_id)
        ))?;
        Ok(records.into_iter().map(task_record).collect())
    }

    async fn get_task(&self, task_id: &str) -> Result<TaskRecord, StoreError> {
        bounded!(self, |connection| queries::get(connection, &TASKS, task_id)).map(task_record)
    }

    async fn create_task(&self, write: TaskWrite) -> Result<TaskRecord, StoreError> {
        let write = as_record_write(write);
        bounded!(self, |connection| queries::create(
            connection, &TASKS, write
        ))
        .map(task_record)
    }

    async fn update_task(
        &self,
        write: TaskWrite,
        expected_revision: Option<i64>,
    ) -> Result<TaskRecord, StoreError> {
        let write = as_record_write(write);
        bounded!(self, |connection| queries::update(
            connection,
            &TASKS,
            write,
            expected_revision
        ))
        .map(task_record)
    }

    async fn upsert_task(&self, write: TaskWrite) -> Result<TaskRecord, StoreError> {
        let write = as_record_write(write);
        bounded!(self, |connection| queries::upsert(
            connection, &TASKS, write
        ))
        .map(task_record)
    }

    async fn delete_task(&self, task_id: &str) -> Result<(), StoreError> {
        bounded!(self, |connection| queries::delete(
            connection, &TASKS, task_id
        ))
    }

    async fn list_associations(&self) -> Result<Vec<AssociationRecord>, StoreError> {
        bounded!(self, |connection| queries::list_associations(connection))
    }

    async fn create_association(
        &self,
        write: AssociationWrite,
    ) -> Result<AssociationRecord, StoreError> {
        bounded!(self, |connection| queries::write_association(
            connection, write, false
        ))
    }

    async fn put_association(
        &self,
        write: AssociationWrite,
    ) -> Result<AssociationRecord, StoreError> {
        bounded!(self, |connection| queries::write_association(
            connection, write, true
        ))
    }

    async fn delete_association(&self, association_id: &str) -> Result<(), StoreError> {
        bounded!(self, |connection| queries::delete_association(
            connection,
            association_id
        ))
    }

    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        bounded!(self, |connection| queries::list_roles(connection))
    }

    async fn get_role(&self, name: &str) -> Result<RoleRecord, StoreError> {
        bounded!(self, |connection| queries::get_role(connection, name))
    }

    async fn put_role(&self, write: RoleWrite) -> Result<RoleRecord, StoreError> {
        bounded!(self, |connection| queries::put_role(connection, write))
    }

    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        bounded!(self, |connection| queries::delete_role(connection, name))
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        bounded!(self, |connection| queries::get_secret(connection, name))
    }

    async fn create_secret(&self, name: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        bounded!(self, |connection| queries::create_secret(
            connection, name, value
        ))
    }

    fn feed_health(&self) -> Option<FeedHealth> {
        self.feed
            .lock()
            .unwrap_or_else(|error| error.into_inner())
            .clone()
    }

    fn watch(&self) -> ChangeFeed {
        let (sender, health, feed) = ChangeFeed::channel();
        *self.feed.lock().unwrap_or_else(|error| error.into_inner()) = Some(health.clone());
        tokio::spawn(follow(self.options.clone(), self.settings, sender, health));
        feed
    }
}

/// What the triggers announce (`0001_instances.sql`, `0004_announce_roles.sql`,
/// `0005_tasks.sql`, `0006_pod_identity_associations.sql`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Announcement {
    Instance {
        instance_id: String,
        #[serde(default)]
        host_id: Option<String>,
    },
    Task {
        task_id: String,
        #[serde(default)]
        host_id: Option<String>,
    },
    Role {
        role: String,
    },
    Association {
        association_id: String,
    },
}

/// Listens for announcements and passes them on, until the feed is dropped; reconnects by
/// itself whenever the connection is lost or found dead, and reports how it is doing in `health`
/// and the log.
#[allow(
    clippy::disallowed_methods,
    reason = "bounds and health of the connection to PostgreSQL are measured on the monotonic clock"
)]
async fn follow(
    options: PgConnectOptions,
    settings: StoreSettings,
    sender: mpsc::Sender<Change>,
    health: FeedHealth,
) {
    let max_backoff = settings.heartbeat_interval.max(MIN_BACKOFF);
    let mut backoff = MIN_BACKOFF;
    // When the feed lost its connection (or first failed to make one), while it is lost.
    let mut lost_at: Option<Instant> = None;
    loop {
        let attempt = timeout(settings.operation_timeout, listen(&options, &settings))
            .await
            .unwrap_or_else(|_| Err(no_answer(settings.operation_timeout)));
        match attempt {
            Ok(mut listener) => {
                health.connected();
                if let Some(lost_at) = lost_at.take() {
                    tracing::info!(
                        message = "Change feed is back; resynchronising.",
                        down_for_ms = lost_at.elapsed().as_millis() as u64,
                    );
                }
                backoff = MIN_BACKOFF;
                // Whatever was announced while nobody listened is gone: the reader rereads all.
                if sender.send(Change::Resync).await.is_err() {
                    return;
                }
                let Some(error) = receive(&mut listener, &sender, &settings, &health).await else {
                    return;
                };
                health.lost();
                lost_at = Some(Instant::now());
                tracing::warn!(
                    message = "Change feed lost its connection; reconnecting and resynchronising.",
                    %error,
                );
            }
            Err(error) => {
                health.lost();
                lost_at.get_or_insert_with(Instant::now);
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
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Passes the announcements `listener` receives on to `sender` until the connection fails or is
/// found dead (returns why) or the feed is dropped (returns `None`).
///
/// Whenever the database has been silent for `heartbeat_interval`, a heartbeat query on the same
/// connection must be answered within `heartbeat_timeout`: a connection whose packets are dropped
/// gives no error of its own for many minutes.
#[allow(
    clippy::disallowed_methods,
    reason = "bounds and health of the connection to PostgreSQL are measured on the monotonic clock"
)]
async fn receive(
    listener: &mut PgListener,
    sender: &mpsc::Sender<Change>,
    settings: &StoreSettings,
    health: &FeedHealth,
) -> Option<StoreError> {
    let mut last_contact = Instant::now();
    loop {
        let quiet_until = last_contact + settings.heartbeat_interval;
        // `try_recv` may be cancelled between messages: sqlx keeps a message read in part.
        let received = tokio::select! {
            () = sender.closed() => return None,
            received = timeout_at(quiet_until, listener.try_recv()) => received,
        };
        let notification = match received {
            Ok(Ok(Some(notification))) => notification,
            Ok(Ok(None)) => {
                return Some(StoreError::Unavailable(
                    "the database closed the connection".to_owned(),
                ))
            }
            Ok(Err(error)) => return Some(store_error(error, "")),
            Err(_) => {
                // Notifications that arrive meanwhile wait in the listener's buffer.
                match timeout(
                    settings.heartbeat_timeout,
                    (&mut *listener).execute(HEARTBEAT),
                )
                .await
                {
                    Ok(Ok(_)) => {
                        last_contact = Instant::now();
                        health.contact();
                        continue;
                    }
                    Ok(Err(error)) => return Some(store_error(error, "")),
                    Err(_) => {
                        return Some(StoreError::Unavailable(format!(
                            "no answer to a heartbeat within {:?}",
                            settings.heartbeat_timeout
                        )))
                    }
                }
            }
        };
        last_contact = Instant::now();
        health.contact();
        if sender.send(change_of(&notification)).await.is_err() {
            return None;
        }
    }
}

/// The change a notification announces.
fn change_of(notification: &PgNotification) -> Change {
    match serde_json::from_str::<Announcement>(notification.payload()) {
        Ok(Announcement::Instance {
            instance_id,
            host_id,
        }) => Change::Instance {
            instance_id,
            host_id,
        },
        Ok(Announcement::Task { task_id, host_id }) => Change::Task { task_id, host_id },
        Ok(Announcement::Role { role }) => Change::Role { name: role },
        Ok(Announcement::Association { association_id }) => Change::Association { association_id },
        Err(error) => {
            // Not from this schema's trigger: reread everything.
            tracing::warn!(
                message = "Unreadable change announcement; resynchronising.",
                %error,
            );
            Change::Resync
        }
    }
}

/// A fresh listening connection, in a pool of its own: a listener dropped with a dead
/// connection holds it until TCP gives up (sqlx sends `UNLISTEN` on it first), and that must not
/// keep the next listener from connecting.
async fn listen(
    options: &PgConnectOptions,
    settings: &StoreSettings,
) -> Result<PgListener, StoreError> {
    let pool = pool_options(settings)
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool)
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

/// The statements of each operation, on the connection the operation holds.
mod queries {
    use std::net::IpAddr;

    use sqlx::postgres::PgConnection;
    use sqlx::{Connection, Postgres, Transaction};

    use crate::postgres::{association_from_row, records_from_rows, role_from_row, store_error};
    use crate::sqlite::{new_record, now_in_microseconds};
    use crate::{
        AssociationRecord, AssociationWrite, InstanceRecord, InstanceWrite, Kind, RoleRecord,
        RoleWrite, StoreError,
    };

    /// The records of `kind` that `condition` (a `WHERE` clause on `i` with its parameter `$1`)
    /// selects, ordered by id.
    pub(super) async fn select(
        connection: &mut PgConnection,
        kind: &Kind,
        condition: &str,
        value: Option<&str>,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let Kind {
            table,
            id_column,
            addresses,
            ..
        } = kind;
        // One statement, so one snapshot: no record is seen with another write's addresses.
        let sql = format!(
            "SELECT i.{id_column} AS id, i.host_id, i.spec, i.revision, i.updated_at, a.address \
             FROM {table} AS i \
             LEFT JOIN {addresses} AS a ON a.{id_column} = i.{id_column} \
             {condition} \
             ORDER BY i.{id_column}, a.position"
        );
        let rows = sqlx::query(&sql)
            .bind(value)
            .fetch_all(&mut *connection)
            .await
            .map_err(|error| store_error(error, value.unwrap_or_default()))?;
        records_from_rows(kind, &rows)
    }

    pub(super) async fn get(
        connection: &mut PgConnection,
        kind: &Kind,
        id: &str,
    ) -> Result<InstanceRecord, StoreError> {
        let condition = format!("WHERE i.{} = $1", kind.id_column);
        select(connection, kind, &condition, Some(id))
            .await?
            .pop()
            .ok_or_else(|| (kind.not_found)(id.to_owned()))
    }

    pub(super) async fn create(
        connection: &mut PgConnection,
        kind: &Kind,
        write: InstanceWrite,
    ) -> Result<InstanceRecord, StoreError> {
        let record = new_record(write, 1);
        let id = record.instance_id.as_str();
        let mut transaction = connection
            .begin()
            .await
            .map_err(|error| store_error(error, ""))?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO {table} ({id_column}, host_id, spec, revision, updated_at) \
             VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT ({id_column}) DO NOTHING",
            table = kind.table,
            id_column = kind.id_column,
        ))
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(record.updated_at)
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

    pub(super) async fn update(
        connection: &mut PgConnection,
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
        let mut transaction = connection
            .begin()
            .await
            .map_err(|error| store_error(error, ""))?;
        // `$5::bigint`: PostgreSQL cannot infer the type of a parameter only compared with NULL.
        let revision: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE {table} \
             SET host_id = $2, spec = $3, revision = revision + 1, updated_at = $4 \
             WHERE {id_column} = $1 AND ($5::bigint IS NULL OR revision = $5::bigint) \
             RETURNING revision"
        ))
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(record.updated_at)
        .bind(expected_revision)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        let Some(revision) = revision else {
            let stored: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT revision FROM {table} WHERE {id_column} = $1"
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

    pub(super) async fn upsert(
        connection: &mut PgConnection,
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
        let mut transaction = connection
            .begin()
            .await
            .map_err(|error| store_error(error, ""))?;
        // `IS NOT DISTINCT FROM` compares NULL host ids as equal, unlike `=`.
        let revision: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO {table} AS stored ({id_column}, host_id, spec, revision, updated_at) \
             VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT ({id_column}) DO UPDATE \
             SET spec = excluded.spec, revision = stored.revision + 1, \
                 updated_at = excluded.updated_at \
             WHERE stored.host_id IS NOT DISTINCT FROM excluded.host_id \
             RETURNING revision"
        ))
        .bind(id)
        .bind(&record.host_id)
        .bind(&record.spec)
        .bind(record.updated_at)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| store_error(error, id))?;
        let Some(revision) = revision else {
            let stored_host: Option<Option<String>> = sqlx::query_scalar(&format!(
                "SELECT host_id FROM {table} WHERE {id_column} = $1"
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

    pub(super) async fn delete(
        connection: &mut PgConnection,
        kind: &Kind,
        id: &str,
    ) -> Result<(), StoreError> {
        // The addresses go with the row (`ON DELETE CASCADE`), in the same statement.
        let deleted = sqlx::query(&format!(
            "DELETE FROM {} WHERE {} = $1",
            kind.table, kind.id_column
        ))
        .bind(id)
        .execute(&mut *connection)
        .await
        .map_err(|error| store_error(error, id))?;
        if deleted.rows_affected() == 0 {
            return Err((kind.not_found)(id.to_owned()));
        }
        Ok(())
    }

    pub(super) async fn list_associations(
        connection: &mut PgConnection,
    ) -> Result<Vec<AssociationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT association_id, namespace, service_account, spec, revision, updated_at \
             FROM pod_identity_associations ORDER BY namespace, service_account",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| store_error(error, ""))?;
        rows.iter().map(association_from_row).collect()
    }

    /// Creates the association, or with `replace` creates it or replaces the one with its id.
    pub(super) async fn write_association(
        connection: &mut PgConnection,
        write: AssociationWrite,
        replace: bool,
    ) -> Result<AssociationRecord, StoreError> {
        let updated_at = now_in_microseconds();
        let on_conflict = if replace {
            " ON CONFLICT (association_id) DO UPDATE \
             SET namespace = excluded.namespace, service_account = excluded.service_account, \
                 spec = excluded.spec, revision = stored.revision + 1, \
                 updated_at = excluded.updated_at"
        } else {
            ""
        };
        // One statement: atomic without an explicit transaction.
        let revision: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO pod_identity_associations AS stored \
             (association_id, namespace, service_account, spec, revision, updated_at) \
             VALUES ($1, $2, $3, $4, 1, $5){on_conflict} RETURNING revision"
        ))
        .bind(&write.association_id)
        .bind(&write.namespace)
        .bind(&write.service_account)
        .bind(&write.spec)
        .bind(updated_at)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| match store_error(error, "") {
            StoreError::Conflict(message) => crate::association_conflict(&write, &message),
            other => other,
        })?;
        Ok(write.into_record(revision, updated_at))
    }

    pub(super) async fn delete_association(
        connection: &mut PgConnection,
        association_id: &str,
    ) -> Result<(), StoreError> {
        let deleted =
            sqlx::query("DELETE FROM pod_identity_associations WHERE association_id = $1")
                .bind(association_id)
                .execute(&mut *connection)
                .await
                .map_err(|error| store_error(error, ""))?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::AssociationNotFound(association_id.to_owned()));
        }
        Ok(())
    }

    pub(super) async fn list_roles(
        connection: &mut PgConnection,
    ) -> Result<Vec<RoleRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, spec, revision, updated_at FROM roles ORDER BY name")
            .fetch_all(&mut *connection)
            .await
            .map_err(|error| store_error(error, ""))?;
        rows.iter().map(role_from_row).collect()
    }

    pub(super) async fn get_role(
        connection: &mut PgConnection,
        name: &str,
    ) -> Result<RoleRecord, StoreError> {
        let row = sqlx::query("SELECT name, spec, revision, updated_at FROM roles WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *connection)
            .await
            .map_err(|error| store_error(error, ""))?;
        match row {
            Some(row) => role_from_row(&row),
            None => Err(StoreError::RoleNotFound(name.to_owned())),
        }
    }

    pub(super) async fn put_role(
        connection: &mut PgConnection,
        write: RoleWrite,
    ) -> Result<RoleRecord, StoreError> {
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
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| store_error(error, ""))?;
        Ok(RoleRecord {
            name: write.name,
            spec: write.spec,
            revision,
            updated_at,
        })
    }

    pub(super) async fn delete_role(
        connection: &mut PgConnection,
        name: &str,
    ) -> Result<(), StoreError> {
        let deleted = sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(name)
            .execute(&mut *connection)
            .await
            .map_err(|error| store_error(error, ""))?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::RoleNotFound(name.to_owned()));
        }
        Ok(())
    }

    pub(super) async fn get_secret(
        connection: &mut PgConnection,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *connection)
            .await
            .map_err(|error| store_error(error, ""))
    }

    pub(super) async fn create_secret(
        connection: &mut PgConnection,
        name: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        // A racing writer's insert makes this one do nothing (it waits for that transaction
        // and then sees its row); the read in the same transaction returns the winner's value.
        let mut transaction = connection
            .begin()
            .await
            .map_err(|error| store_error(error, ""))?;
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

    async fn replace_addresses(
        connection: &mut PgConnection,
        kind: &Kind,
        id: &str,
        addresses: &[IpAddr],
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "DELETE FROM {} WHERE {} = $1",
            kind.addresses, kind.id_column
        ))
        .bind(id)
        .execute(&mut *connection)
        .await
        .map_err(|error| store_error(error, id))?;
        insert_addresses(connection, kind, id, addresses).await
    }

    /// Claims each address for the record; `Conflict` naming the owner if one is taken.
    ///
    /// `ON CONFLICT DO NOTHING` lets the primary key refuse the claim without aborting the
    /// transaction, so the owner can be looked up and named in it. A concurrent claim of the same
    /// address waits for the other transaction and then sees its outcome.
    async fn insert_addresses(
        connection: &mut PgConnection,
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
            let position = i32::try_from(position).map_err(|_| {
                StoreError::Other(format!("{noun} {id} has too many addresses").into())
            })?;
            let inserted = sqlx::query(&format!(
                "INSERT INTO {table} (address, {id_column}, position) \
                 VALUES ($1, $2, $3) \
                 ON CONFLICT (address) DO NOTHING"
            ))
            .bind(&address_text)
            .bind(id)
            .bind(position)
            .execute(&mut *connection)
            .await
            .map_err(|error| store_error(error, id))?;
            if inserted.rows_affected() == 0 {
                let owner: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT {id_column} FROM {table} WHERE address = $1"
                ))
                .bind(&address_text)
                .fetch_optional(&mut *connection)
                .await
                .map_err(|error| store_error(error, id))?;
                let owner = owner.unwrap_or_else(|| format!("another {noun}"));
                return Err(StoreError::Conflict(format!(
                    "address {address_text} belongs to {noun} {owner}, so {noun} {id} cannot \
                     claim it"
                )));
            }
        }
        Ok(())
    }

    async fn commit(
        transaction: Transaction<'_, Postgres>,
        instance_id: &str,
    ) -> Result<(), StoreError> {
        transaction
            .commit()
            .await
            .map_err(|error| store_error(error, instance_id))
    }
}

/// Groups the rows of the records ⟕ addresses join, ordered by id, into records.
fn records_from_rows(kind: &Kind, rows: &[PgRow]) -> Result<Vec<InstanceRecord>, StoreError> {
    let noun = kind.noun;
    let mut records: Vec<InstanceRecord> = Vec::new();
    for row in rows {
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

fn association_from_row(row: &PgRow) -> Result<AssociationRecord, StoreError> {
    Ok(AssociationRecord {
        association_id: row.try_get("association_id").map_err(corrupt)?,
        namespace: row.try_get("namespace").map_err(corrupt)?,
        service_account: row.try_get("service_account").map_err(corrupt)?,
        spec: row.try_get("spec").map_err(corrupt)?,
        revision: row.try_get("revision").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
    })
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
                // lock_not_available (`lock_timeout`), idle_in_transaction_session_timeout: the
                // wait or the session outlived its bound; nothing was written.
                "55P03" | "25P03" => StoreError::Unavailable(message),
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

    #[track_caller]
    fn check_session_settings(
        operation_ms: u64,
        heartbeat_interval_ms: u64,
        heartbeat_timeout_ms: u64,
        expect: &[&str],
    ) {
        let settings = StoreSettings {
            operation_timeout: Duration::from_millis(operation_ms),
            heartbeat_interval: Duration::from_millis(heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(heartbeat_timeout_ms),
        };
        let sql = session_settings(&settings);
        let got: Vec<&str> = sql.split(';').map(str::trim).collect();
        assert_eq!(got, expect, "{settings:?}");
    }

    #[test]
    fn session_settings_follow_the_bounds() {
        check_session_settings(
            5_000,
            2_000,
            3_000,
            &[
                "SET statement_timeout = 5000",
                "SET lock_timeout = 5000",
                "SET idle_in_transaction_session_timeout = 5000",
                "SET tcp_keepalives_idle = 5",
                "SET tcp_keepalives_interval = 1",
                "SET tcp_keepalives_count = 5",
                "SET tcp_user_timeout = 10000",
            ],
        );
        // Fractions of a second round up; PostgreSQL's keepalive settings are whole seconds, at
        // least one.
        check_session_settings(
            1_500,
            500,
            700,
            &[
                "SET statement_timeout = 1500",
                "SET lock_timeout = 1500",
                "SET idle_in_transaction_session_timeout = 1500",
                "SET tcp_keepalives_idle = 2",
                "SET tcp_keepalives_interval = 1",
                "SET tcp_keepalives_count = 2",
                "SET tcp_user_timeout = 2400",
            ],
        );
        check_session_settings(
            1,
            100,
            100,
            &[
                "SET statement_timeout = 1",
                "SET lock_timeout = 1",
                "SET idle_in_transaction_session_timeout = 1",
                "SET tcp_keepalives_idle = 1",
                "SET tcp_keepalives_interval = 1",
                "SET tcp_keepalives_count = 1",
                "SET tcp_user_timeout = 400",
            ],
        );
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
