//! The conformance story: what every `Store` backend does, in domain terms only.
//!
//! Each chapter takes an empty store and asserts through the trait alone, so a new backend passes
//! by running `conformance!` with its own fixture; nothing here knows SQL.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use imds_store::{
    AssociationWrite, InstanceRecord, InstanceWrite, RoleWrite, Store, StoreError, TaskWrite,
};
use time::{Duration, OffsetDateTime};

/// A write of instance `instance_id` calling from `addresses`, in host mode.
fn write(instance_id: &str, addresses: &[&str]) -> InstanceWrite {
    InstanceWrite {
        instance_id: instance_id.to_owned(),
        host_id: None,
        addresses: addresses.iter().map(|text| ip(text)).collect(),
        spec: format!(r#"{{"instance-id": "{instance_id}"}}"#),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn ips(texts: &[&str]) -> Vec<IpAddr> {
    texts.iter().map(|text| ip(text)).collect()
}

#[track_caller]
fn expect_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, mentions: &[&str]) {
    match result {
        Err(StoreError::Conflict(message)) => {
            for mention in mentions {
                assert!(
                    message.contains(mention),
                    "the conflict message {message:?} should name {mention:?}"
                );
            }
        }
        other => panic!("expected Conflict naming {mentions:?}, got {other:?}"),
    }
}

#[track_caller]
fn expect_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, instance_id: &str) {
    match result {
        Err(StoreError::NotFound(id)) => assert_eq!(id, instance_id),
        other => panic!("expected NotFound({instance_id:?}), got {other:?}"),
    }
}

/// Asserts that `record` is what `write` stores at `revision`, written between `before` and now.
#[track_caller]
fn check_record(
    record: &InstanceRecord,
    write: &InstanceWrite,
    revision: i64,
    before: OffsetDateTime,
) {
    assert_eq!(record.instance_id, write.instance_id);
    assert_eq!(record.host_id, write.host_id);
    assert_eq!(record.addresses, write.addresses);
    assert_eq!(record.spec, write.spec);
    assert_eq!(
        record.revision, revision,
        "revision of {}",
        write.instance_id
    );
    // Backends keep microseconds, so the stored time may be up to 1µs before `before`.
    let now = OffsetDateTime::now_utc();
    assert!(
        before - Duration::microseconds(1) <= record.updated_at && record.updated_at <= now,
        "updated_at {} should lie between {before} and {now}",
        record.updated_at
    );
}

async fn ids(store: &Arc<dyn Store>) -> Vec<String> {
    let records = store.list_instances().await.unwrap();
    records
        .into_iter()
        .map(|record| record.instance_id)
        .collect()
}

/// An empty store lists nothing and reports every id as missing.
pub async fn empty_store(store: Arc<dyn Store>) {
    assert_eq!(store.list_instances().await.unwrap(), Vec::new());
    expect_not_found(store.get_instance("i-missing").await, "i-missing");
    expect_not_found(store.delete_instance("i-missing").await, "i-missing");
    expect_not_found(
        store
            .update_instance(write("i-missing", &["127.0.0.2"]), None)
            .await,
        "i-missing",
    );
    expect_not_found(
        store
            .update_instance(write("i-missing", &["127.0.0.2"]), Some(1))
            .await,
        "i-missing",
    );
    // The failed updates claimed nothing.
    store
        .create_instance(write("i-a", &["127.0.0.2"]))
        .await
        .unwrap();
}

/// A created instance reads back exactly as written, at revision 1.
pub async fn create_and_get(store: Arc<dyn Store>) {
    let write_a = InstanceWrite {
        host_id: None,
        spec: r#"{"instance-id": "i-a", "user-data": "é \" \\ \n"}"#.to_owned(),
        ..write("i-a", &["127.0.0.2", "::2"])
    };
    let before = OffsetDateTime::now_utc();
    let created = store.create_instance(write_a.clone()).await.unwrap();
    check_record(&created, &write_a, 1, before);
    assert_eq!(store.get_instance("i-a").await.unwrap(), created);
    assert_eq!(store.list_instances().await.unwrap(), vec![created]);

    // A fleet-mode host id and a large description round-trip too.
    let write_b = InstanceWrite {
        host_id: Some("hv-17".to_owned()),
        spec: format!(r#"{{"user-data": "{}"}}"#, "x".repeat(64 * 1024)),
        ..write("i-b", &["127.0.0.3"])
    };
    let before = OffsetDateTime::now_utc();
    let created = store.create_instance(write_b.clone()).await.unwrap();
    check_record(&created, &write_b, 1, before);
    assert_eq!(store.get_instance("i-b").await.unwrap(), created);
}

/// An instance may have no address (the default instance has none).
pub async fn instance_without_addresses(store: Arc<dyn Store>) {
    let created = store.create_instance(write("i-a", &[])).await.unwrap();
    assert_eq!(created.addresses, Vec::<IpAddr>::new());
    assert_eq!(store.get_instance("i-a").await.unwrap(), created);
    store
        .create_instance(write("i-b", &["127.0.0.3"]))
        .await
        .unwrap();
    assert_eq!(ids(&store).await, ["i-a", "i-b"]);
}

/// A second instance with a taken id is refused and the first is untouched.
pub async fn duplicate_id_conflicts(store: Arc<dyn Store>) {
    let first = store
        .create_instance(write("i-a", &["127.0.0.2"]))
        .await
        .unwrap();
    let second = InstanceWrite {
        spec: r#"{"other": true}"#.to_owned(),
        ..write("i-a", &["127.0.0.9"])
    };
    expect_conflict(store.create_instance(second).await, &["i-a"]);
    assert_eq!(store.get_instance("i-a").await.unwrap(), first);
    // The refused write's address was not claimed.
    store
        .create_instance(write("i-c", &["127.0.0.9"]))
        .await
        .unwrap();
}

/// An address belongs to one instance; a refused create leaves nothing behind.
pub async fn address_taken_conflicts(store: Arc<dyn Store>) {
    let first = store
        .create_instance(write("i-a", &["127.0.0.2", "fd00::a"]))
        .await
        .unwrap();
    // The taken address comes second, after a free one was already claimed in the transaction.
    expect_conflict(
        store
            .create_instance(write("i-b", &["127.0.0.9", "fd00::a"]))
            .await,
        &["fd00::a", "i-a"],
    );
    expect_not_found(store.get_instance("i-b").await, "i-b");
    assert_eq!(ids(&store).await, ["i-a"]);
    assert_eq!(store.get_instance("i-a").await.unwrap(), first);
    // The free address the refused write had claimed was released.
    store
        .create_instance(write("i-c", &["127.0.0.9"]))
        .await
        .unwrap();
    // The id of the refused write is free too.
    store
        .create_instance(write("i-b", &["127.0.0.10"]))
        .await
        .unwrap();
}

/// Addresses are stored canonically: another spelling of a taken address is the same address.
pub async fn addresses_are_canonical(store: Arc<dyn Store>) {
    let created = store
        .create_instance(write(
            "i-a",
            &["fd00:0:0:0:0:0:0:a", "::ffff:127.0.0.2", "FD00::B"],
        ))
        .await
        .unwrap();
    let expected = ips(&["fd00::a", "127.0.0.2", "fd00::b"]);
    assert_eq!(created.addresses, expected);
    assert_eq!(store.get_instance("i-a").await.unwrap().addresses, expected);
    assert_eq!(
        created
            .addresses
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>(),
        ["fd00::a", "127.0.0.2", "fd00::b"]
    );
    // The IPv4 address is taken, whichever way it is spelled.
    expect_conflict(
        store.create_instance(write("i-b", &["127.0.0.2"])).await,
        &["127.0.0.2", "i-a"],
    );
    expect_conflict(
        store
            .create_instance(write("i-b", &["::ffff:127.0.0.2"]))
            .await,
        &["127.0.0.2", "i-a"],
    );
    expect_conflict(
        store.create_instance(write("i-b", &["fd00:0::a"])).await,
        &["fd00::a", "i-a"],
    );
    // Only IPv4-mapped addresses are unmapped: IPv4-compatible ones are plain IPv6.
    store
        .create_instance(write("i-b", &["::127.0.0.2"]))
        .await
        .unwrap();
}

/// Addresses keep the order they were written in, and a repeat is stored once.
pub async fn address_order_and_repeats(store: Arc<dyn Store>) {
    let created = store
        .create_instance(write(
            "i-a",
            &["127.0.0.5", "::5", "127.0.0.4", "::5", "::ffff:127.0.0.5"],
        ))
        .await
        .unwrap();
    let expected = ips(&["127.0.0.5", "::5", "127.0.0.4"]);
    assert_eq!(created.addresses, expected);
    assert_eq!(store.get_instance("i-a").await.unwrap().addresses, expected);
    let replaced = store
        .update_instance(write("i-a", &["127.0.0.4", "127.0.0.5"]), None)
        .await
        .unwrap();
    assert_eq!(replaced.addresses, ips(&["127.0.0.4", "127.0.0.5"]));
    assert_eq!(
        store.list_instances().await.unwrap()[0].addresses,
        ips(&["127.0.0.4", "127.0.0.5"])
    );
}

/// `list_instances` orders by instance id byte-wise, whatever the insertion order and collation.
pub async fn list_is_ordered_by_id(store: Arc<dyn Store>) {
    // Byte order puts "i-B" before "i-a" and "i-a" before "i-a-1"; a locale collation would not.
    let insertion_order = ["i-b", "i-a-1", "i-B", "i-a", "i-0", "i-é", "i-Z"];
    for (index, instance_id) in insertion_order.iter().enumerate() {
        let address = format!("127.0.1.{index}");
        store
            .create_instance(write(instance_id, &[&address, &format!("fd00::1:{index}")]))
            .await
            .unwrap();
    }
    let mut expected: Vec<String> = insertion_order.iter().map(|id| id.to_string()).collect();
    expected.sort();
    let listed = store.list_instances().await.unwrap();
    let listed_ids: Vec<&str> = listed
        .iter()
        .map(|record| record.instance_id.as_str())
        .collect();
    assert_eq!(listed_ids, expected);
    // Each listed record is the one `get` returns, with its own addresses.
    for record in &listed {
        assert_eq!(
            &store.get_instance(&record.instance_id).await.unwrap(),
            record
        );
        assert_eq!(record.addresses.len(), 2, "{record:?}");
    }
}

/// A host lists the instances assigned to it (fleet mode), by id, and no other.
pub async fn host_listing(store: Arc<dyn Store>) {
    let on_host = |instance_id: &str, host_id: Option<&str>, address: &str| InstanceWrite {
        host_id: host_id.map(str::to_owned),
        ..write(instance_id, &[address])
    };
    for (instance_id, host_id, address) in [
        ("i-c", Some("hv-1"), "127.0.0.2"),
        ("i-a", Some("hv-2"), "127.0.0.3"),
        ("i-b", Some("hv-1"), "127.0.0.4"),
        ("i-d", None, "127.0.0.5"),
    ] {
        store
            .create_instance(on_host(instance_id, host_id, address))
            .await
            .unwrap();
    }
    let listed = |records: Vec<InstanceRecord>| -> Vec<(String, Vec<IpAddr>)> {
        records
            .into_iter()
            .map(|record| (record.instance_id, record.addresses))
            .collect()
    };
    assert_eq!(
        listed(store.list_host_instances("hv-1").await.unwrap()),
        [
            ("i-b".to_owned(), ips(&["127.0.0.4"])),
            ("i-c".to_owned(), ips(&["127.0.0.2"]))
        ]
    );
    assert_eq!(
        listed(store.list_host_instances("hv-3").await.unwrap()),
        Vec::new()
    );
    // A move takes the instance from one host's list to the other's.
    store
        .update_instance(on_host("i-a", Some("hv-1"), "127.0.0.3"), Some(1))
        .await
        .unwrap();
    assert_eq!(store.list_host_instances("hv-2").await.unwrap(), Vec::new());
    assert_eq!(store.list_host_instances("hv-1").await.unwrap().len(), 3);
}

/// Every update bumps the revision; an expected revision must be the stored one.
pub async fn update_and_revisions(store: Arc<dyn Store>) {
    let created = store
        .create_instance(write("i-a", &["127.0.0.2"]))
        .await
        .unwrap();
    let second_write = InstanceWrite {
        spec: r#"{"instance-type": "m5.large"}"#.to_owned(),
        ..write("i-a", &["127.0.0.3", "::3"])
    };
    let before = OffsetDateTime::now_utc();
    let second = store
        .update_instance(second_write.clone(), None)
        .await
        .unwrap();
    check_record(&second, &second_write, 2, before);
    assert!(second.updated_at >= created.updated_at);
    assert_eq!(store.get_instance("i-a").await.unwrap(), second);

    let third_write = InstanceWrite {
        spec: r#"{"instance-type": "m5.xlarge"}"#.to_owned(),
        ..second_write.clone()
    };
    let third = store
        .update_instance(third_write.clone(), Some(2))
        .await
        .unwrap();
    check_record(&third, &third_write, 3, before);

    // A writer that read revision 2 (or 1) lost the race: refused, nothing changed.
    for stale in [1, 2, 4] {
        expect_conflict(
            store
                .update_instance(write("i-a", &["127.0.0.9"]), Some(stale))
                .await,
            &["i-a", "3", &stale.to_string()],
        );
    }
    assert_eq!(store.get_instance("i-a").await.unwrap(), third);
    let fourth = store
        .update_instance(write("i-a", &["127.0.0.9"]), Some(3))
        .await
        .unwrap();
    assert_eq!(fourth.revision, 4);
    assert_eq!(store.get_instance("i-a").await.unwrap(), fourth);
}

/// An update that claims another instance's address is refused and changes nothing.
pub async fn update_address_conflict_changes_nothing(store: Arc<dyn Store>) {
    store
        .create_instance(write("i-a", &["127.0.0.2"]))
        .await
        .unwrap();
    let before_b = store
        .create_instance(write("i-b", &["127.0.0.3", "::3"]))
        .await
        .unwrap();
    let grabbing = InstanceWrite {
        spec: r#"{"changed": true}"#.to_owned(),
        ..write("i-b", &["::3", "127.0.0.4", "127.0.0.2"])
    };
    expect_conflict(
        store.update_instance(grabbing.clone(), None).await,
        &["127.0.0.2", "i-a", "i-b"],
    );
    expect_conflict(
        store.update_instance(grabbing, Some(1)).await,
        &["127.0.0.2", "i-a"],
    );
    // Revision, description and addresses of i-b are as before the refused writes.
    assert_eq!(store.get_instance("i-b").await.unwrap(), before_b);
    // The refused writes released what they had claimed and kept what i-b had.
    store
        .create_instance(write("i-c", &["127.0.0.4"]))
        .await
        .unwrap();
    expect_conflict(
        store.create_instance(write("i-d", &["127.0.0.3"])).await,
        &["127.0.0.3", "i-b"],
    );
}

/// An address an instance gives up, by update or delete, can be claimed by another.
pub async fn released_addresses_can_be_reused(store: Arc<dyn Store>) {
    store
        .create_instance(write("i-a", &["127.0.0.2", "fd00::2"]))
        .await
        .unwrap();
    store
        .update_instance(write("i-a", &["127.0.0.3"]), None)
        .await
        .unwrap();
    store
        .create_instance(write("i-b", &["127.0.0.2", "fd00::2"]))
        .await
        .unwrap();

    store.delete_instance("i-b").await.unwrap();
    store
        .create_instance(write("i-c", &["fd00::2"]))
        .await
        .unwrap();
    store
        .upsert_instance(write("i-d", &["127.0.0.2"]))
        .await
        .unwrap();
    // Two instances can swap addresses through a free one.
    store
        .update_instance(write("i-a", &["127.0.0.9"]), None)
        .await
        .unwrap();
    store
        .update_instance(write("i-d", &["127.0.0.3"]), None)
        .await
        .unwrap();
    store
        .update_instance(write("i-a", &["127.0.0.2"]), None)
        .await
        .unwrap();
    let addresses = |record: InstanceRecord| record.addresses;
    assert_eq!(
        addresses(store.get_instance("i-a").await.unwrap()),
        ips(&["127.0.0.2"])
    );
    assert_eq!(
        addresses(store.get_instance("i-d").await.unwrap()),
        ips(&["127.0.0.3"])
    );
}

/// Upsert creates at revision 1, then replaces and bumps the revision.
pub async fn upsert_creates_then_replaces(store: Arc<dyn Store>) {
    let first_write = write("i-a", &["127.0.0.2"]);
    let before = OffsetDateTime::now_utc();
    let first = store.upsert_instance(first_write.clone()).await.unwrap();
    check_record(&first, &first_write, 1, before);
    assert_eq!(store.get_instance("i-a").await.unwrap(), first);

    let second_write = InstanceWrite {
        spec: r#"{"replaced": true}"#.to_owned(),
        ..write("i-a", &["::2"])
    };
    let second = store.upsert_instance(second_write.clone()).await.unwrap();
    check_record(&second, &second_write, 2, before);
    assert_eq!(store.get_instance("i-a").await.unwrap(), second);
    // The replaced address is free again.
    store
        .create_instance(write("i-b", &["127.0.0.2"]))
        .await
        .unwrap();
    // Upsert also refuses another instance's address, and changes nothing then.
    expect_conflict(
        store.upsert_instance(write("i-a", &["127.0.0.2"])).await,
        &["127.0.0.2", "i-b"],
    );
    expect_conflict(
        store.upsert_instance(write("i-c", &["127.0.0.2"])).await,
        &["127.0.0.2", "i-b"],
    );
    assert_eq!(store.get_instance("i-a").await.unwrap(), second);
    expect_not_found(store.get_instance("i-c").await, "i-c");
}

/// Upsert replaces only an instance of the same host; update moves an instance between hosts.
pub async fn upsert_keeps_to_its_host(store: Arc<dyn Store>) {
    let on_host = |host: Option<&str>| InstanceWrite {
        host_id: host.map(str::to_owned),
        ..write("i-a", &["127.0.0.2"])
    };
    store.upsert_instance(on_host(None)).await.unwrap();
    expect_conflict(store.upsert_instance(on_host(Some("hv-1"))).await, &["i-a"]);
    let moved = store
        .update_instance(on_host(Some("hv-1")), Some(1))
        .await
        .unwrap();
    assert_eq!(moved.host_id.as_deref(), Some("hv-1"));
    assert_eq!(moved.revision, 2);
    let replaced = store.upsert_instance(on_host(Some("hv-1"))).await.unwrap();
    assert_eq!(replaced.revision, 3);
    expect_conflict(
        store.upsert_instance(on_host(Some("hv-2"))).await,
        &["i-a", "hv-1"],
    );
    expect_conflict(store.upsert_instance(on_host(None)).await, &["i-a", "hv-1"]);
    assert_eq!(store.get_instance("i-a").await.unwrap(), replaced);
}

/// Delete removes the instance and its addresses; the id can be registered anew.
pub async fn delete_and_recreate(store: Arc<dyn Store>) {
    store
        .create_instance(write("i-a", &["127.0.0.2"]))
        .await
        .unwrap();
    store
        .update_instance(write("i-a", &["127.0.0.2"]), None)
        .await
        .unwrap();
    store
        .create_instance(write("i-b", &["127.0.0.3"]))
        .await
        .unwrap();
    store.delete_instance("i-a").await.unwrap();
    expect_not_found(store.get_instance("i-a").await, "i-a");
    expect_not_found(store.delete_instance("i-a").await, "i-a");
    expect_not_found(
        store
            .update_instance(write("i-a", &["127.0.0.2"]), None)
            .await,
        "i-a",
    );
    assert_eq!(ids(&store).await, ["i-b"]);
    // A re-registered instance starts again at revision 1.
    let recreated = store
        .create_instance(write("i-a", &["127.0.0.2"]))
        .await
        .unwrap();
    assert_eq!(recreated.revision, 1);
    assert_eq!(ids(&store).await, ["i-a", "i-b"]);
}

/// Concurrent claims of one address: the database lets exactly one win.
pub async fn concurrent_claims_have_one_winner(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_instance(write(&format!("i-{index}"), &["127.0.0.99"]))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(record) => winners.push(record.instance_id),
            Err(error) => expect_conflict(Err::<(), _>(error), &["127.0.0.99"]),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(ids(&store).await, winners);
}

/// Concurrent updates from one revision: exactly one succeeds, the others see a stale revision.
pub async fn concurrent_updates_have_one_winner(store: Arc<dyn Store>) {
    store
        .create_instance(write("i-a", &["127.0.0.2"]))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                let update = InstanceWrite {
                    spec: format!(r#"{{"writer": {index}}}"#),
                    ..write("i-a", &[&format!("127.0.2.{index}")])
                };
                store.update_instance(update, Some(1)).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(record) => winners.push(record),
            Err(error) => expect_conflict(Err::<(), _>(error), &["i-a"]),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = store.get_instance("i-a").await.unwrap();
    assert_eq!(stored, winners[0]);
    assert_eq!(stored.revision, 2);
}

/// Many unconditional writes at once: none is lost, every revision is used exactly once.
pub async fn concurrent_writes_serialise(store: Arc<dyn Store>) {
    store.create_instance(write("i-a", &[])).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                if index % 2 == 0 {
                    store.update_instance(write("i-a", &[]), None).await
                } else {
                    store.upsert_instance(write("i-a", &[])).await
                }
            })
        })
        .collect();
    let mut revisions = HashSet::new();
    for task in tasks {
        revisions.insert(task.await.unwrap().unwrap().revision);
    }
    assert_eq!(revisions, (2..=17).collect::<HashSet<i64>>());
    assert_eq!(store.get_instance("i-a").await.unwrap().revision, 17);
}

fn role(name: &str, provider: &str) -> RoleWrite {
    RoleWrite {
        name: name.to_owned(),
        spec: format!(r#"{{"provider": "{provider}"}}"#),
    }
}

#[track_caller]
fn expect_role_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, name: &str) {
    match result {
        Err(StoreError::RoleNotFound(missing)) => assert_eq!(missing, name),
        other => panic!("expected RoleNotFound({name:?}), got {other:?}"),
    }
}

/// Roles are created, read, listed by name, replaced with the next revision and deleted.
pub async fn roles_round_trip(store: Arc<dyn Store>) {
    assert!(store.list_roles().await.unwrap().is_empty());
    expect_role_not_found(store.get_role("app").await, "app");
    let before = OffsetDateTime::now_utc();
    let created = store.put_role(role("web", "static")).await.unwrap();
    assert_eq!(created.name, "web");
    assert_eq!(created.spec, role("web", "static").spec);
    assert_eq!(created.revision, 1);
    assert!(before - Duration::microseconds(1) <= created.updated_at);
    store.put_role(role("app", "sts")).await.unwrap();
    // Byte order, as for instances: "Z" sorts before "a".
    store.put_role(role("Zeta", "generated")).await.unwrap();
    let names: Vec<String> = store
        .list_roles()
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.name)
        .collect();
    assert_eq!(names, ["Zeta", "app", "web"]);
    assert_eq!(store.get_role("web").await.unwrap(), created);

    let replaced = store.put_role(role("web", "generated")).await.unwrap();
    assert_eq!(replaced.revision, 2);
    assert_eq!(store.get_role("web").await.unwrap(), replaced);
    assert!(replaced.spec.contains("generated"));

    store.delete_role("web").await.unwrap();
    expect_role_not_found(store.get_role("web").await, "web");
    expect_role_not_found(store.delete_role("web").await, "web");
    assert_eq!(store.list_roles().await.unwrap().len(), 2);
    // A role put again after deletion starts over.
    assert_eq!(
        store
            .put_role(role("web", "static"))
            .await
            .unwrap()
            .revision,
        1
    );
}

fn association(association_id: &str, namespace: &str, service_account: &str) -> AssociationWrite {
    AssociationWrite {
        association_id: association_id.to_owned(),
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        spec: format!(r#"{{"role": "{namespace}-{service_account}"}}"#),
    }
}

/// Associations are created, listed by namespace and service account, replaced with the next
/// revision and deleted; a service account has at most one, and an id is never given twice.
pub async fn associations_round_trip(store: Arc<dyn Store>) {
    assert!(store.list_associations().await.unwrap().is_empty());
    let before = OffsetDateTime::now_utc();
    let created = store
        .create_association(association("a-1", "shop", "cart"))
        .await
        .unwrap();
    assert_eq!(created.revision, 1);
    assert_eq!(created.spec, association("a-1", "shop", "cart").spec);
    assert!(before - Duration::microseconds(1) <= created.updated_at);
    store
        .create_association(association("a-2", "billing", "cart"))
        .await
        .unwrap();
    store
        .put_association(association("a-3", "shop", "pay"))
        .await
        .unwrap();
    let listed: Vec<(String, String)> = store
        .list_associations()
        .await
        .unwrap()
        .into_iter()
        .map(|record| (record.namespace, record.service_account))
        .collect();
    let pair = |namespace: &str, name: &str| (namespace.to_owned(), name.to_owned());
    assert_eq!(
        listed,
        [
            pair("billing", "cart"),
            pair("shop", "cart"),
            pair("shop", "pay")
        ]
    );

    // One association per service account, whichever write tries a second.
    for attempt in [
        store
            .create_association(association("a-4", "shop", "cart"))
            .await,
        store
            .put_association(association("a-4", "shop", "cart"))
            .await,
        store
            .put_association(association("a-3", "shop", "cart"))
            .await,
    ] {
        match attempt {
            Err(StoreError::Conflict(message)) => {
                assert!(message.contains("shop/cart"), "{message}")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    match store
        .create_association(association("a-1", "web", "front"))
        .await
    {
        Err(StoreError::Conflict(message)) => assert!(message.contains("a-1"), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // A failed write changed nothing.
    assert_eq!(store.list_associations().await.unwrap().len(), 3);

    let mut changed = association("a-1", "shop", "cart");
    changed.spec = r#"{"role": "other"}"#.to_owned();
    let replaced = store.put_association(changed.clone()).await.unwrap();
    assert_eq!(replaced.revision, 2);
    let stored = store.list_associations().await.unwrap();
    let found = stored
        .iter()
        .find(|record| record.association_id == "a-1")
        .unwrap();
    assert_eq!(found, &replaced);
    assert_eq!(found.spec, changed.spec);

    store.delete_association("a-1").await.unwrap();
    match store.delete_association("a-1").await {
        Err(StoreError::AssociationNotFound(id)) => assert_eq!(id, "a-1"),
        other => panic!("expected AssociationNotFound, got {other:?}"),
    }
    // Its service account is free again.
    store
        .create_association(association("a-5", "shop", "cart"))
        .await
        .unwrap();
    assert_eq!(store.list_associations().await.unwrap().len(), 3);
}

/// Roles and instances are separate: an instance named like a role is another thing.
pub async fn roles_and_instances_are_separate(store: Arc<dyn Store>) {
    store.put_role(role("i-a", "static")).await.unwrap();
    expect_not_found(store.get_instance("i-a").await, "i-a");
    store
        .create_instance(write("i-a", &["10.0.0.1"]))
        .await
        .unwrap();
    store.delete_instance("i-a").await.unwrap();
    assert_eq!(store.get_role("i-a").await.unwrap().revision, 1);
    store.delete_role("i-a").await.unwrap();
    assert!(store.list_instances().await.unwrap().is_empty());
}

/// Concurrent puts of one role: none is lost, every revision is used once.
pub async fn concurrent_role_puts_serialise(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.put_role(role("app", "generated")).await })
        })
        .collect();
    let mut revisions = HashSet::new();
    for task in tasks {
        revisions.insert(task.await.unwrap().unwrap().revision);
    }
    assert_eq!(revisions, (1..=8).collect::<HashSet<i64>>());
}

/// A secret is written once: later writers get the first value back, even when they race.
pub async fn secrets_are_written_once(store: Arc<dyn Store>) {
    assert_eq!(store.get_secret("token-key").await.unwrap(), None);
    let first = vec![0u8, 1, 2, 255];
    assert_eq!(
        store
            .create_secret("token-key", first.clone())
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store.create_secret("token-key", vec![9; 8]).await.unwrap(),
        first
    );
    assert_eq!(store.get_secret("token-key").await.unwrap(), Some(first));
    assert_eq!(store.get_secret("identity").await.unwrap(), None);

    let racers: Vec<_> = (0..8u8)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move { store.create_secret("identity", vec![index; 32]).await })
        })
        .collect();
    let mut winners = HashSet::new();
    for racer in racers {
        winners.insert(racer.await.unwrap().unwrap());
    }
    assert_eq!(winners.len(), 1, "every racer got the one stored value");
    let stored = store.get_secret("identity").await.unwrap().unwrap();
    assert!(winners.contains(&stored));
}

/// A write of task `task_id` on `host_id` (if any) calling from `addresses`.
fn task(task_id: &str, host_id: Option<&str>, addresses: &[&str]) -> TaskWrite {
    TaskWrite {
        task_id: task_id.to_owned(),
        host_id: host_id.map(str::to_owned),
        addresses: ips(addresses),
        spec: format!(r#"{{"task": {{"task-id": "{task_id}"}}}}"#),
    }
}

#[track_caller]
fn expect_task_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, task_id: &str) {
    match result {
        Err(StoreError::TaskNotFound(missing)) => assert_eq!(missing, task_id),
        other => panic!("expected TaskNotFound({task_id:?}), got {other:?}"),
    }
}

/// Tasks are created, read, listed by id and by host, replaced with the next revision (and
/// refused at a stale one), upserted only on their own host, and deleted; their addresses are
/// unique among tasks, canonical, and released on delete.
pub async fn tasks_round_trip(store: Arc<dyn Store>) {
    assert!(store.list_tasks().await.unwrap().is_empty());
    expect_task_not_found(store.get_task("t1").await, "t1");
    let before = OffsetDateTime::now_utc();
    let written = task("t2", Some("hv-1"), &["10.1.0.2", "::ffff:10.1.0.3"]);
    let created = store.create_task(written.clone()).await.unwrap();
    assert_eq!(created.task_id, "t2");
    assert_eq!(created.host_id.as_deref(), Some("hv-1"));
    assert_eq!(created.addresses, ips(&["10.1.0.2", "10.1.0.3"]));
    assert_eq!(created.spec, written.spec);
    assert_eq!(created.revision, 1);
    assert!(before - Duration::microseconds(1) <= created.updated_at);
    assert_eq!(store.get_task("t2").await.unwrap(), created);

    expect_conflict(store.create_task(task("t2", None, &[])).await, &["t2"]);
    expect_conflict(
        store.create_task(task("t1", None, &["10.1.0.3"])).await,
        &["10.1.0.3"],
    );
    store
        .create_task(task("t1", Some("hv-2"), &[]))
        .await
        .unwrap();
    let listed: Vec<String> = store
        .list_tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.task_id)
        .collect();
    assert_eq!(listed, ["t1", "t2"]);
    let on_hv1 = store.list_host_tasks("hv-1").await.unwrap();
    assert_eq!(on_hv1, vec![created.clone()]);

    let updated = store
        .update_task(task("t2", Some("hv-2"), &["10.1.0.4"]), Some(1))
        .await
        .unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.addresses, ips(&["10.1.0.4"]));
    expect_conflict(
        store
            .update_task(task("t2", Some("hv-2"), &[]), Some(1))
            .await,
        &["t2", "revision 2"],
    );
    expect_task_not_found(store.update_task(task("t9", None, &[]), None).await, "t9");
    assert!(store.list_host_tasks("hv-1").await.unwrap().is_empty());
    // The released address is free again.
    store
        .update_task(task("t1", Some("hv-2"), &["10.1.0.2"]), None)
        .await
        .unwrap();

    // Upsert: creates, replaces on its own host, refuses another host's task.
    assert_eq!(
        store
            .upsert_task(task("t3", None, &[]))
            .await
            .unwrap()
            .revision,
        1
    );
    assert_eq!(
        store
            .upsert_task(task("t3", None, &["10.1.0.9"]))
            .await
            .unwrap()
            .revision,
        2
    );
    expect_conflict(store.upsert_task(task("t2", None, &[])).await, &["t2"]);

    store.delete_task("t2").await.unwrap();
    expect_task_not_found(store.get_task("t2").await, "t2");
    expect_task_not_found(store.delete_task("t2").await, "t2");
    store
        .create_task(task("t4", None, &["10.1.0.4"]))
        .await
        .unwrap();
}

/// Tasks and instances are apart: one id or one address may be an instance's and a task's.
pub async fn tasks_and_instances_are_separate(store: Arc<dyn Store>) {
    store
        .create_instance(write("x-1", &["10.2.0.1"]))
        .await
        .unwrap();
    store
        .create_task(task("x-1", None, &["10.2.0.1"]))
        .await
        .unwrap();
    store.delete_task("x-1").await.unwrap();
    assert_eq!(store.get_instance("x-1").await.unwrap().revision, 1);
    assert!(store.list_tasks().await.unwrap().is_empty());
    assert_eq!(ids(&store).await, ["x-1"]);
}

/// Generates one test per chapter, each on a fresh store from `$fixture` (an async fn returning
/// a `crate::Fixture`).
macro_rules! conformance {
    ($fixture:path) => {
        crate::story::conformance!(@chapters $fixture;
            empty_store,
            create_and_get,
            instance_without_addresses,
            duplicate_id_conflicts,
            address_taken_conflicts,
            addresses_are_canonical,
            address_order_and_repeats,
            list_is_ordered_by_id,
            host_listing,
            update_and_revisions,
            update_address_conflict_changes_nothing,
            released_addresses_can_be_reused,
            upsert_creates_then_replaces,
            upsert_keeps_to_its_host,
            delete_and_recreate,
            concurrent_claims_have_one_winner,
            concurrent_updates_have_one_winner,
            concurrent_writes_serialise,
            roles_round_trip,
            associations_round_trip,
            roles_and_instances_are_separate,
            concurrent_role_puts_serialise,
            secrets_are_written_once,
            tasks_round_trip,
            tasks_and_instances_are_separate,
        );
    };
    (@chapters $fixture:path; $($chapter:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $chapter() {
                let fixture = $fixture().await;
                crate::story::$chapter(fixture.store.clone()).await;
            }
        )*
    };
}
pub(crate) use conformance;
