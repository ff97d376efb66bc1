//! The control plane never waits on the outside world: with a role's STS endpoint silent (a
//! loopback listener whose backlog accepts connections that nobody ever answers), reads of the
//! control API, writes to other instances and to the same instance, start-up and guest requests
//! all go on. Each test proves ordering (this answered while that was still waiting), never
//! speed: the silent fetch is given minutes, far longer than the test runs.

use std::{
    net::TcpListener,
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::support::{server, Response, Server};

const A: &str = "i-0aaaaaaaaaaaaaaaa";
const B: &str = "i-0bbbbbbbbbbbbbbbb";
const C: &str = "i-0cccccccccccccccc";

/// Ten minutes: far longer than any of these tests runs, so a fetch from the silent endpoint is
/// certainly still waiting whenever the test looks.
const MINUTES: &str = "600000";

fn json_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|_| panic!("not JSON: {response:?}"))
}

/// A listener that accepts (the kernel completes connections into its backlog) and never
/// answers.
fn silent_sts() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    (listener, endpoint)
}

/// The `[[roles]]` entry of role `slow`, an `sts` role on `endpoint`.
fn slow_role(endpoint: &str) -> String {
    format!(
        "[[roles]]\nname = \"slow\"\nprovider = \"sts\"\n\
         role-arn = \"arn:aws:iam::123456789012:role/slow\"\n\
         endpoint-url = \"{endpoint}\"\nregion = \"us-east-1\"\n"
    )
}

/// A server whose STS waits are `sts_timeout_ms` and whose writes wait `patience_ms` for their
/// change to be served, with the host source credentials the `sts` provider needs.
fn start(config: &str, sts_timeout_ms: &str, patience_ms: &str) -> Server {
    server()
        .config(config)
        .args(&[
            "--sts-attempt-timeout-ms",
            sts_timeout_ms,
            "--sts-timeout-ms",
            sts_timeout_ms,
            "--apply-patience-ms",
            patience_ms,
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTSOURCEKEY000")
        .env("AWS_SECRET_ACCESS_KEY", "host-secret")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .start()
}

/// Registers `instance_id` at `address` with the default (generated) role.
fn register(server: &Server, instance_id: &str, address: &str) {
    let created = server.admin(
        "POST",
        "/v1/instances",
        Some(&json!({"instance-id": instance_id, "addresses": [address]}).to_string()),
    );
    assert_eq!(created.status, 201, "{created:?}");
}

/// Polls the control API until `instance_id` shows `revision`, answering each time.
fn wait_for_revision(server: &Server, instance_id: &str, revision: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let described = server.admin("GET", &format!("/v1/instances/{instance_id}"), None);
        assert_eq!(described.status, 200, "{described:?}");
        let json = json_of(&described);
        if json["Revision"] == revision {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "never reached revision {revision}: {json}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_control_api_answers_while_a_write_waits_for_a_silent_sts() {
    let (_sts, endpoint) = silent_sts();
    // The writes wait as long as STS may take: the first one is certainly still waiting at the
    // end of the test.
    let server = start(&slow_role(&endpoint), MINUTES, MINUTES);
    register(&server, A, "127.0.0.2");
    register(&server, B, "127.0.0.3");

    // The write that waits: A gets the role whose STS never answers.
    let (done, finished) = mpsc::channel();
    let admin_address = server.admin_address;
    let token = server.admin_token();
    let waiting = std::thread::spawn(move || {
        let body = r#"{"iam": {"role-name": "slow"}}"#;
        let request = format!(
            "PATCH /v1/instances/{A} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = std::net::TcpStream::connect(admin_address).unwrap();
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let response = crate::support::read_response(&mut stream);
        let _ = done.send(());
        response
    });
    // Stored and published: from here on the write only waits for STS.
    let pending = wait_for_revision(&server, A, 2);
    assert_eq!(pending["MetadataOptions"]["State"], "pending", "{pending}");
    assert_eq!(pending["IamRole"], "slow");

    // Every read answers meanwhile.
    let listing = server.admin("GET", "/v1/instances", None);
    assert_eq!(listing.status, 200, "{listing:?}");
    assert_eq!(json_of(&listing)["Instances"].as_array().unwrap().len(), 3);
    assert_eq!(
        server
            .admin("GET", &format!("/v1/instances/{B}"), None)
            .status,
        200
    );
    let roles = server.admin("GET", "/v1/roles", None);
    assert_eq!(roles.status, 200, "{roles:?}");
    assert_eq!(json_of(&roles)["Roles"][0]["InstanceIds"], json!([A]));
    assert_eq!(
        server
            .admin("GET", &format!("/v1/instances/{A}/events"), None)
            .status,
        200
    );
    let metrics = server.admin("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("imds_instances 3"),
        "{}",
        metrics.text()
    );
    // The instance itself answers as before the change, with its old role.
    let listed = server.request_from(
        "127.0.0.2",
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        &[],
    );
    assert_eq!(listed.text(), "imds-instance-role");

    // A write to another instance completes, applied.
    let changed = server.admin(
        "PATCH",
        &format!("/v1/instances/{B}"),
        Some(r#"{"instance-type": "c5.xlarge"}"#),
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(json_of(&changed)["MetadataOptions"]["State"], "applied");
    assert_eq!(
        server
            .request_from("127.0.0.3", "GET", "/latest/meta-data/instance-type", &[])
            .text(),
        "c5.xlarge"
    );
    // So does another write to the same instance that needs nothing from upstream: it is
    // served at once, and the slow change, should STS ever answer, does not undo it.
    let again = server.admin(
        "PATCH",
        &format!("/v1/instances/{A}"),
        Some(r#"{"iam": {"role-name": "fast"}, "instance-type": "m5.2xlarge"}"#),
    );
    assert_eq!(again.status, 200, "{again:?}");
    let again = json_of(&again);
    assert_eq!(again["Revision"], 3);
    assert_eq!(again["MetadataOptions"]["State"], "applied");
    assert_eq!(
        server
            .request_from(
                "127.0.0.2",
                "GET",
                "/latest/meta-data/iam/security-credentials/",
                &[]
            )
            .text(),
        "fast"
    );

    // All of that happened while the first write was still waiting for STS.
    assert!(
        finished.try_recv().is_err(),
        "the first write answered before the test ended"
    );
    drop(server);
    let _ = waiting.join();
}

#[test]
fn a_write_whose_credentials_do_not_come_answers_pending_and_serves_the_previous_version() {
    let (_sts, endpoint) = silent_sts();
    // STS may take minutes; the writes wait a fifth of a second.
    let server = start(&slow_role(&endpoint), MINUTES, "200");
    register(&server, A, "127.0.0.2");

    let changed = server.admin(
        "PATCH",
        &format!("/v1/instances/{A}"),
        Some(r#"{"iam": {"role-name": "slow"}, "instance-type": "c5.large"}"#),
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    let changed = json_of(&changed);
    assert_eq!(changed["MetadataOptions"]["State"], "pending");
    assert_eq!(changed["Revision"], 2);
    // Until the role's credentials come, the previous version is served whole.
    for (path, expect) in [
        (
            "/latest/meta-data/iam/security-credentials/",
            "imds-instance-role",
        ),
        ("/latest/meta-data/instance-type", "m5.large"),
    ] {
        let response = server.request_from("127.0.0.2", "GET", path, &[]);
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.text(), expect, "{path}");
    }

    // A new instance with that role has no previous version: it answers at once, without the
    // role's credentials (not listed, 404), as EC2 does while a profile is being associated.
    let created = server.admin(
        "POST",
        "/v1/instances",
        Some(
            &json!({"instance-id": C, "addresses": ["127.0.0.4"], "iam": {"role-name": "slow"}})
                .to_string(),
        ),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(json_of(&created)["MetadataOptions"]["State"], "pending");
    assert_eq!(
        server
            .request_from("127.0.0.4", "GET", "/latest/meta-data/instance-id", &[])
            .text(),
        C
    );
    let meta_data = server
        .request_from("127.0.0.4", "GET", "/latest/meta-data/", &[])
        .text();
    assert!(!meta_data.lines().any(|line| line == "iam/"), "{meta_data}");
    assert_eq!(
        server
            .request_from(
                "127.0.0.4",
                "GET",
                "/latest/meta-data/iam/security-credentials/",
                &[]
            )
            .status,
        404
    );
}

#[test]
fn start_up_serves_at_once_while_a_silent_sts_holds_the_credentials() {
    let (_sts, endpoint) = silent_sts();
    let mut config = slow_role(&endpoint);
    for (instance_id, address) in [(A, "127.0.0.2"), (B, "127.0.0.3"), (C, "127.0.0.4")] {
        config.push_str(&format!(
            "[[instances]]\ninstance-id = \"{instance_id}\"\naddresses = [\"{address}\"]\n\
             [instances.iam]\nrole-name = \"slow\"\n"
        ));
    }
    // `start` returns once the server logs `Serving.`; STS may take ten minutes.
    let server = start(&config, MINUTES, "200");
    for (instance_id, address) in [(A, "127.0.0.2"), (B, "127.0.0.3"), (C, "127.0.0.4")] {
        let answered = server.request_from(address, "GET", "/latest/meta-data/instance-id", &[]);
        assert_eq!(answered.text(), instance_id);
        let credentials = server.request_from(
            address,
            "GET",
            "/latest/meta-data/iam/security-credentials/",
            &[],
        );
        assert_eq!(credentials.status, 404, "{credentials:?}");
    }
    let listing = json_of(&server.admin("GET", "/v1/instances", None));
    let instances = listing["Instances"].as_array().unwrap();
    assert_eq!(instances.len(), 4, "{listing}");
    for instance in instances {
        let expect = if instance["IamRole"] == "slow" {
            "pending"
        } else {
            "applied"
        };
        assert_eq!(instance["MetadataOptions"]["State"], expect, "{instance}");
    }
    assert_eq!(server.admin("GET", "/metrics", None).status, 200);
    assert_eq!(server.admin("GET", "/v1/roles", None).status, 200);
}
