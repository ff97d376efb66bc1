//! Access control and observability (issue #6): lockdown by the caller's uid, per-instance rate
//! limits, the audit log, and request metrics.

use std::{io::Write, net::SocketAddr, process::Command};

use serde_json::Value;

use crate::support::{audit_records, read_response, send_raw, server, Response, Server};

const A: &str = "i-0aaaaaaaaaaaaaaa1";
const B: &str = "i-0bbbbbbbbbbbbbbb2";
const CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials/app";
const EXTENDED_CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials-extended/app";
const IDENTITY_CREDENTIALS: &str =
    "/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance";

/// Users created for one test and deleted when it ends, even when it fails.
struct TestUsers(Vec<String>);

impl TestUsers {
    /// Creates system users named `imds-PID-SUFFIX`, unique to this test process.
    fn create(suffixes: &[&str]) -> TestUsers {
        let mut users = TestUsers(Vec::new());
        for suffix in suffixes {
            let name = format!("imds{}{suffix}", std::process::id());
            let status = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(&name)
                .status()
                .expect("run useradd");
            assert!(status.success(), "useradd {name} failed");
            users.0.push(name);
        }
        users
    }

    fn name(&self, index: usize) -> &str {
        &self.0[index]
    }

    fn uid(&self, index: usize) -> u32 {
        let output = Command::new("id")
            .args(["-u", self.name(index)])
            .output()
            .unwrap();
        String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for TestUsers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("userdel").arg(name).status();
        }
    }
}

/// `curl` run as `user` (`None`: as this process, root); returns the status and body.
fn curl_as(user: Option<&str>, method: &str, url: &str, headers: &[&str]) -> (u16, String) {
    let mut command = match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--", "curl"]);
            command
        }
        None => Command::new("curl"),
    };
    command.args(["-q", "-s", "-m", "10", "-X", method, "-w", "\n%{http_code}"]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.arg(url).output().expect("run curl");
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap_or_else(|_| panic!("curl: {text:?}")),
        body.to_owned(),
    )
}

fn find<'a>(records: &'a [Value], fields: &[(&str, Value)]) -> &'a Value {
    records
        .iter()
        .find(|record| fields.iter().all(|(key, value)| record[*key] == *value))
        .unwrap_or_else(|| panic!("no audit record with {fields:?} in {records:#?}"))
}

fn metrics(server: &Server) -> String {
    let response = server.admin("GET", "/metrics", None);
    assert_eq!(response.status, 200, "{response:?}");
    response.text()
}

#[track_caller]
fn assert_metric(text: &str, line: &str) {
    assert!(
        text.lines().any(|got| got == line),
        "{line} missing from\n{text}"
    );
}

/// Issue #6: root may read credentials, an unprivileged user may read instance-id but not
/// credentials (IMDS or container endpoint), a third user gets nothing. Users are real, made by
/// the test; requests are curl run as each of them.
#[test]
fn issue_6_lockdown_by_user() {
    let users = TestUsers::create(&["reader", "nobody"]);
    let (reader, outsider) = (users.name(0), users.name(1));
    let directory = tempfile::tempdir().unwrap();
    let audit = directory.path().join("audit.jsonl");
    let server = server()
        .config(&format!(
            "[instance]\ninstance-id = \"{A}\"\n[instance.iam]\nrole-name = \"app\"\n\
             [lockdown]\nusers = [\"root\", \"{reader}\"]\ncredential-users = [0]\n\
             [[container-credentials]]\npath = \"/v2/credentials/app\"\nrole = \"app\"\n\
             [audit]\nfile = \"{}\"\n",
            audit.display()
        ))
        .args(&["--container-listen", "127.0.0.1:0"])
        .start();
    let imds = format!("http://{}", server.address());
    let container = format!(
        "http://{}/v2/credentials/app",
        server.container_address.unwrap()
    );
    let ttl = "X-aws-ec2-metadata-token-ttl-seconds: 600";

    // Root: everything.
    let (status, token) = curl_as(None, "PUT", &format!("{imds}/latest/api/token"), &[ttl]);
    assert_eq!(status, 200);
    let with_token = format!("X-aws-ec2-metadata-token: {token}");
    let (status, body) = curl_as(None, "GET", &format!("{imds}{CREDENTIALS}"), &[&with_token]);
    assert_eq!(status, 200, "{body}");
    let served: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = curl_as(None, "GET", &container, &[]);
    assert_eq!(status, 200, "{body}");
    // A client naming its role (AWS_EC2_INSTANCE_PROFILE_NAME) under lockdown: the role on the
    // extended path, and 404 on both paths for another name, as without lockdown.
    let (status, body) = curl_as(
        None,
        "GET",
        &format!("{imds}{EXTENDED_CREDENTIALS}"),
        &[&with_token],
    );
    assert_eq!(status, 200, "{body}");
    for path in [
        "/latest/meta-data/iam/security-credentials-extended/other",
        "/latest/meta-data/iam/security-credentials/other",
    ] {
        let (status, body) = curl_as(None, "GET", &format!("{imds}{path}"), &[&with_token]);
        assert_eq!(status, 404, "{path}: {body}");
    }

    // The reader: metadata yes, credentials no (IMDS paths, listings, identity credentials and
    // the container endpoint).
    let (status, reader_token) = curl_as(
        Some(reader),
        "PUT",
        &format!("{imds}/latest/api/token"),
        &[ttl],
    );
    assert_eq!(status, 200);
    let reader_header = format!("X-aws-ec2-metadata-token: {reader_token}");
    let (status, body) = curl_as(
        Some(reader),
        "GET",
        &format!("{imds}/latest/meta-data/instance-id"),
        &[&reader_header],
    );
    assert_eq!((status, body.as_str()), (200, A));
    for path in [
        CREDENTIALS,
        "/latest/meta-data/iam/security-credentials/",
        EXTENDED_CREDENTIALS,
        "/latest/meta-data/iam/security-credentials-extended/",
        "/latest/meta-data/iam/security-credentials-extended/other",
        IDENTITY_CREDENTIALS,
        "/latest/meta-data/identity-credentials/ec2/security-credentials",
    ] {
        let (status, body) = curl_as(
            Some(reader),
            "GET",
            &format!("{imds}{path}"),
            &[&reader_header],
        );
        assert_eq!(status, 403, "{path}: {body}");
        assert!(!body.contains("SecretAccessKey"));
    }
    let (status, body) = curl_as(Some(reader), "GET", &container, &[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");

    // The outsider: nothing at all.
    let (status, _) = curl_as(
        Some(outsider),
        "PUT",
        &format!("{imds}/latest/api/token"),
        &[ttl],
    );
    assert_eq!(status, 403);
    let (status, body) = curl_as(
        Some(outsider),
        "GET",
        &format!("{imds}/latest/meta-data/instance-id"),
        &[],
    );
    assert_eq!(status, 403);
    assert!(!body.contains(A));
    let (status, _) = curl_as(Some(outsider), "GET", &container, &[]);
    assert_eq!(status, 403);

    // The audit log names who was refused and who got which keys, and nothing secret.
    let records = audit_records(&audit, 13);
    let access_key_id = served["AccessKeyId"].as_str().unwrap();
    let issued = find(
        &records,
        &[
            ("event", "credentials-issued".into()),
            ("endpoint", "imds".into()),
        ],
    );
    assert_eq!(issued["uid"], 0);
    assert_eq!(issued["role"], "app");
    assert_eq!(issued["instance_id"], A);
    assert_eq!(issued["access_key_id"], access_key_id);
    assert!(issued["inode"].as_u64().unwrap() > 0);
    assert!(issued["caller"]
        .as_str()
        .unwrap()
        .parse::<SocketAddr>()
        .is_ok());
    find(
        &records,
        &[
            ("event", "credentials-issued".into()),
            ("endpoint", "container".into()),
            ("uid", 0.into()),
        ],
    );
    let reader_refusal = find(
        &records,
        &[
            ("event", "lockdown-refused".into()),
            ("uid", users.uid(0).into()),
            ("endpoint", "imds".into()),
        ],
    );
    assert_eq!(reader_refusal["reason"], "credentials");
    find(
        &records,
        &[
            ("event", "lockdown-refused".into()),
            ("uid", users.uid(0).into()),
            ("endpoint", "container".into()),
        ],
    );
    let outsider_refusal = find(
        &records,
        &[
            ("event", "lockdown-refused".into()),
            ("uid", users.uid(1).into()),
        ],
    );
    assert_eq!(outsider_refusal["reason"], "endpoint");
    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in [
        served["SecretAccessKey"].as_str().unwrap(),
        served["Token"].as_str().unwrap(),
        &token,
        &reader_token,
    ] {
        assert!(!text.contains(secret), "a secret reached the audit log");
    }

    let text = metrics(&server);
    assert_metric(&text, "imds_lockdown_refusals_total{scope=\"endpoint\"} 3");
    assert_metric(
        &text,
        "imds_lockdown_refusals_total{scope=\"credentials\"} 8",
    );
    let log = server.stop();
    assert!(
        log.iter()
            .any(|line| line.contains("Lockdown refused credentials.")),
        "{log:#?}"
    );
    assert!(log
        .iter()
        .any(|line| line.contains("Lockdown refuses this caller every request.")));
}

/// Without `[lockdown]` every local user is served, and callers are not looked up (the audit
/// log then has no uid).
#[test]
fn without_lockdown_every_user_is_served() {
    let users = TestUsers::create(&["free"]);
    let directory = tempfile::tempdir().unwrap();
    let audit = directory.path().join("audit.jsonl");
    let server = server()
        .config("[instance.iam]\nrole-name = \"app\"\n")
        .args(&["--audit-log", audit.to_str().unwrap()])
        .start();
    let (status, body) = curl_as(
        Some(users.name(0)),
        "GET",
        &format!("http://{}{CREDENTIALS}", server.address()),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    let records = audit_records(&audit, 1);
    assert_eq!(records[0]["event"], "credentials-issued");
    assert!(records[0].get("uid").is_none(), "{records:#?}");
}

/// A noisy instance gets 429 once over its limit, while another instance (its own bucket) is
/// still served.
#[test]
fn throttling_is_per_instance() {
    let server = server()
        .config(&format!(
            "[throttle]\nrequests-per-second = 1\nburst = 2\n\
             [[instances]]\ninstance-id = \"{A}\"\naddresses = [\"127.0.0.2\"]\n\
             [[instances]]\ninstance-id = \"{B}\"\naddresses = [\"127.0.0.3\"]\n"
        ))
        .start();
    let path = "/latest/meta-data/instance-id";
    let statuses: Vec<u16> = (0..20)
        .map(|_| server.request_from("127.0.0.2", "GET", path, &[]).status)
        .collect();
    assert_eq!(statuses[0], 200);
    // One request a second is refilled: twenty in a row cannot all fit.
    let throttled = statuses.iter().filter(|status| **status == 429).count();
    assert!(throttled > 0, "{statuses:?}");
    assert!(statuses.iter().all(|status| [200, 429].contains(status)));
    let response = server.request_from("127.0.0.2", "GET", path, &[]);
    if response.status == 429 {
        assert_eq!(response.header("content-type"), Some("text/html"));
        assert!(response.text().contains("429 - Too Many Requests"));
        assert_eq!(response.header("server"), Some("EC2ws"));
    }
    let other = server.request_from("127.0.0.3", "GET", path, &[]);
    assert_eq!((other.status, other.text().as_str()), (200, B));

    let text = metrics(&server);
    let count = |instance_id: &str| -> u64 {
        let prefix = format!("imds_throttled_requests_total{{instance_id=\"{instance_id}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing from\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(count(A) >= throttled as u64);
    assert_eq!(count(B), 0);
    assert!(text.contains("imds_requests_total{route=\"refused\",status=\"429\",version=\"v1\"}"));
}

/// Every credential hand-out (IMDS role and identity credentials, the container endpoint, the
/// control API's route) and every refused token request is a JSON line of the audit log,
/// without any secret or token.
#[test]
fn audit_log_records_credentials_and_refused_tokens() {
    let directory = tempfile::tempdir().unwrap();
    let audit = directory.path().join("audit.jsonl");
    let server = server()
        .config(&format!(
            "[instance]\ninstance-id = \"{A}\"\n[instance.iam]\nrole-name = \"app\"\n\
             [[container-credentials]]\npath = \"/v2/credentials/app\"\nrole = \"app\"\n"
        ))
        .args(&[
            "--container-listen",
            "127.0.0.1:0",
            "--audit-log",
            audit.to_str().unwrap(),
        ])
        .start();
    let token = server.token(600);
    let role: Value = serde_json::from_slice(&server.get_with_token(CREDENTIALS, &token).body)
        .expect("credentials JSON");
    let identity: Value =
        serde_json::from_slice(&server.get_with_token(IDENTITY_CREDENTIALS, &token).body)
            .expect("identity credentials JSON");
    // Listings and other metadata are not credentials.
    assert_eq!(
        server
            .get_with_token("/latest/meta-data/iam/security-credentials/", &token)
            .status,
        200
    );
    assert_eq!(server.get("/latest/meta-data/instance-id").status, 200);
    let container = send_raw(
        server.container_address.unwrap(),
        b"GET /v2/credentials/app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(container.status, 200);
    let admin = server.admin(
        "GET",
        &format!("/v1/instances/{A}/roles/app/credentials"),
        None,
    );
    assert_eq!(admin.status, 200, "{admin:?}");
    let forwarded: Response = server.request(
        "PUT",
        "/latest/api/token",
        &[
            ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    );
    assert_eq!(forwarded.status, 403);
    let bad_ttl = server.request(
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "0")],
    );
    assert_eq!(bad_ttl.status, 400);
    assert_eq!(
        server
            .request(
                "PUT",
                "/2021-03-23/api/token",
                &[("X-aws-ec2-metadata-token-ttl-seconds", "60")]
            )
            .status,
        403
    );

    let records = audit_records(&audit, 7);
    assert_eq!(records.len(), 7, "{records:#?}");
    let access_key_id = role["AccessKeyId"].as_str().unwrap();
    for endpoint in ["imds", "container", "control-api"] {
        let record = find(
            &records,
            &[
                ("event", "credentials-issued".into()),
                ("endpoint", endpoint.into()),
                ("role", "app".into()),
            ],
        );
        assert_eq!(record["access_key_id"], access_key_id, "{record}");
        assert_eq!(record["instance_id"], A);
        // The control API's names the token that asked (never its value).
        let token = (endpoint == "control-api").then_some("admin");
        assert_eq!(record["token"].as_str(), token, "{record}");
        let caller: SocketAddr = record["caller"].as_str().unwrap().parse().unwrap();
        assert!(caller.ip().is_loopback());
        assert!(record["time"].as_str().unwrap().ends_with('Z'));
    }
    let record = find(&records, &[("role", "ec2-instance".into())]);
    assert_eq!(record["access_key_id"], identity["AccessKeyId"]);
    for reason in ["forwarded", "invalid-ttl", "versioned-path"] {
        let record = find(
            &records,
            &[("event", "token-refused".into()), ("reason", reason.into())],
        );
        assert_eq!(record["instance_id"], A);
    }
    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in [
        role["SecretAccessKey"].as_str().unwrap(),
        role["Token"].as_str().unwrap(),
        identity["SecretAccessKey"].as_str().unwrap(),
        identity["Token"].as_str().unwrap(),
        &token,
    ] {
        assert!(!text.contains(secret), "a secret reached the audit log");
    }
}

/// Requests are counted by route template, status and IMDS version; credential refreshes by
/// provider; open connections; never a raw path as a label.
#[test]
fn metrics_count_requests_by_route_status_and_version() {
    let server = server()
        .config(&format!(
            "[instance]\ninstance-id = \"{A}\"\nuser-data = \"#!/bin/sh\"\n[instance.iam]\nrole-name = \"app\"\n"
        ))
        .start();
    let token = server.token(600);
    for (path, with_token, status) in [
        ("/latest/meta-data/instance-id", true, 200),
        ("/latest/meta-data/instance-id", true, 200),
        ("/latest/meta-data/instance-id", false, 200),
        ("/latest/meta-data/", false, 200),
        ("/latest/meta-data/placement/", true, 200),
        (CREDENTIALS, true, 200),
        ("/latest/dynamic/instance-identity/document", true, 200),
        ("/latest/user-data", true, 200),
        ("/latest/meta-data/no-such-thing-1", false, 404),
        ("/latest/meta-data/no-such-thing-2", false, 404),
        ("/", false, 200),
    ] {
        let response = if with_token {
            server.get_with_token(path, &token)
        } else {
            server.get(path)
        };
        assert_eq!(response.status, status, "{path}");
    }
    assert_eq!(
        server
            .get_with_token("/latest/meta-data/instance-id", "not-a-token")
            .status,
        401
    );
    // A kept-alive connection (its answer read, so the server has it) shows in the gauge.
    let mut open = std::net::TcpStream::connect(server.address()).unwrap();
    open.write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let kept_alive = read_response(&mut open).expect("an answer");
    assert_eq!(kept_alive.status, 200);
    let text = metrics(&server);
    for line in [
        "imds_requests_total{route=\"token\",status=\"200\",version=\"v2\"} 1",
        "imds_requests_total{route=\"meta-data-leaf\",status=\"200\",version=\"v2\"} 2",
        "imds_requests_total{route=\"meta-data-leaf\",status=\"200\",version=\"v1\"} 2",
        "imds_requests_total{route=\"meta-data-leaf\",status=\"401\",version=\"v2\"} 1",
        "imds_requests_total{route=\"meta-data-listing\",status=\"200\",version=\"v1\"} 1",
        "imds_requests_total{route=\"meta-data-listing\",status=\"200\",version=\"v2\"} 1",
        "imds_requests_total{route=\"credentials\",status=\"200\",version=\"v2\"} 1",
        "imds_requests_total{route=\"identity\",status=\"200\",version=\"v2\"} 1",
        "imds_requests_total{route=\"user-data\",status=\"200\",version=\"v2\"} 1",
        "imds_requests_total{route=\"not-found\",status=\"404\",version=\"v1\"} 2",
        "imds_requests_total{route=\"versions\",status=\"200\",version=\"v1\"} 1",
        "imds_lockdown_refusals_total{scope=\"endpoint\"} 0",
        "imds_lockdown_refusals_total{scope=\"credentials\"} 0",
        "# TYPE imds_credential_refresh_duration_seconds histogram",
    ] {
        assert_metric(&text, line);
    }
    assert!(
        !text.contains("no-such-thing"),
        "raw paths are never labels"
    );
    let gauge: i64 = text
        .lines()
        .find_map(|line| line.strip_prefix("imds_active_connections "))
        .expect("imds_active_connections")
        .parse()
        .unwrap();
    assert!(gauge >= 1, "{text}");
    // The instance's role and identity credentials: at least two calls to `generated`.
    let refreshes: u64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("imds_credential_refreshes_total{provider=\"generated\"} ")
        })
        .unwrap_or_else(|| panic!("no generated refreshes in\n{text}"))
        .parse()
        .unwrap();
    assert!(refreshes >= 1);
    assert!(text.contains("imds_credential_refresh_duration_seconds_count{provider=\"generated\"}"));
    drop(open);
}
