//! Fleet mode: three `imds serve` processes as three hosts on one PostgreSQL database (a private
//! server the test starts and stops). Changes made through any host's control API reach the
//! host serving the instance; an instance moves between hosts with its token still valid; the
//! hosts keep answering while the database is down and catch up when it is back.
//!
//! Network partitions: PostgreSQL in a network namespace of its own, a host in another, and a
//! router namespace between them that stops forwarding (this kernel has no netem or iptables;
//! a router with forwarding off drops packets both ways without a reset, as a partition does).
//! A second host beside PostgreSQL makes changes meanwhile. The partitioned host notices, says
//! so (log, metrics), answers writes 503 within its bound, and serves every change made meanwhile
//! once the network is back, also after PostgreSQL gave up on its connections.
//!
//! Propagation is awaited by polling, never by a time limit on it: `bench/fleet` measures it.

use std::fs::File;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use imds_store::test_server::{self, TestDatabase, TestServer};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

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
    fleet_with(postgres, n_hosts, &[])
}

/// `fleet`, each host also given `extra` arguments.
fn fleet_with(postgres: &TestServer, n_hosts: usize, extra: &[&str]) -> Fleet {
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
                .args(extra)
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

/// The database side's subnet: the router is `.1`, PostgreSQL `.2`.
const DATABASE_ADDRESS: &str = "10.201.1.2";
/// The hosts' side: the router is `.1`, the partitioned host `.2`.
const HOSTS_ADDRESS: &str = "10.201.2.2";

/// Bounds short enough for a test: a store operation gives up after 2 s; the feed asks after
/// 0.5 s of silence and waits 1 s for the answer.
const SHORT_BOUNDS: [&str; 6] = [
    "--store-timeout",
    "2",
    "--store-heartbeat-interval",
    "0.5",
    "--store-heartbeat-timeout",
    "1",
];

/// Three network namespaces: `database` and `hosts`, joined through `router`; removed on drop.
struct Network {
    database: String,
    router: String,
    hosts: String,
}

impl Network {
    /// Makes the namespaces, named after this process and `tag`, and routes between them.
    fn new(tag: &str) -> Network {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let suffix = format!(
            "{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let network = Network {
            database: format!("imds-db-{suffix}"),
            router: format!("imds-rt-{suffix}"),
            hosts: format!("imds-hv-{suffix}"),
        };
        for name in [&network.database, &network.router, &network.hosts] {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        // Each side's interface is `rt0`, facing the router; the router's are `db0` and `hv0`.
        for (side, router_end, router_address, side_address) in [
            (&network.database, "db0", "10.201.1.1/24", "10.201.1.2/24"),
            (&network.hosts, "hv0", "10.201.2.1/24", "10.201.2.2/24"),
        ] {
            ip(&[
                "-n",
                &network.router,
                "link",
                "add",
                router_end,
                "type",
                "veth",
                "peer",
                "name",
                "rt0",
                "netns",
                side,
            ]);
            ip(&[
                "-n",
                &network.router,
                "addr",
                "add",
                router_address,
                "dev",
                router_end,
            ]);
            ip(&["-n", &network.router, "link", "set", router_end, "up"]);
            ip(&["-n", side, "addr", "add", side_address, "dev", "rt0"]);
            ip(&["-n", side, "link", "set", "rt0", "up"]);
            let gateway = router_address.trim_end_matches("/24");
            ip(&["-n", side, "route", "add", "default", "via", gateway]);
        }
        network.forward(true);
        network
    }

    /// Cuts the route: the router drops every packet between the sides, silently.
    fn partition(&self) {
        self.forward(false);
    }

    /// Restores the route.
    fn heal(&self) {
        self.forward(true);
    }

    fn forward(&self, on: bool) {
        let setting = format!("net.ipv4.ip_forward={}", u8::from(on));
        let status = Command::new("ip")
            .args(["netns", "exec", &self.router, "sysctl", "-qw", &setting])
            .status()
            .unwrap();
        assert!(status.success(), "sysctl {setting} in {}", self.router);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for name in [&self.hosts, &self.router, &self.database] {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
}

#[track_caller]
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {args:?} (these tests need root): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `work` on a thread inside the network namespace `name`: its sockets, and the processes
/// it starts, are that namespace's.
fn inside<T: Send>(name: &str, work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let namespace = File::open(format!("/run/netns/{name}")).unwrap();
                nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                work()
            })
            .join()
            .unwrap()
    })
}

/// PostgreSQL in `network.database`, host `hv-1` in `network.hosts` (the one partitioned), and
/// host `hv-2` beside PostgreSQL, which keeps reaching it.
///
/// Fields drop in order: the hosts, then their database, then the server.
struct PartitionedFleet {
    partitioned: Server,
    beside_database: Server,
    database: TestDatabase,
    postgres: TestServer,
    _key_dir: tempfile::TempDir,
}

impl PartitionedFleet {
    fn start(network: &Network) -> PartitionedFleet {
        let postgres = TestServer::builder()
            .netns(&network.database)
            .address(DATABASE_ADDRESS.parse::<IpAddr>().unwrap())
            .start()
            .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        // Made over the Unix socket, which every namespace reaches; the hosts use TCP.
        let database = runtime
            .block_on(test_server::create_database(
                &postgres.unix_socket_url("postgres"),
            ))
            .unwrap();
        let url = postgres.url(database.name());
        let key_dir = tempfile::tempdir().unwrap();
        let key_file = key_dir.path().join("store-key");
        std::fs::write(&key_file, "Xw4qnUw7Gg+ejXxrWk8+LRwLCgn459bFtKOSgXBhUkM=\n").unwrap();
        let host = |namespace: &str, host_id: &str| {
            server()
                .netns(namespace)
                .args(&[
                    "--store",
                    &url,
                    "--host-id",
                    host_id,
                    "--store-key-file",
                    key_file.to_str().unwrap(),
                ])
                .args(&SHORT_BOUNDS)
                .start()
        };
        let partitioned = host(&network.hosts, "hv-1");
        let beside_database = host(&network.database, "hv-2");
        PartitionedFleet {
            partitioned,
            beside_database,
            database,
            postgres,
            _key_dir: key_dir,
        }
    }

    /// How many sessions PostgreSQL holds for the partitioned host (by its address).
    fn sessions_of_the_partitioned_host(&self) -> i64 {
        let url = self.postgres.unix_socket_url(self.database.name());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut connection = PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE client_addr = $1::inet")
                .bind(HOSTS_ADDRESS)
                .fetch_one(&mut connection)
                .await
                .unwrap()
        })
    }
}

/// Registers `INSTANCE` on the partitioned host through the one beside the database, and waits
/// until it is served.
fn register_on_the_partitioned_host(network: &Network, fleet: &PartitionedFleet) {
    let created = inside(&network.database, || {
        fleet.beside_database.admin(
            "POST",
            "/v1/instances?host-id=hv-1",
            Some(
                &json!({"instance-id": INSTANCE, "addresses": [SOURCE], "instance-type": "m5.large"})
                    .to_string(),
            ),
        )
    });
    assert_eq!(created.status, 201, "{created:?}");
    inside(&network.hosts, || {
        eventually("the partitioned host serves the instance", || {
            answer(&fleet.partitioned, SOURCE, "/latest/meta-data/instance-id") == INSTANCE
        })
    });
}

/// A change of `INSTANCE` made beside the database: it succeeds whatever the partition does.
fn change_beside_the_database(network: &Network, fleet: &PartitionedFleet, patch: Value) {
    let changed = inside(&network.database, || {
        fleet.beside_database.admin(
            "PATCH",
            &format!("/v1/instances/{INSTANCE}"),
            Some(&patch.to_string()),
        )
    });
    assert_eq!(changed.status, 200, "{changed:?}");
}

/// The value of the metric `name` in `host`'s `/metrics` (its line `name value`), if there.
fn metric(host: &Server, name: &str) -> Option<f64> {
    let response = host.admin("GET", "/metrics", None);
    assert_eq!(response.status, 200, "{response:?}");
    response.text().lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Whether `host`'s log has a line containing `text`.
fn logged(host: &Server, text: &str) -> bool {
    host.log().iter().any(|line| line.contains(text))
}

#[test]
fn a_partitioned_host_notices_and_serves_what_changed_once_healed() {
    let network = Network::new("short");
    let fleet = PartitionedFleet::start(&network);
    register_on_the_partitioned_host(&network, &fleet);
    let host = &fleet.partitioned;
    inside(&network.hosts, || {
        assert_eq!(metric(host, "imds_store_feed_connected"), Some(1.0));
        assert_eq!(
            metric(host, "imds_store_feed_reconnections_total"),
            Some(0.0)
        );
        assert!(metric(host, "imds_store_feed_contact_age_seconds").is_some());
    });

    network.partition();
    inside(&network.hosts, || {
        eventually("the partitioned host's metrics show its feed lost", || {
            metric(host, "imds_store_feed_connected") == Some(0.0)
        })
    });
    assert!(logged(host, "Change feed lost its connection"));
    // A write through the partitioned host answers 503 on its bound instead of hanging, and
    // guests are still served from memory.
    inside(&network.hosts, || {
        let refused = host.admin(
            "PATCH",
            &format!("/v1/instances/{INSTANCE}"),
            Some(&json!({"instance-type": "t3.large"}).to_string()),
        );
        assert_eq!(refused.status, 503, "{refused:?}");
        assert_eq!(json_of(&refused)["Code"], "StoreUnavailable");
        assert_eq!(
            answer(host, SOURCE, "/latest/meta-data/instance-type"),
            "m5.large"
        );
    });
    // Changed meanwhile on PostgreSQL's side of the partition.
    change_beside_the_database(
        &network,
        &fleet,
        json!({"instance-type": "m5.xlarge", "tags": {"during": "partition"}}),
    );

    network.heal();
    inside(&network.hosts, || {
        eventually(
            "the healed host serves the change made during the partition",
            || answer(host, SOURCE, "/latest/meta-data/instance-type") == "m5.xlarge",
        );
        let described = json_of(&host.admin("GET", &format!("/v1/instances/{INSTANCE}"), None));
        assert_eq!(described["Revision"], 2, "the refused write stored nothing");
    });
    eventually("the host says its feed is back", || {
        logged(host, "Change feed is back")
    });
    inside(&network.hosts, || {
        eventually("the host's metrics show its feed back", || {
            metric(host, "imds_store_feed_connected") == Some(1.0)
        });
        let reconnections = metric(host, "imds_store_feed_reconnections_total").unwrap();
        assert!(reconnections >= 1.0, "{reconnections}");
    });
}

#[test]
fn a_host_catches_up_after_a_partition_postgresql_gave_up_on() {
    let network = Network::new("long");
    let fleet = PartitionedFleet::start(&network);
    register_on_the_partitioned_host(&network, &fleet);
    let host = &fleet.partitioned;
    assert!(
        fleet.sessions_of_the_partitioned_host() > 0,
        "the host's feed holds a session"
    );

    network.partition();
    // Long enough that PostgreSQL's side gives up on every session of the host (the host asks
    // for TCP keepalives and a user timeout on them).
    eventually("PostgreSQL drops the partitioned host's sessions", || {
        fleet.sessions_of_the_partitioned_host() == 0
    });
    change_beside_the_database(&network, &fleet, json!({"instance-type": "c5.large"}));
    let role_set = inside(&network.database, || {
        fleet.beside_database.admin(
            "PATCH",
            &format!("/v1/instances/{INSTANCE}"),
            Some(r##"{"user-data": "#!/bin/sh\necho partition\n"}"##),
        )
    });
    assert_eq!(role_set.status, 200, "{role_set:?}");

    network.heal();
    inside(&network.hosts, || {
        eventually("the healed host serves every change made meanwhile", || {
            answer(host, SOURCE, "/latest/meta-data/instance-type") == "c5.large"
                && answer(host, SOURCE, "/latest/user-data") == "#!/bin/sh\necho partition\n"
        });
        // And its own writes go through again.
        eventually("a write through the healed host succeeds", || {
            host.admin(
                "PATCH",
                &format!("/v1/instances/{INSTANCE}"),
                Some(&json!({"instance-type": "c5.xlarge"}).to_string()),
            )
            .status
                == 200
        });
    });
    inside(&network.database, || {
        eventually("the other host sees the healed host's write", || {
            json_of(
                &fleet
                    .beside_database
                    .admin("GET", &format!("/v1/instances/{INSTANCE}"), None),
            )["InstanceType"]
                == "c5.xlarge"
        });
    });
    assert!(
        fleet.sessions_of_the_partitioned_host() > 0,
        "the host reconnected"
    );
}

#[test]
fn a_task_registered_through_one_host_for_another_is_served_there_until_deregistered() {
    let postgres = TestServer::start().unwrap();
    let fleet = fleet_with(&postgres, 2, &["--container-listen", "127.0.0.1:0"]);
    let [host_1, host_2] = &fleet.hosts[..] else {
        unreachable!()
    };
    let container_get = |host: &Server, path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n");
        crate::support::send_raw(host.container_address.unwrap(), request.as_bytes())
    };
    let task = json!({
        "family": "fleet",
        "role": "fleet-task",
        "credentials-id": "fleet-credentials",
        "containers": [{"name": "web", "endpoint-id": "fleet-endpoint"}],
    })
    .to_string();
    let created = host_1.admin("POST", "/v1/tasks?host-id=hv-2", Some(&task));
    assert_eq!(created.status, 201, "{created:?}");
    let created = json_of(&created);
    assert_eq!(created["HostId"], "hv-2");
    let task_id = created["TaskId"].as_str().unwrap().to_owned();
    eventually("host 2 serves the task registered through host 1", || {
        container_get(host_2, "/v4/fleet-endpoint").status == 200
    });
    let document = json_of(&container_get(host_2, "/v4/fleet-endpoint/task"));
    assert_eq!(document["TaskARN"], created["TaskARN"]);
    assert_eq!(
        container_get(host_2, "/v2/credentials/fleet-credentials").status,
        200
    );
    // Host 1 does not serve it: it is host 2's.
    assert_eq!(container_get(host_1, "/v4/fleet-endpoint").status, 404);
    let listed = json_of(&host_2.admin("GET", "/v1/tasks", None));
    assert_eq!(listed["Tasks"][0]["TaskId"], task_id.as_str());

    let removed = host_1.admin("DELETE", &format!("/v1/tasks/{task_id}"), None);
    assert_eq!(removed.status, 204, "{removed:?}");
    eventually("host 2 drops the task deregistered through host 1", || {
        container_get(host_2, "/v2/credentials/fleet-credentials").status == 400
    });
    assert_eq!(container_get(host_2, "/v4/fleet-endpoint").status, 404);
    let again = host_1.admin("DELETE", &format!("/v1/tasks/{task_id}"), None);
    assert_eq!(again.status, 404, "{again:?}");
}

#[test]
fn a_pod_identity_association_made_through_one_host_is_served_by_every_host_until_deleted() {
    let postgres = TestServer::start().unwrap();
    let fleet = fleet_with(&postgres, 2, &["--pod-identity-listen", "127.0.0.1:0"]);
    let [host_1, host_2] = &fleet.hosts[..] else {
        unreachable!()
    };
    // A token host 2's endpoint accepts, minted with its own key.
    let minted = host_2.admin(
        "POST",
        "/v1/pod-identity/service-account-tokens",
        Some(r#"{"Namespace": "shop", "ServiceAccount": "cart"}"#),
    );
    assert_eq!(minted.status, 201, "{minted:?}");
    let token = json_of(&minted)["Token"].as_str().unwrap().to_owned();
    let pod_credentials = |host: &Server| {
        let request = format!(
            "GET /v1/credentials HTTP/1.1\r\nHost: 169.254.170.23\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
        );
        crate::support::send_raw(host.pod_identity_addresses[0], request.as_bytes()).status
    };
    assert_eq!(pod_credentials(host_2), 404, "no association yet");

    let created = host_1.admin(
        "POST",
        "/v1/pod-identity/associations",
        Some(r#"{"Namespace": "shop", "ServiceAccount": "cart", "Role": "fleet-pod"}"#),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let association_id = json_of(&created)["AssociationId"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("host 2 serves the association made through host 1", || {
        pod_credentials(host_2) == 200
    });
    let listed = json_of(&host_2.admin("GET", "/v1/pod-identity/associations", None));
    assert_eq!(
        listed["Associations"][0]["AssociationId"],
        association_id.as_str()
    );
    assert_eq!(listed["Associations"][0]["Role"], "fleet-pod");
    // Host 2 refuses a second association for the service account: the store holds one.
    let taken = host_2.admin(
        "POST",
        "/v1/pod-identity/associations",
        Some(r#"{"Namespace": "shop", "ServiceAccount": "cart", "Role": "other"}"#),
    );
    assert_eq!(taken.status, 409, "{taken:?}");

    let removed = host_1.admin(
        "DELETE",
        &format!("/v1/pod-identity/associations/{association_id}"),
        None,
    );
    assert_eq!(removed.status, 204, "{removed:?}");
    eventually(
        "host 2 drops the association deleted through host 1",
        || pod_credentials(host_2) == 404,
    );
}
