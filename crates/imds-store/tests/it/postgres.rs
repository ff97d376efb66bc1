//! The PostgreSQL backend: the conformance story on a fresh database per test, then what is
//! particular to a server that many hosts share: migrations under concurrent opens, the change
//! feed and its resynchronisation after the server restarts, the errors of a server that is
//! down or refuses connections, and the bounds that hold when the network goes silent (a
//! `Proxy` that stops forwarding, as a partition does).

use std::sync::Arc;
use std::time::Duration;

use imds_store::test_server::{self, TestServer};
use imds_store::{
    Change, ChangeFeed, InstanceWrite, PostgresStore, Store, StoreError, StoreSettings, TaskWrite,
};
use sqlx::{Connection, PgConnection};

use crate::proxy::Proxy;
use crate::Fixture;

/// Long enough for any machine; only a broken bound or feed takes this long.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Short bounds, so that tests of silence end soon: operations give up after a second, and the
/// feed asks after 0.2 s of silence and waits half a second for the answer.
fn short_bounds() -> StoreSettings {
    StoreSettings {
        operation_timeout: Duration::from_secs(1),
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_millis(500),
    }
}

/// Polls until `check` holds, or fails naming `what` after `GIVE_UP_AFTER`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < GIVE_UP_AFTER, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A private server, a database on it, and a relay to it, for tests that silence the network.
async fn behind_a_proxy() -> (TestServer, test_server::TestDatabase, Proxy, String) {
    let server = TestServer::start().unwrap();
    let database = test_server::create_database(&server.url("postgres"))
        .await
        .unwrap();
    let proxy = Proxy::start(server.socket_address()).await;
    let url = format!("postgres://postgres@{}/{}", proxy.address, database.name());
    (server, database, proxy, url)
}

#[track_caller]
fn assert_no_answer<T: std::fmt::Debug>(outcome: Result<T, StoreError>) {
    match outcome {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("did not answer within 1s"), "{message}");
        }
        other => panic!("expected Unavailable for want of an answer, got {other:?}"),
    }
}

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
            Change::Task { task_id, .. } => {
                panic!("expected an instance change, got task {task_id}")
            }
            Change::Association { association_id } => {
                panic!("expected an instance change, got association {association_id}")
            }
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

/// A task's writes reach another store's feed as task changes, with the host after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reports_task_changes() {
    let database = test_server::database().await.unwrap();
    let watcher = PostgresStore::open(&database.url).await.unwrap();
    let writer = PostgresStore::open(&database.url).await.unwrap();
    let mut feed = watcher.watch();
    assert_eq!(feed.next().await, Some(Change::Resync));
    let task = |host: &str| TaskWrite {
        task_id: "0123456789abcdef0123456789abcdef".to_owned(),
        host_id: Some(host.to_owned()),
        addresses: vec!["10.0.0.1".parse().unwrap()],
        spec: "{}".to_owned(),
    };
    writer.create_task(task("hv-1")).await.unwrap();
    writer.update_task(task("hv-2"), Some(1)).await.unwrap();
    writer
        .delete_task("0123456789abcdef0123456789abcdef")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match feed.next().await.expect("the feed stays open") {
            Change::Resync => continue,
            Change::Task { task_id, host_id } => {
                assert_eq!(task_id, "0123456789abcdef0123456789abcdef");
                seen.push(host_id);
            }
            other => panic!("expected a task change, got {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [Some("hv-1".to_owned()), Some("hv-2".to_owned()), None]
    );
}

/// An association's writes reach another store's feed as association changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reports_association_changes() {
    let database = test_server::database().await.unwrap();
    let watcher = PostgresStore::open(&database.url).await.unwrap();
    let writer = PostgresStore::open(&database.url).await.unwrap();
    let mut feed = watcher.watch();
    assert_eq!(feed.next().await, Some(Change::Resync));
    let association = |role: &str| imds_store::AssociationWrite {
        association_id: "a-0123456789abcdefg".to_owned(),
        namespace: "shop".to_owned(),
        service_account: "cart".to_owned(),
        spec: format!(r#"{{"role": "{role}"}}"#),
    };
    writer.create_association(association("one")).await.unwrap();
    writer.put_association(association("two")).await.unwrap();
    writer
        .delete_association("a-0123456789abcdefg")
        .await
        .unwrap();
    let mut seen = 0;
    while seen < 3 {
        match feed.next().await.expect("the feed stays open") {
            Change::Resync => continue,
            Change::Association { association_id } => {
                assert_eq!(association_id, "a-0123456789abcdefg");
                seen += 1;
            }
            other => panic!("expected an association change, got {other:?}"),
        }
    }
    assert!(watcher.list_associations().await.unwrap().is_empty());
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

/// The network goes silent (no reset, no error): every operation, however many are queued for
/// the pool's connections, fails as `Unavailable` on its own bound, and none hangs; once the
/// network is back the store works again, and the operations that gave up stored nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_a_silent_network_fail_within_their_bound() {
    let (_server, _database, proxy, url) = behind_a_proxy().await;
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::open_with(&url, short_bounds())
            .await
            .unwrap(),
    );
    store
        .create_instance(on_host("i-a", "hv-1", &[]))
        .await
        .unwrap();

    proxy.freeze();
    // Twice as many as the pool has connections, at once, as a burst of control-API writes.
    let writes: Vec<_> = (0..8)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_instance(on_host(&format!("i-{index}"), "hv-1", &[]))
                    .await
            })
        })
        .collect();
    for write in writes {
        assert_no_answer(write.await.unwrap());
    }
    assert_no_answer(store.list_instances().await);
    assert_no_answer(
        store
            .put_role(imds_store::RoleWrite {
                name: "app".to_owned(),
                spec: "{}".to_owned(),
            })
            .await,
    );

    proxy.thaw();
    let records = store.list_instances().await.unwrap();
    let ids: Vec<&str> = records
        .iter()
        .map(|record| record.instance_id.as_str())
        .collect();
    assert_eq!(ids, ["i-a"], "an operation that gave up stored nothing");
    store
        .create_instance(on_host("i-b", "hv-1", &[]))
        .await
        .unwrap();
    assert_eq!(store.list_instances().await.unwrap().len(), 2);
}

/// The feed's connection goes silent: its heartbeat goes unanswered, the feed says it is not
/// connected, and once the network is back it reconnects by itself and resynchronises, so the
/// change announced while it could not hear is found by rereading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_notices_a_silent_connection_and_resynchronises_after_it() {
    let (server, database, proxy, url) = behind_a_proxy().await;
    let watcher = PostgresStore::open_with(&url, short_bounds())
        .await
        .unwrap();
    let writer = PostgresStore::open(&server.url(database.name()))
        .await
        .unwrap();
    assert!(watcher.feed_health().is_none(), "no feed yet");
    let mut feed = watcher.watch();
    let health = feed.health();
    assert_eq!(feed.next().await, Some(Change::Resync));
    let status = health.status();
    assert!(
        status.connected && status.since_last_contact.is_some(),
        "{status:?}"
    );
    assert_eq!(status.reconnections, 0);
    writer
        .create_instance(on_host("i-a", "hv-1", &[]))
        .await
        .unwrap();
    assert_eq!(next_instance_change(&mut feed).await.0, "i-a");

    proxy.freeze();
    eventually("the feed notices that its connection is silent", || {
        !health.status().connected
    })
    .await;
    // The store reports the same health, for those who do not hold the feed.
    assert!(!watcher.feed_health().unwrap().status().connected);
    // Announced while the feed cannot hear.
    writer
        .create_instance(on_host("i-b", "hv-2", &[]))
        .await
        .unwrap();
    assert!(
        !health.status().connected,
        "no connection gets through silence"
    );

    proxy.thaw();
    // The announcement went with the dead connection; the resync after the new one stands in
    // for it.
    assert_eq!(feed.next().await, Some(Change::Resync));
    let status = health.status();
    assert!(status.connected, "{status:?}");
    assert_eq!(status.reconnections, 1);
    let records = watcher.list_host_instances("hv-2").await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].instance_id, "i-b");
    // And the new connection hears the next change.
    writer
        .update_instance(on_host("i-b", "hv-1", &[]), Some(1))
        .await
        .unwrap();
    assert_eq!(
        next_instance_change(&mut feed).await,
        ("i-b".to_owned(), Some("hv-1".to_owned()))
    );
}

/// A server that refuses connections (stopped): operations and opening fail with the refusal
/// itself, not after waiting out the bound (two minutes here, so a wait would be noticed as the
/// wrong error), and the store works again when the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_fails_at_once() {
    let server = TestServer::start().unwrap();
    let database = test_server::create_database(&server.url("postgres"))
        .await
        .unwrap();
    let patient = StoreSettings {
        operation_timeout: Duration::from_secs(120),
        ..StoreSettings::default()
    };
    let store = PostgresStore::open_with(&database.url, patient)
        .await
        .unwrap();
    store
        .create_instance(on_host("i-a", "hv-1", &[]))
        .await
        .unwrap();

    server.stop().unwrap();
    #[track_caller]
    fn assert_refused<T: std::fmt::Debug>(outcome: Result<T, StoreError>) {
        match outcome {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("refused"), "{message}");
            }
            other => panic!("expected Unavailable naming the refusal, got {other:?}"),
        }
    }
    assert_refused(store.create_instance(on_host("i-b", "hv-1", &[])).await);
    assert_refused(store.list_instances().await);
    assert_refused(PostgresStore::open_with(&database.url, patient).await);

    server.restart().unwrap();
    store
        .create_instance(on_host("i-b", "hv-1", &[]))
        .await
        .unwrap();
    assert_eq!(store.list_instances().await.unwrap().len(), 2);
    drop(store);
    drop(database);
}

/// A bound of zero would fail every operation: refused when opening, naming it.
#[tokio::test]
async fn a_zero_bound_is_a_config_error() {
    let settings = StoreSettings {
        heartbeat_timeout: Duration::ZERO,
        ..StoreSettings::default()
    };
    let error = imds_store::open_with("postgres://postgres@127.0.0.1:1/imds", settings)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error:?}");
    assert!(error.to_string().contains("heartbeat timeout"), "{error}");
}
