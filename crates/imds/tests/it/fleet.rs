//! Fleet mode: three `imds serve` processes as three hosts on one PostgreSQL database (a private
//! server the test starts and stops). Changes made through any host's control API reach the
//! host serving the instance; an instance moves between hosts with its token still valid; the
//! hosts keep answering while the database is down and catch up when it is back.
//!
//! Propagation is awaited by polling, never by a time limit on it: `bench/fleet` measures it.

use std::time::{Duration, Instant};

use imds_store::test_server::{self, TestDatabase, TestServer};
use serde_json::{json, Value};

use crate::support::{server, Response, Server};

/// Long enough for any machine to apply a change; only a broken feed takes this long.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Hosts on one database, and what must outlive them.
struct Fleet {
    hosts: Vec<Server>,
    _key_dir: tempfile::TempDir,
    _database: TestDatabase,
}

/// Starts `hv-1` ... `hv-N` on a new database of `postgres`, all with the same store key.
fn fleet(postgres: &TestServer, n_hosts: usize) -> Fleet {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime
        .block_on(test_server::create_database(&postgres.url("postgres")))
        .unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("store-key");
    std::fs::write(
        &key_file,
        // 32 bytes, base64 (`openssl rand -base64 32`).
        "Xw4qnUw7Gg+ejXxrWk8+LRwLCgn459bFtKOSgXBhUkM=\n",
    )
    .unwrap();
    let hosts = (1..=n_hosts)
        .map(|index| {
            server()
                .args(&[
                    "--store",
                    &database.url,
                    "--host-id",
                    &format!("hv-{index}"),
                    "--store-key-file",
                    key_file.to_str().unwrap(),
                ])
                .start()
        })
        .collect();
    Fleet {
        hosts,
        _key_dir: key_dir,
        _database: database,
    }
}

fn json_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|_| panic!("not JSON: {response:?}"))
}

/// Polls until `check` holds, or fails naming `what` after `GIVE_UP_AFTER`.
#[track_caller]
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < GIVE_UP_AFTER, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn get(host: &Server, source: &str, path: &str, token: &str) -> Response {
    host.request_from(source, "GET", path, &[("X-aws-ec2-metadata-token", token)])
}

/// The answer to a tokenless GET from `source`, or the status when it is not 200.
fn answer(host: &Server, source: &str, path: &str) -> String {
    let response = host.request_from(source, "GET", path, &[]);
    if response.status == 200 {
        response.text()
    } else {
        format!("status {}", response.status)
    }
}

const INSTANCE: &str = "i-0f1ee7000000000a1";
const SOURCE: &str = "127.0.0.21";

#[test]
fn a_change_through_one_host_is_served_by_another() {
    let postgres = TestServer::start().unwrap();
    let fleet = fleet(&postgres, 3);
    let [host_1, host_2, host_3] = &fleet.hosts[..] else {
        unreachable!()
    };
    let created = host_1.admin(
        "POST",
        "/v1/instances?host-id=hv-3",
        Some(
            &json!({"instance-id": INSTANCE, "addresses": [SOURCE], "instance-type": "m5.large"})
                .to_string(),
        ),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(json_of(&created)["HostId"], "hv-3");
    eventually(
        "host 3 serves the instance registered through host 1",
        || answer(host_3, SOURCE, "/latest/meta-data/instance-id") == INSTANCE,
    );
    assert_eq!(
        answer(host_3, SOURCE, "/latest/meta-data/instance-type"),
        "m5.large"
    );
    // Hosts 1 and 2 do not serve it: their callers get their own default instance, which the
    // start-up's resynchronisation with the store left in place.
    for host in [host_1, host_2] {
        let served = answer(host, SOURCE, "/latest/meta-data/instance-id");
        assert!(served.starts_with("i-") && served != INSTANCE, "{served}");
    }

    // A change through host 2's control API (an instance it does not serve).
    let changed = host_2.admin(
        "PATCH",
        &format!("/v1/instances/{INSTANCE}"),
        Some(&json!({"instance-type": "m5.xlarge", "tags": {"team": "fleet"}}).to_string()),
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(json_of(&changed)["Revision"], 2);
    eventually("host 3 serves the change made through host 2", || {
        answer(host_3, SOURCE, "/latest/meta-data/instance-type") == "m5.xlarge"
    });
    // Host 3 describes it as applied; host 1 sees the stored revision.
    let described = json_of(&host_3.admin("GET", &format!("/v1/instances/{INSTANCE}"), None));
    assert_eq!(described["Revision"], 2);
    assert_eq!(described["HostId"], "hv-3");
    let described = json_of(&host_1.admin("GET", &format!("/v1/instances/{INSTANCE}"), None));
    assert_eq!(described["InstanceType"], "m5.xlarge");

    // Events, user data and metadata options changed through other hosts reach host 3 too.
    let posted = host_1.admin(
        "POST",
        &format!("/v1/instances/{INSTANCE}/events"),
        Some(r#"{"Type": "spot-interruption", "Action": "stop"}"#),
    );
    assert_eq!(posted.status, 201, "{posted:?}");
    eventually(
        "host 3 serves the Spot notice posted through host 1",
        || answer(host_3, SOURCE, "/latest/meta-data/spot/instance-action").contains("\"stop\""),
    );
    let changed = host_2.admin(
        "PATCH",
        &format!("/v1/instances/{INSTANCE}"),
        Some(r##"{"user-data": "#!/bin/sh\necho fleet\n"}"##),
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    eventually("host 3 serves the user data set through host 2", || {
        answer(host_3, SOURCE, "/latest/user-data") == "#!/bin/sh\necho fleet\n"
    });
    let modified = host_1.admin(
        "PUT",
        &format!("/v1/instances/{INSTANCE}/metadata-options"),
        Some(r#"{"HttpTokens": "required"}"#),
    );
    assert_eq!(modified.status, 200, "{modified:?}");
    eventually("host 3 requires tokens once host 1 says so", || {
        answer(host_3, SOURCE, "/latest/meta-data/instance-id") == "status 401"
    });

    // Deregistered through host 1: host 3 stops serving it.
    let deleted = host_1.admin("DELETE", &format!("/v1/instances/{INSTANCE}"), None);
    assert_eq!(deleted.status, 204, "{deleted:?}");
    eventually("host 3 drops the deregistered instance", || {
        answer(host_3, SOURCE, "/latest/meta-data/instance-id") != INSTANCE
    });
}

#[test]
fn an_instance_moves_between_hosts_with_its_token() {
    let postgres = TestServer::start().unwrap();
    let fleet = fleet(&postgres, 3);
    let [host_1, host_2, host_3] = &fleet.hosts[..] else {
        unreachable!()
    };
    let created = host_2.admin(
        "POST",
        "/v1/instances",
        Some(&json!({"instance-id": INSTANCE, "addresses": [SOURCE]}).to_string()),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(json_of(&created)["HostId"], "hv-2");
    let token = host_2.token_from(SOURCE);
    let document_path = "/latest/dynamic/instance-identity/document";
    let on_host_2 = get(host_2, SOURCE, document_path, &token);
    assert_eq!(on_host_2.status, 200, "{on_host_2:?}");
    let signature_on_host_2 = get(
        host_2,
        SOURCE,
        "/latest/dynamic/instance-identity/signature",
        &token,
    );

    // Moved with `imds ctl` through host 1's control API.
    let moved = host_1.ctl_ok(&[
        "--output",
        "json",
        "update-instance",
        "--instance-id",
        INSTANCE,
        "--host-id",
        "hv-3",
    ]);
    let moved: serde_json::Value = serde_json::from_str(&moved).unwrap();
    assert_eq!(moved["HostId"], "hv-3");
    // The client keeps its token: host 3 accepts what host 2 issued.
    eventually("host 3 serves the moved instance to the old token", || {
        let response = get(host_3, SOURCE, "/latest/meta-data/instance-id", &token);
        response.status == 200 && response.text() == INSTANCE
    });
    eventually("host 2 stops serving the moved instance", || {
        let response = get(host_2, SOURCE, "/latest/meta-data/instance-id", &token);
        !(response.status == 200 && response.text() == INSTANCE)
    });
    // The same identity document, signed with the fleet's key: one certificate verifies both.
    let on_host_3 = get(host_3, SOURCE, document_path, &token);
    assert_eq!(on_host_3.text(), on_host_2.text());
    let signature_on_host_3 = get(
        host_3,
        SOURCE,
        "/latest/dynamic/instance-identity/signature",
        &token,
    );
    assert_eq!(signature_on_host_3.text(), signature_on_host_2.text());
    // A host's list shows only what it serves.
    let listed = |host: &Server| -> Vec<String> {
        json_of(&host.admin("GET", "/v1/instances", None))["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|instance| instance["InstanceId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(listed(host_3).contains(&INSTANCE.to_owned()));
    assert!(!listed(host_2).contains(&INSTANCE.to_owned()));
    // Two hosts claiming one address: refused at write time, naming the owner.
    let clash = host_2.admin(
        "POST",
        "/v1/instances",
        Some(&json!({"instance-id": "i-0f1ee7000000000b2", "addresses": [SOURCE]}).to_string()),
    );
    assert_eq!(clash.status, 409, "{clash:?}");
    assert!(clash.text().contains(INSTANCE), "{clash:?}");
}

#[test]
fn hosts_keep_answering_while_the_database_is_down_and_catch_up() {
    let postgres = TestServer::start().unwrap();
    let fleet = fleet(&postgres, 3);
    let [host_1, _host_2, host_3] = &fleet.hosts[..] else {
        unreachable!()
    };
    let created = host_1.admin(
        "POST",
        "/v1/instances?host-id=hv-3",
        Some(
            &json!({"instance-id": INSTANCE, "addresses": [SOURCE], "instance-type": "t3.micro"})
                .to_string(),
        ),
    );
    assert_eq!(created.status, 201, "{created:?}");
    eventually("host 3 serves the instance", || {
        answer(host_3, SOURCE, "/latest/meta-data/instance-id") == INSTANCE
    });
    let token = host_3.token_from(SOURCE);

    postgres.stop().unwrap();
    // Reads never need the database: tokens, metadata, the identity document.
    assert_eq!(
        get(host_3, SOURCE, "/latest/meta-data/instance-type", &token).text(),
        "t3.micro"
    );
    assert_eq!(host_3.token_from(SOURCE).len(), token.len());
    assert_eq!(
        get(
            host_3,
            SOURCE,
            "/latest/dynamic/instance-identity/document",
            &token
        )
        .status,
        200
    );
    // Writes fail with 503 and change nothing.
    for host in [host_1, host_3] {
        let refused = host.admin(
            "PATCH",
            &format!("/v1/instances/{INSTANCE}"),
            Some(&json!({"instance-type": "t3.large"}).to_string()),
        );
        assert_eq!(refused.status, 503, "{refused:?}");
        assert_eq!(json_of(&refused)["Code"], "StoreUnavailable");
    }
    assert_eq!(
        get(host_3, SOURCE, "/latest/meta-data/instance-type", &token).text(),
        "t3.micro"
    );

    postgres.restart().unwrap();
    // The first write after the restart goes through (the pool reconnects), and host 3, whose
    // feed reconnects and resynchronises by itself, serves it.
    let changed = host_1.admin(
        "PATCH",
        &format!("/v1/instances/{INSTANCE}"),
        Some(&json!({"instance-type": "t3.xlarge"}).to_string()),
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(
        json_of(&changed)["Revision"],
        2,
        "the refused writes stored nothing"
    );
    eventually("host 3 serves the change made after the restart", || {
        get(host_3, SOURCE, "/latest/meta-data/instance-type", &token).text() == "t3.xlarge"
    });
    // Host 3 resynchronised after its feed reconnected (the first time was at start-up).
    eventually("host 3 logs a second resynchronisation", || {
        let log = host_3.log();
        log.iter()
            .filter(|line| line.contains("Resynchronised with the store."))
            .count()
            >= 2
            && log.iter().any(|line| line.contains("Change feed"))
    });
}

#[test]
fn host_ids_need_fleet_mode() {
    // The server refuses --host-id without a shared store and its key.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_imds"))
        .args(["serve", "--host-id", "hv-1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--store"), "{stderr}");
    // The control API of a host-mode server refuses a host id: no other host would serve it.
    let host = server().start();
    let refused = host.admin(
        "POST",
        "/v1/instances?host-id=hv-1",
        Some(&json!({"instance-id": INSTANCE, "addresses": [SOURCE]}).to_string()),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.text().contains("fleet mode"), "{refused:?}");
    // A query that does not parse gets the API's JSON error, like every other.
    let malformed = host.admin(
        "POST",
        "/v1/instances?host-id=hv-1&host-id=hv-2",
        Some(&json!({"instance-id": INSTANCE, "addresses": [SOURCE]}).to_string()),
    );
    assert_eq!(malformed.status, 400, "{malformed:?}");
    assert_eq!(json_of(&malformed)["Code"], "InvalidParameterValue");
    // So does `imds ctl` given a host id no server could have.
    let output = host.ctl(&[
        "update-instance",
        "--instance-id",
        INSTANCE,
        "--host-id",
        "hv 1",
    ]);
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("spaces"));
    assert_eq!(
        host.admin("GET", &format!("/v1/instances/{INSTANCE}"), None)
            .status,
        404
    );
}

#[test]
fn a_role_provider_set_through_one_host_reaches_the_others() {
    let postgres = TestServer::start().unwrap();
    let fleet = fleet(&postgres, 2);
    let [host_1, host_2] = &fleet.hosts[..] else {
        unreachable!()
    };
    let created = host_1.admin(
        "POST",
        "/v1/instances?host-id=hv-2",
        Some(
            &json!({"instance-id": INSTANCE, "addresses": [SOURCE], "iam": {"role-name": "app"}})
                .to_string(),
        ),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let credentials_path = "/latest/meta-data/iam/security-credentials/app";
    let access_key = || -> String {
        let response = host_2.request_from(SOURCE, "GET", credentials_path, &[]);
        if response.status != 200 {
            return format!("status {}", response.status);
        }
        json_of(&response)["AccessKeyId"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    eventually("host 2 serves generated credentials", || {
        access_key().starts_with("ASIA")
    });

    let keys_dir = tempfile::tempdir().unwrap();
    let keys = keys_dir.path().join("keys.json");
    std::fs::write(
        &keys,
        r#"{"AccessKeyId": "AKIAFLEETEXAMPLE0001", "SecretAccessKey": "fleet-secret", "Token": "fleet-token"}"#,
    )
    .unwrap();
    host_1.ctl_ok(&[
        "put-role",
        "--role-name",
        "app",
        "--provider",
        "static",
        "--credentials-file",
        keys.to_str().unwrap(),
    ]);
    eventually("host 2 serves the provider set through host 1", || {
        access_key() == "AKIAFLEETEXAMPLE0001"
    });
    let removed = host_1.admin("DELETE", "/v1/roles/app", None);
    assert_eq!(removed.status, 204, "{removed:?}");
    eventually("host 2 goes back to the default provider", || {
        access_key().starts_with("ASIA")
    });
}
