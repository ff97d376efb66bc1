//! Host mode: many instances told apart by the caller's address, managed through the control
//! API and `imds ctl`, kept in the store across crashes.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::support::{server, Server};

const A: &str = "i-0aaaaaaaaaaaaaaaa";
const B: &str = "i-0bbbbbbbbbbbbbbbb";

fn json_of(response: &crate::support::Response) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|_| panic!("not JSON: {response:?}"))
}

/// Registers A on 127.0.0.2 (through `imds ctl`) and B on 127.0.0.3 (through the API).
fn two_instances() -> Server {
    let server = server().start();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("a.toml");
    std::fs::write(
        &file,
        format!("[instance]\ninstance-id = \"{A}\"\ninstance-type = \"c5.large\"\n[instance.placement]\nregion = \"eu-central-1\"\n"),
    )
    .unwrap();
    let registered = server.ctl(&[
        "register-instance",
        "--config",
        file.to_str().unwrap(),
        "--address",
        "127.0.0.2",
    ]);
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    assert!(String::from_utf8_lossy(&registered.stdout).contains(A));
    let created = server.admin(
        "POST",
        "/v1/instances",
        Some(
            &json!({"instance-id": B, "addresses": ["127.0.0.3"], "iam": {"role-name": "role-b"}})
                .to_string(),
        ),
    );
    assert_eq!(created.status, 201, "{created:?}");
    server
}

#[test]
fn instances_see_only_their_own_data_and_tokens() {
    let server = two_instances();
    let get = |source: &str, path: &str| server.request_from(source, "GET", path, &[]);
    assert_eq!(get("127.0.0.2", "/latest/meta-data/instance-id").text(), A);
    assert_eq!(
        get("127.0.0.2", "/latest/meta-data/placement/region").text(),
        "eu-central-1"
    );
    assert_eq!(get("127.0.0.3", "/latest/meta-data/instance-id").text(), B);
    assert_eq!(
        get("127.0.0.3", "/latest/meta-data/iam/security-credentials/").text(),
        "role-b"
    );
    assert_eq!(
        get("127.0.0.2", "/latest/meta-data/iam/security-credentials/").text(),
        "imds-instance-role"
    );

    // Callers no instance claims are refused, and never see a default role.
    let unknown = get("127.0.0.4", "/latest/meta-data/iam/security-credentials/");
    assert_eq!(unknown.status, 403);
    assert_eq!(
        get("127.0.0.1", "/latest/meta-data/instance-id").status,
        403
    );

    let token_a = server.token_from("127.0.0.2");
    let token_b = server.token_from("127.0.0.3");
    let with = |source: &str, token: &str| {
        server
            .request_from(
                source,
                "GET",
                "/latest/meta-data/instance-id",
                &[("X-aws-ec2-metadata-token", token)],
            )
            .status
    };
    assert_eq!(with("127.0.0.2", &token_a), 200);
    assert_eq!(with("127.0.0.3", &token_a), 401);
    assert_eq!(with("127.0.0.2", &token_b), 401);

    // Re-registering B (same id, same address) does not make A's token valid for it.
    assert_eq!(
        server
            .admin("DELETE", &format!("/v1/instances/{B}"), None)
            .status,
        204
    );
    assert_eq!(
        get("127.0.0.3", "/latest/meta-data/instance-id").status,
        403
    );
    let again = server.admin(
        "POST",
        "/v1/instances",
        Some(&json!({"instance-id": B, "addresses": ["127.0.0.3"]}).to_string()),
    );
    assert_eq!(again.status, 201);
    assert_eq!(with("127.0.0.3", &token_a), 401);
    assert_eq!(with("127.0.0.3", &token_b), 200);
    // A moved to another address keeps its tokens.
    let moved = server.admin(
        "PATCH",
        &format!("/v1/instances/{A}"),
        Some(r#"{"addresses": ["127.0.0.5"]}"#),
    );
    assert_eq!(moved.status, 200, "{moved:?}");
    assert_eq!(with("127.0.0.5", &token_a), 200);
    assert_eq!(
        get("127.0.0.2", "/latest/meta-data/instance-id").status,
        403
    );

    let stopped = server.stop_counters();
    assert!(stopped.contains("unknown_callers=4"), "{stopped}");
}

#[test]
fn options_changed_through_ctl_apply_on_the_next_request() {
    let server = two_instances();
    let get = || {
        server
            .request_from("127.0.0.2", "GET", "/latest/meta-data/instance-id", &[])
            .status
    };
    assert_eq!(get(), 200);
    let modified = server.ctl(&[
        "modify-instance-metadata-options",
        "--instance-id",
        A,
        "--http-tokens",
        "required",
    ]);
    assert!(
        modified.status.success(),
        "{}",
        String::from_utf8_lossy(&modified.stderr)
    );
    assert!(String::from_utf8_lossy(&modified.stdout).contains("http-tokens=required"));
    assert_eq!(get(), 401);
    let token = server.token_from("127.0.0.2");
    assert_eq!(
        server
            .request_from(
                "127.0.0.2",
                "GET",
                "/latest/meta-data/instance-id",
                &[("X-aws-ec2-metadata-token", &token)]
            )
            .status,
        200
    );
    // The other instance is untouched.
    assert_eq!(
        server
            .request_from("127.0.0.3", "GET", "/latest/meta-data/instance-id", &[])
            .status,
        200
    );

    let disabled = server.ctl(&[
        "modify-instance-metadata-options",
        "--instance-id",
        A,
        "--http-endpoint",
        "disabled",
    ]);
    assert!(disabled.status.success());
    assert_eq!(get(), 403);

    let described = server.ctl(&["--output", "json", "describe-instances", "--instance-id", A]);
    let described: Value = serde_json::from_slice(&described.stdout).unwrap();
    let options = &described["Instances"][0]["MetadataOptions"];
    assert_eq!(options["State"], "applied");
    assert_eq!(options["HttpTokens"], "required");
    assert_eq!(options["HttpEndpoint"], "disabled");
    assert_eq!(options["HttpPutResponseHopLimit"], 1);

    let table = server.ctl(&["describe-instances"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("INSTANCE"), "{table}");
    assert!(table.contains(A) && table.contains(B), "{table}");

    let bad = server.ctl(&[
        "modify-instance-metadata-options",
        "--instance-id",
        "i-0cccccccccccccccc",
        "--http-tokens",
        "required",
    ]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("InvalidInstanceID.NotFound"));
}

#[test]
fn events_appear_on_time_with_aws_shapes_and_move_to_history() {
    let server = two_instances();
    let get = |path: &str| server.request_from("127.0.0.2", "GET", path, &[]);

    let spot = server.ctl(&[
        "--output",
        "json",
        "send-spot-interruption",
        "--instance-id",
        A,
        "--action",
        "stop",
        "--in",
        "2s",
    ]);
    assert!(
        spot.status.success(),
        "{}",
        String::from_utf8_lossy(&spot.stderr)
    );
    let posted: Value = serde_json::from_slice(&spot.stdout).unwrap();
    let posted_time = posted["PostedTime"].as_str().unwrap().to_owned();
    assert_eq!(get("/latest/meta-data/spot/instance-action").status, 404);
    let events = server.ctl(&[
        "--output",
        "json",
        "describe-instance-events",
        "--instance-id",
        A,
    ]);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    assert_eq!(events["Events"][0]["Status"], "pending");

    let deadline = Instant::now() + Duration::from_secs(10);
    let action = loop {
        let response = get("/latest/meta-data/spot/instance-action");
        if response.status == 200 {
            break json_of(&response);
        }
        assert!(Instant::now() < deadline, "the spot notice never appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(action["action"], "stop");
    let notice = imds_time(&posted_time);
    assert_eq!(action["time"], imds_text(notice + 120));
    assert_eq!(
        get("/latest/meta-data/spot/termination-time").text(),
        imds_text(notice + 120)
    );
    assert!(get("/latest/meta-data/spot/")
        .text()
        .contains("instance-action"));
    // The other instance sees nothing.
    assert_eq!(
        server
            .request_from(
                "127.0.0.3",
                "GET",
                "/latest/meta-data/spot/instance-action",
                &[]
            )
            .status,
        404
    );
    assert!(server
        .ctl(&[
            "cancel-event",
            "--instance-id",
            A,
            "--event-id",
            "spot-interruption"
        ])
        .status
        .success());
    assert_eq!(get("/latest/meta-data/spot/instance-action").status, 404);

    // Rebalance at an absolute time (now), Auto Scaling state, maintenance now.
    let now = imds_text(unix_now());
    assert!(server
        .ctl(&[
            "send-rebalance-recommendation",
            "--instance-id",
            A,
            "--at",
            &now
        ])
        .status
        .success());
    assert_eq!(
        json_of(&get("/latest/meta-data/events/recommendations/rebalance")),
        json!({"noticeTime": now})
    );
    assert!(server
        .ctl(&[
            "set-target-lifecycle-state",
            "--instance-id",
            A,
            "--state",
            "Warmed:Stopped"
        ])
        .status
        .success());
    assert_eq!(
        get("/latest/meta-data/autoscaling/target-lifecycle-state").text(),
        "Warmed:Stopped"
    );

    let mut event_ids = Vec::new();
    for code in ["system-reboot", "instance-stop"] {
        let scheduled = server.ctl(&[
            "--output",
            "json",
            "schedule-maintenance",
            "--instance-id",
            A,
            "--code",
            code,
            "--description",
            "scheduled work",
            "--not-before",
            "2027-01-21T09:00:43Z",
            "--not-after",
            "2027-01-21T09:17:23Z",
        ]);
        assert!(
            scheduled.status.success(),
            "{}",
            String::from_utf8_lossy(&scheduled.stderr)
        );
        let scheduled: Value = serde_json::from_slice(&scheduled.stdout).unwrap();
        event_ids.push(scheduled["EventId"].as_str().unwrap().to_owned());
    }
    let listed = json_of(&get("/latest/meta-data/events/maintenance/scheduled"));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["NotBefore"], "21 Jan 2027 09:00:43 GMT");
    assert_eq!(listed[0]["State"], "active");
    assert!(event_ids[0].starts_with("instance-event-"));
    assert_eq!(listed[0]["EventId"], event_ids[0].as_str());

    assert!(server
        .ctl(&[
            "complete-event",
            "--instance-id",
            A,
            "--event-id",
            &event_ids[0]
        ])
        .status
        .success());
    assert!(server
        .ctl(&[
            "cancel-event",
            "--instance-id",
            A,
            "--event-id",
            &event_ids[1]
        ])
        .status
        .success());
    assert_eq!(
        get("/latest/meta-data/events/maintenance/scheduled").text(),
        "[]"
    );
    let history = json_of(&get("/latest/meta-data/events/maintenance/history"));
    assert_eq!(history[0]["State"], "completed");
    assert_eq!(history[0]["Description"], "[Completed] scheduled work");
    assert_eq!(history[1]["State"], "canceled");
    assert_eq!(history[1]["Description"], "[Canceled] scheduled work");
    let again = server.ctl(&[
        "complete-event",
        "--instance-id",
        A,
        "--event-id",
        &event_ids[0],
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("IncorrectState"));
}

#[test]
fn control_api_auth_and_errors() {
    let server = two_instances();
    let no_token = server.admin_with("GET", "/v1/instances", None, None);
    assert_eq!(no_token.status, 401);
    assert_eq!(json_of(&no_token)["Code"], "AuthFailure");
    assert_eq!(no_token.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        server
            .admin_with("GET", "/v1/instances", None, Some("wrong"))
            .status,
        401
    );
    assert_eq!(server.admin_with("GET", "/healthz", None, None).status, 200);

    let bad_json = server.admin("POST", "/v1/instances", Some("{\"instance-id\": "));
    assert_eq!(bad_json.status, 400);
    assert!(json_of(&bad_json)["Message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let unknown_key = server.admin(
        "POST",
        "/v1/instances",
        Some(r#"{"addresses": ["127.0.0.9"], "colour": "red"}"#),
    );
    assert_eq!(unknown_key.status, 400);
    assert!(json_of(&unknown_key)["Message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let bad_value = server.admin(
        "POST",
        "/v1/instances",
        Some(r#"{"addresses": ["127.0.0.9"], "metadata-options": {"http-tokens": "always"}}"#),
    );
    assert_eq!(bad_value.status, 400);
    assert!(json_of(&bad_value)["Message"]
        .as_str()
        .unwrap()
        .contains("instance.metadata-options.http-tokens"));
    let taken = server.admin(
        "POST",
        "/v1/instances",
        Some(r#"{"addresses": ["127.0.0.2"]}"#),
    );
    assert_eq!(taken.status, 409, "{taken:?}");
    let duplicate = server.admin(
        "POST",
        "/v1/instances",
        Some(&json!({"instance-id": A, "addresses": ["127.0.0.9"]}).to_string()),
    );
    assert_eq!(duplicate.status, 409);
    let missing = server.admin("GET", "/v1/instances/i-0123456789abcdef9", None);
    assert_eq!(missing.status, 404);
    assert_eq!(json_of(&missing)["Code"], "InvalidInstanceID.NotFound");
    assert_eq!(server.admin("PUT", "/v1/instances", Some("{}")).status, 405);
    assert_eq!(server.admin("GET", "/v1/nothing", None).status, 404);
    // The control API is not reachable through the guest listener.
    assert_eq!(
        server
            .request_from("127.0.0.2", "GET", "/v1/instances", &[])
            .status,
        404
    );
}

#[test]
fn config_file_instances_are_loaded_at_start() {
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "[[instances]]\ninstance-id = \"{A}\"\naddresses = [\"127.0.0.6\"]\ninstance-type = \"t3.nano\"\n"
    );
    let first = server().state_dir(state.path()).config(&config).start();
    assert_eq!(
        first
            .request_from("127.0.0.6", "GET", "/latest/meta-data/instance-type", &[])
            .text(),
        "t3.nano"
    );
    assert_eq!(
        first
            .request_from("127.0.0.7", "GET", "/latest/meta-data/instance-id", &[])
            .status,
        403
    );
    let mac = first
        .request_from("127.0.0.6", "GET", "/latest/meta-data/mac", &[])
        .text();
    // A change through the API lasts until the next start, when the file wins again.
    let changed = first.admin(
        "PATCH",
        &format!("/v1/instances/{A}"),
        Some(r#"{"instance-type": "m5.xlarge"}"#),
    );
    assert_eq!(changed.status, 200);
    assert_eq!(
        first
            .request_from("127.0.0.6", "GET", "/latest/meta-data/instance-type", &[])
            .text(),
        "m5.xlarge"
    );
    drop(first);
    let second = server()
        .state_dir(state.path())
        .config(&format!(
            "{config}[instance]\ninstance-type = \"t3.micro\"\n"
        ))
        .start();
    assert_eq!(
        second
            .request_from("127.0.0.6", "GET", "/latest/meta-data/instance-type", &[])
            .text(),
        "t3.nano"
    );
    // Generated identifiers are kept.
    assert_eq!(
        second
            .request_from("127.0.0.6", "GET", "/latest/meta-data/mac", &[])
            .text(),
        mac
    );
    // An explicit [instance] answers callers no other instance claims.
    assert_eq!(
        second
            .request_from("127.0.0.7", "GET", "/latest/meta-data/instance-type", &[])
            .text(),
        "t3.micro"
    );
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let state = tempfile::tempdir().unwrap();
    let first = server().state_dir(state.path()).start();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let admin_address = first.admin_address;
    let token = first.admin_token();
    let writer_acks = acknowledged.clone();
    let writer = std::thread::spawn(move || {
        for index in 0..2000u32 {
            let id = format!("i-{index:017x}");
            let body = json!({"instance-id": id, "addresses": [format!("127.0.{}.{}", 10 + index / 250, 1 + index % 250)]}).to_string();
            let request = format!(
                "POST /v1/instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let Ok(mut stream) = std::net::TcpStream::connect(admin_address) else {
                return;
            };
            use std::io::Write;
            if stream.write_all(request.as_bytes()).is_err() {
                return;
            }
            match crate::support::read_response(&mut stream) {
                Some(response) if response.status == 201 => writer_acks.lock().unwrap().push(id),
                _ => return,
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 40 {
        assert!(Instant::now() < deadline, "writes too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill();
    writer.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 40);

    let second = server().state_dir(state.path()).start();
    let listed = json_of(&second.admin("GET", "/v1/instances", None));
    let stored: Vec<&str> = listed["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|instance| instance["InstanceId"].as_str().unwrap())
        .collect();
    for id in &acknowledged {
        assert!(
            stored.contains(&id.as_str()),
            "acknowledged {id} was lost ({} acknowledged)",
            acknowledged.len()
        );
    }
    // And they answer again.
    assert_eq!(
        second
            .request_from("127.0.10.1", "GET", "/latest/meta-data/instance-id", &[])
            .text(),
        acknowledged[0]
    );
}

/// Unix seconds of an IMDS timestamp.
fn imds_time(text: &str) -> i64 {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(text, format)
        .unwrap()
        .assume_utc()
        .unix_timestamp()
}

fn imds_text(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(format)
        .unwrap()
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A change that takes time to serve (new role credentials from an STS that does not answer)
/// answers `State: pending`, keeps the old answers meanwhile, and shows `applied` once served.
#[test]
fn options_state_goes_from_pending_to_applied() {
    // Accepts connections (the kernel completes them into the backlog) and never answers.
    let silent_sts = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent_sts.local_addr().unwrap());
    let server = server()
        .config(&format!(
            "[[roles]]\nname = \"slow\"\nprovider = \"sts\"\n\
             role-arn = \"arn:aws:iam::123456789012:role/slow\"\n\
             endpoint-url = \"{endpoint}\"\nregion = \"us-east-1\"\n"
        ))
        // STS gives up after a second, and writes wait a fifth of one: the test waits on its
        // own settings, never on the defaults.
        .args(&[
            "--sts-attempt-timeout-ms",
            "1000",
            "--sts-timeout-ms",
            "1000",
            "--apply-patience-ms",
            "200",
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTSOURCEKEY000")
        .env("AWS_SECRET_ACCESS_KEY", "host-secret")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .start();
    let instance_id = server.get("/latest/meta-data/instance-id").text();
    let changed = server.admin(
        "PATCH",
        &format!("/v1/instances/{instance_id}"),
        Some(r#"{"iam": {"role-name": "slow"}}"#),
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(json_of(&changed)["MetadataOptions"]["State"], "pending");
    // Until the change is served, the instance answers as before.
    assert_eq!(
        server
            .get("/latest/meta-data/iam/security-credentials/")
            .text(),
        "imds-instance-role"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let described =
            json_of(&server.admin("GET", &format!("/v1/instances/{instance_id}"), None));
        if described["MetadataOptions"]["State"] == "applied" {
            break;
        }
        assert_eq!(described["MetadataOptions"]["State"], "pending");
        assert!(Instant::now() < deadline, "the change was never applied");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        server
            .get("/latest/meta-data/iam/security-credentials/")
            .text(),
        "slow"
    );
    // STS never answered: no valid credentials, so AWS's error document, never made-up keys.
    let document = json_of(&server.get("/latest/meta-data/iam/security-credentials/slow"));
    assert_eq!(document["Code"], "AssumeRoleUnauthorizedAccess");
    assert!(document.get("AccessKeyId").is_none());
    drop(silent_sts);
}

/// Prometheus metrics on the control API's listener: per-instance counters and server counters;
/// authenticated; absent from the guest listener.
#[test]
fn metrics_count_per_instance_on_the_control_listener_only() {
    let server = two_instances();
    for _ in 0..3 {
        assert_eq!(
            server
                .request_from("127.0.0.2", "GET", "/latest/meta-data/instance-id", &[])
                .status,
            200
        );
    }
    let _ = server.token_from("127.0.0.3");
    assert_eq!(
        server
            .request_from("127.0.0.9", "GET", "/latest/meta-data/", &[])
            .status,
        403
    );
    let metrics = server.admin("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = metrics.text();
    for line in [
        format!("imds_metadata_no_token_total{{instance_id=\"{A}\"}} 3"),
        format!("imds_metadata_no_token_total{{instance_id=\"{B}\"}} 0"),
        format!("imds_tokens_issued_total{{instance_id=\"{B}\"}} 1"),
        format!("imds_metadata_no_token_rejected_total{{instance_id=\"{A}\"}} 0"),
        "imds_unknown_callers_total 1".to_owned(),
    ] {
        assert!(
            text.lines().any(|got| got == line),
            "{line} missing from\n{text}"
        );
    }
    assert!(text.contains("imds_instances "), "{text}");
    assert_eq!(server.admin_with("GET", "/metrics", None, None).status, 401);
    assert_eq!(
        server
            .request_from("127.0.0.2", "GET", "/metrics", &[])
            .status,
        404
    );
}
