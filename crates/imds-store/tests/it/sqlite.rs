//! The SQLite backend: the conformance story, durability, migrations and open errors.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use imds_store::{InstanceWrite, SqliteStore, Store, StoreError};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

use crate::Fixture;

/// A fresh store in a temp dir, opened through the URI the way the server opens it.
async fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let store = imds_store::open(&uri(&dir.path().join("imds.db")))
        .await
        .unwrap();
    Fixture::new(store, dir)
}

mod story {
    crate::story::conformance!(super::fixture);
}

fn uri(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn write(instance_id: &str, addresses: &[&str], spec: &str) -> InstanceWrite {
    InstanceWrite {
        instance_id: instance_id.to_owned(),
        host_id: None,
        addresses: addresses.iter().map(|text| text.parse().unwrap()).collect(),
        spec: spec.to_owned(),
    }
}

/// A plain connection to the file, outside the store, to look at or tamper with it.
async fn raw_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

fn migration_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "sql"))
        .collect();
    files.sort();
    files
}

async fn applied_migrations(path: &Path) -> Vec<(i64, bool)> {
    let mut connection = raw_connection(path).await;
    sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut connection)
        .await
        .unwrap()
}

#[track_caller]
fn expect_message(error: &StoreError, mentions: &[&str]) {
    let message = error.to_string();
    for mention in mentions {
        assert!(
            message.contains(mention),
            "{message:?} should mention {mention:?}"
        );
    }
}

#[tokio::test]
async fn writes_survive_a_drop_without_close() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let created = store
        .create_instance(write("i-a", &["127.0.0.2", "fd00::2"], "{}"))
        .await
        .unwrap();
    let updated = store
        .update_instance(write("i-a", &["127.0.0.3"], r#"{"v": 2}"#), Some(1))
        .await
        .unwrap();
    let other = store
        .upsert_instance(write("i-b", &["::ffff:127.0.0.4"], "{}"))
        .await
        .unwrap();
    assert_eq!(created.revision + 1, updated.revision);
    drop(store);

    let reopened = SqliteStore::open_path(&path).await.unwrap();
    assert_eq!(reopened.list_instances().await.unwrap(), [updated, other]);
}

#[tokio::test]
async fn reopening_applies_no_migration_twice() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let expected: Vec<(i64, bool)> = (1..=migration_files().len() as i64)
        .map(|version| (version, true))
        .collect();
    for round in 0..3 {
        let store = SqliteStore::open_path(&path).await.unwrap();
        assert_eq!(store.list_instances().await.unwrap().len(), round);
        store
            .create_instance(write(&format!("i-{round}"), &[], "{}"))
            .await
            .unwrap();
        drop(store);
        assert_eq!(applied_migrations(&path).await, expected);
    }
}

#[tokio::test]
async fn the_file_is_in_wal_mode_with_foreign_keys_enforced() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let store = SqliteStore::open_path(&path).await.unwrap();
    store
        .create_instance(write("i-a", &["127.0.0.2"], "{}"))
        .await
        .unwrap();
    // The journal mode is a property of the file; a raw connection sees it.
    let mut connection = raw_connection(&path).await;
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(journal_mode, "wal");
    // The address rows went with their instance, which needs the foreign keys enforced.
    store.delete_instance("i-a").await.unwrap();
    let orphans: i64 = sqlx::query_scalar("SELECT count(*) FROM instance_addresses")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(orphans, 0);
}

/// A file made by release 1 (migration 0001 alone, rows as it wrote them) opens in this build.
#[tokio::test]
async fn a_store_file_from_migration_0001_opens() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let first_release = dir.path().join("migrations-0001");
    std::fs::create_dir(&first_release).unwrap();
    let first_migration = &migration_files()[0];
    assert!(first_migration.ends_with("0001_instances.sql"));
    std::fs::copy(first_migration, first_release.join("0001_instances.sql")).unwrap();

    let mut connection = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    Migrator::new(first_release.as_path())
        .await
        .unwrap()
        .run(&mut connection)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO instances (instance_id, host_id, spec, revision, updated_at) VALUES \
         ('i-old', NULL, '{\"instance-id\": \"i-old\"}', 7, '2026-01-02T03:04:05.678901Z'), \
         ('i-fleet', 'hv-17', '{}', 1, '2026-01-02T03:04:06.000000Z')",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO instance_addresses (address, instance_id, position) VALUES \
         ('fd00::2', 'i-old', 1), ('127.0.0.2', 'i-old', 0), ('127.0.0.3', 'i-fleet', 0)",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();

    let store = SqliteStore::open_path(&path).await.unwrap();
    let old = store.get_instance("i-old").await.unwrap();
    assert_eq!(old.spec, r#"{"instance-id": "i-old"}"#);
    assert_eq!(old.revision, 7);
    assert_eq!(
        old.addresses,
        ["127.0.0.2", "fd00::2"]
            .map(|text| text.parse::<IpAddr>().unwrap())
            .to_vec()
    );
    assert_eq!(
        old.updated_at,
        time::macros::datetime!(2026-01-02 03:04:05.678901 UTC)
    );
    assert_eq!(
        store
            .get_instance("i-fleet")
            .await
            .unwrap()
            .host_id
            .as_deref(),
        Some("hv-17")
    );
    let updated = store
        .update_instance(write("i-old", &["127.0.0.2"], "{}"), Some(7))
        .await
        .unwrap();
    assert_eq!(updated.revision, 8);
    drop(store);
    assert_eq!(
        applied_migrations(&path).await.len(),
        migration_files().len()
    );
}

#[tokio::test]
async fn a_store_file_from_a_newer_release_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    drop(SqliteStore::open_path(&path).await.unwrap());
    let mut connection = raw_connection(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, X'00', 0)",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();

    let error = SqliteStore::open_path(&path).await.unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    expect_message(&error, &["9999", "newer", "imds.db"]);
}

#[tokio::test]
async fn concurrent_opens_of_a_new_file_migrate_it_once() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open_path(&path).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().unwrap());
    }
    stores[0]
        .create_instance(write("i-a", &[], "{}"))
        .await
        .unwrap();
    assert_eq!(stores[7].list_instances().await.unwrap().len(), 1);
    assert_eq!(
        applied_migrations(&path).await.len(),
        migration_files().len()
    );
}

/// Two stores on one file stand for two processes: their writes wait for each other's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_lose_no_write() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let first: Arc<dyn Store> = Arc::new(SqliteStore::open_path(&path).await.unwrap());
    let second: Arc<dyn Store> = Arc::new(SqliteStore::open_path(&path).await.unwrap());
    first
        .create_instance(write("i-shared", &[], "{}"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|index| {
            let store = if index % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move {
                let address = format!("127.0.3.{index}");
                store
                    .create_instance(write(&format!("i-{index:02}"), &[&address], "{}"))
                    .await?;
                store
                    .update_instance(write("i-shared", &[], "{}"), None)
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(second.list_instances().await.unwrap().len(), 21);
    assert_eq!(first.get_instance("i-shared").await.unwrap().revision, 21);
}

#[tokio::test]
async fn an_unreadable_stored_value_is_other() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let store = SqliteStore::open_path(&path).await.unwrap();
    store
        .create_instance(write("i-a", &["127.0.0.2"], "{}"))
        .await
        .unwrap();
    let mut connection = raw_connection(&path).await;
    sqlx::query("UPDATE instance_addresses SET address = 'not-an-address'")
        .execute(&mut connection)
        .await
        .unwrap();
    let error = store.list_instances().await.unwrap_err();
    assert!(matches!(error, StoreError::Other(_)), "{error:?}");
    expect_message(&error, &["not-an-address", "i-a"]);
}

#[tokio::test]
async fn a_missing_directory_is_unavailable() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("no-such-dir/imds.db");
    let error = imds_store::open(&uri(&path)).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    expect_message(&error, &["no-such-dir/imds.db"]);
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    std::fs::write(
        &path,
        "these are not the pages you are looking for ".repeat(100),
    )
    .unwrap();
    let error = SqliteStore::open_path(&path).await.unwrap_err();
    assert!(matches!(error, StoreError::Other(_)), "{error:?}");
    expect_message(&error, &["not a database"]);
}

#[tokio::test]
async fn the_uri_scheme_picks_the_backend() {
    // A PostgreSQL URI is the shared backend; nothing listens on port 1, and the error names
    // the server without the password.
    let error = imds_store::open("postgres://imds:hunter2@127.0.0.1:1/imds")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    expect_message(&error, &["127.0.0.1:1/imds", "<redacted>"]);
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");

    let error = imds_store::open("mysql://root:hunter2@db/imds")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    expect_message(&error, &["\"mysql\"", "sqlite:", "postgres://"]);
    assert!(!error.to_string().contains("hunter2"), "{error}");

    let error = imds_store::open("imds.db").await.unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    expect_message(&error, &["no scheme"]);

    // Both spellings of a SQLite URI name the same file.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let store = imds_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    store
        .create_instance(write("i-a", &[], "{}"))
        .await
        .unwrap();
    drop(store);
    let store = imds_store::open(&uri(&path)).await.unwrap();
    assert_eq!(store.list_instances().await.unwrap().len(), 1);
}

/// Set in the child process of `kill_9_loses_no_acknowledged_write` to the store file it writes.
const KILL_WRITER_DB: &str = "IMDS_STORE_TEST_KILL_WRITER_DB";

/// Acknowledged writes the parent waits for before it kills the writer.
const ACKS_BEFORE_KILL: usize = 300;

/// A writer streams writes and prints each one once acknowledged; the test kills it with SIGKILL
/// mid-stream, reopens the file, and finds every acknowledged write.
///
/// The test binary is its own writer: it runs this test again in a child process, with
/// `KILL_WRITER_DB` telling that run to be the writer.
#[test]
fn kill_9_loses_no_acknowledged_write() {
    if let Some(path) = std::env::var_os(KILL_WRITER_DB) {
        run_writer(Path::new(&path));
        return;
    }
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("imds.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite::kill_9_loses_no_acknowledged_write",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_WRITER_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());

    // Instance id → (revision, spec) of its last acknowledged write.
    let mut acknowledged: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut n_acks = 0;
    for line in stdout.lines() {
        let line = line.unwrap();
        let Some(ack) = line.strip_prefix("acked ") else {
            continue;
        };
        let mut fields = ack.split(' ');
        let (instance_id, revision, spec) = (
            fields.next().unwrap().to_owned(),
            fields.next().unwrap().parse::<i64>().unwrap(),
            fields.next().unwrap().to_owned(),
        );
        acknowledged.insert(instance_id, (revision, spec));
        n_acks += 1;
        if n_acks == ACKS_BEFORE_KILL {
            // `Child::kill` is SIGKILL on Unix: no destructor, no close, no checkpoint runs.
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(n_acks, ACKS_BEFORE_KILL, "the writer stopped early");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open_path(&path).await.unwrap();
        for (instance_id, (revision, spec)) in &acknowledged {
            let stored = store.get_instance(instance_id).await.unwrap();
            // The writer may have committed one more write that it had no time to print.
            assert!(
                stored.revision == *revision || stored.revision == revision + 1,
                "{instance_id}: acknowledged revision {revision}, stored {}",
                stored.revision
            );
            if stored.revision == *revision {
                assert_eq!(&stored.spec, spec, "{instance_id}");
            }
        }
    });
}

/// The child's side: four tasks write to their own instances until killed (or 10,000 writes).
fn run_writer(path: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open_path(path).await.unwrap());
        let tasks: Vec<_> = (0..4)
            .map(|task_index| {
                let store = store.clone();
                tokio::spawn(async move {
                    for write_index in 0..2_500 {
                        let instance_id = format!("i-{task_index}-{}", write_index % 5);
                        let address = format!("127.0.{task_index}.{}", write_index % 5);
                        let spec = format!(r#"{{"write":{write_index}}}"#);
                        let record = store
                            .upsert_instance(write(&instance_id, &[&address], &spec))
                            .await
                            .unwrap();
                        let mut stdout = std::io::stdout().lock();
                        writeln!(stdout, "acked {instance_id} {} {spec}", record.revision).unwrap();
                        stdout.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// A state directory's name is not a URI: `open_path` takes `?`, `#` and `%` literally.
#[tokio::test]
async fn open_path_takes_the_path_literally() {
    let dir = TempDir::new().unwrap();
    let odd_dir = dir.path().join("state?mode=ro#x%41");
    std::fs::create_dir(&odd_dir).unwrap();
    let path = odd_dir.join("imds.db");
    let store = SqliteStore::open_path(&path).await.unwrap();
    store
        .create_instance(write("i-a", &[], "{}"))
        .await
        .unwrap();
    drop(store);
    assert!(path.is_file(), "{} should exist", path.display());
    let reopened = SqliteStore::open_path(&path).await.unwrap();
    assert_eq!(reopened.list_instances().await.unwrap().len(), 1);
}
