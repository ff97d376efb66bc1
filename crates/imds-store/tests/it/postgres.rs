//! The PostgreSQL backend: the conformance story on a fresh database per test, then what is
//! particular to a server that many hosts share: migrations under concurrent opens, the change
//! feed and its resynchronisation after the server restarts, and the errors of a server that is
//! down.

use std::sync::Arc;

use imds_store::test_server::{self, TestServer};
use imds_store::{Change, ChangeFeed, InstanceWrite, PostgresStore, Store, StoreError};
use sqlx::{Connection, PgConnection};

use crate::Fixture;

/// A fresh database on the test server, opened through the URI the way the server opens it.
async fn fixture() -> Fixture {
    let database = test_server::database().await.unwrap();
    let store = imds_store::open(&database.url).await.unwrap();
    Fixture::new(store, database)
}

mod story {
    crate::story::conformance!(super::fixture);
}

fn on_host(instance_id: &str, host_id: &str, addresses: &[&str]) -> InstanceWrite {
    InstanceWrite {
        instance_id: instance_id.to_owned(),
        host_id: Some(host_id.to_owned()),
        addresses: addresses.iter().map(|text| text.parse().unwrap()).collect(),
        spec: "{}".to_owned(),
    }
}

async fn applied_migrations(url: &str) -> Vec<(i64, bool)> {
    let mut connection = PgConnection::connect(url).await.unwrap();
    sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut connection)
        .await
        .unwrap()
}

fn migration_count() -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|extension| extension == "sql")
        })
        .count()
}

/// The next change on `feed`, skipping the `Resync` items.
async fn next_instance_change(feed: &mut ChangeFeed) -> (String, Option<String>) {
    loop {
        match feed.next().await.expect("the feed stays open") {
            Change::Resync => continue,
            Change::Instance {
                instance_id,
                host_id,
            } => return (instance_id, host_id),
            Change::Role { name } => panic!("expected an instance change, got role {name}"),
        }
    }
}

/// Hosts starting at once on a new database: every open succeeds, each migration runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_new_database_migrate_it_once() {
    let database = test_server::database().await.unwrap();
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = database.url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().unwrap());
    }
    stores[0]
        .create_instance(on_host("i-a", "hv-1", &[]))
        .await
        .unwrap();
    assert_eq!(stores[7].list_instances().await.unwrap().len(), 1);
    let expected: Vec<(i64, bool)> = (1..=migration_count() as i64)
        .map(|version| (version, true))
        .collect();
    assert_eq!(applied_migrations(&database.url).await, expected);
}

/// Two hosts cannot claim one address: the database refuses the second, naming the first.
#[tokio::test]
async fn two_hosts_cannot_claim_one_address() {
    let database = test_server::database().await.unwrap();
    let first: Arc<dyn Store> = Arc::new(PostgresStore::open(&database.url).await.unwrap());
    let second: Arc<dyn Store> = Arc::new(PostgresStore::open(&database.url).await.unwrap());
    first
        .create_instance(on_host("i-a", "hv-1", &["10.0.0.5"]))
        .await
        .unwrap();
    match second
        .create_instance(on_host("i-b", "hv-2", &["10.0.0.5"]))
        .await
    {
        Err(StoreError::Conflict(message)) => {
            assert!(
                message.contains("10.0.0.5") && message.contains("i-a"),
                "{message}"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match second.upsert_instance(on_host("i-a", "hv-2", &[])).await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("hv-1"), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Every write of one store reaches another store's feed: creates, changes, moves, deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reports_every_change_of_another_writer() {
    let database = test_server::database().await.unwrap();
    let watcher = PostgresStore::open(&database.url).await.unwrap();
    let writer = PostgresStore::open(&database.url).await.unwrap();
    let mut feed = watcher.watch();
    // The feed begins with a resync, sent once it listens: later writes are announced to it.
    assert_eq!(feed.next().await, Some(Change::Resync));

    writer
        .create_instance(on_host("i-a", "hv-1", &["10.0.0.1"]))
        .await
        .unwrap();
    assert_eq!(
        next_instance_change(&mut feed).await,
        ("i-a".to_owned(), Some("hv-1".to_owned()))
    );
    writer
        .update_instance(on_host("i-a", "hv-2", &["10.0.0.2"]), Some(1))
        .await
        .unwrap();
    assert_eq!(
        next_instance_change(&mut feed).await,
        ("i-a".to_owned(), Some("hv-2".to_owned()))
    );
    // A refused write announces nothing: the next announcement is the delete.
    writer
        .create_instance(on_host("i-b", "hv-1", &["10.0.0.2"]))
        .await
        .unwrap_err();
    writer.delete_instance("i-a").await.unwrap();
    assert_eq!(
        next_instance_change(&mut feed).await,
        ("i-a".to_owned(), None)
    );
}

/// The server restarts: the feed reconnects, resynchronises, and reports later changes; writes
/// while it is down fail as `Unavailable` and store nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_resynchronises_after_the_server_restarts() {
    let server = TestServer::start().unwrap();
    let database = test_server::create_database(&server.url("postgres"))
        .await
        .unwrap();
    let store = PostgresStore::open(&database.url).await.unwrap();
    let mut feed = store.watch();
    assert_eq!(feed.next().await, Some(Change::Resync));
    store
        .create_instance(on_host("i-a", "hv-1", &[]))
        .await
        .unwrap();
    assert_eq!(next_instance_change(&mut feed).await.0, "i-a");

    server.stop().unwrap();
    match store.create_instance(on_host("i-b", "hv-1", &[])).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    match store
        .update_instance(on_host("i-a", "hv-2", &[]), None)
        .await
    {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    server.restart().unwrap();

    // The feed's next item is the resync after its reconnection.
    assert_eq!(feed.next().await, Some(Change::Resync));
    let records = store.list_instances().await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].host_id.as_deref(), Some("hv-1"));
    assert_eq!(records[0].revision, 1);
    store
        .update_instance(on_host("i-a", "hv-2", &[]), Some(1))
        .await
        .unwrap();
    assert_eq!(
        next_instance_change(&mut feed).await,
        ("i-a".to_owned(), Some("hv-2".to_owned()))
    );
    drop(store);
    drop(database);
}

/// A database migrated by a newer release is refused with a clear message.
#[tokio::test]
async fn a_database_from_a_newer_release_is_refused() {
    let database = test_server::database().await.unwrap();
    drop(PostgresStore::open(&database.url).await.unwrap());
    let mut connection = PgConnection::connect(&database.url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    let error = PostgresStore::open(&database.url).await.unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("9999") && message.contains("newer"),
        "{message}"
    );
}

/// A database that does not exist is a configuration error naming it.
#[tokio::test]
async fn a_missing_database_is_a_config_error() {
    let admin_url = test_server::shared_admin_url().unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let error = imds_store::open(&format!("{base}/no_such_database"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    assert!(error.to_string().contains("no_such_database"), "{error}");
}
