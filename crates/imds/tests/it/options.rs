//! Instance metadata options and config-driven categories, each with the effect AWS documents.

use std::{io::Read, net::TcpStream, time::Duration};

use crate::support::{assert_text, server};

#[test]
fn tokens_required_refuses_imdsv1_and_counts_it() {
    let server = server().args(&["--http-tokens", "required"]).start();
    let response = server.get("/latest/meta-data/instance-id");
    assert_eq!(response.status, 401);
    assert!(response.text().contains("401 - Unauthorized"));
    assert_eq!(server.get("/").status, 401);
    let token = server.token(60);
    assert_eq!(
        server
            .get_with_token("/latest/meta-data/instance-id", &token)
            .status,
        200
    );
    assert_eq!(server.get("/latest/user-data").status, 401);
    let stopped = server.stop_counters();
    assert!(stopped.contains("metadata_no_token=0"), "{stopped}");
    assert!(
        stopped.contains("metadata_no_token_rejected=3"),
        "{stopped}"
    );
    assert!(stopped.contains("tokens_issued=1"), "{stopped}");
}

#[test]
fn tokens_optional_counts_imdsv1_requests_served() {
    let server = server().start();
    assert_eq!(server.get("/latest/meta-data/instance-id").status, 200);
    assert_eq!(server.get("/latest/meta-data/ami-id").status, 200);
    assert_eq!(server.get("/latest/meta-data/missing").status, 404);
    let token = server.token(60);
    assert_eq!(
        server
            .get_with_token("/latest/meta-data/ami-id", &token)
            .status,
        200
    );
    let stopped = server.stop_counters();
    assert!(stopped.contains("metadata_no_token=2"), "{stopped}");
    assert!(
        stopped.contains("metadata_no_token_rejected=0"),
        "{stopped}"
    );
}

#[test]
fn endpoint_disabled_refuses_everything_with_403() {
    let server = server()
        .config("[instance.metadata-options]\nhttp-endpoint = \"disabled\"\n")
        .start();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/latest/meta-data/instance-id"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/nope"),
    ] {
        let response = server.request(
            method,
            path,
            &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        );
        assert_eq!(response.status, 403, "{method} {path}");
        assert_eq!(response.header("server"), Some("EC2ws"));
    }
}

#[test]
fn flags_override_the_config_file() {
    let server = server()
        .config("[instance.metadata-options]\nhttp-endpoint = \"disabled\"\nhttp-tokens = \"required\"\n")
        .args(&["--http-endpoint", "enabled", "--http-tokens", "optional"])
        .start();
    assert_eq!(server.get("/latest/meta-data/instance-id").status, 200);
}

#[test]
fn tags_appear_only_when_enabled() {
    let tags = "[instance.tags]\nName = \"web-1\"\n\"aws:autoscaling:groupName\" = \"web\"\n\"has space\" = \"left out\"\n";
    let disabled = server().config(tags).start();
    assert_eq!(disabled.get("/latest/meta-data/tags/instance").status, 404);
    assert!(!disabled.get("/latest/meta-data/").text().contains("tags/"));

    let enabled = server()
        .config(tags)
        .args(&["--instance-metadata-tags", "enabled"])
        .start();
    assert!(enabled.get("/latest/meta-data/").text().contains("\ntags/"));
    assert_eq!(
        enabled.get("/latest/meta-data/tags/instance").text(),
        "Name\naws:autoscaling:groupName"
    );
    assert_eq!(
        enabled.get("/latest/meta-data/tags/instance/Name").text(),
        "web-1"
    );
    // cloud-init percent-encodes keys.
    assert_eq!(
        enabled
            .get("/latest/meta-data/tags/instance/aws%3Aautoscaling%3AgroupName")
            .text(),
        "web"
    );
    assert_eq!(
        enabled
            .get("/latest/meta-data/tags/instance/has%20space")
            .status,
        404
    );
}

#[test]
fn ipv6_listeners_answer_only_when_enabled() {
    let disabled = server().listen("127.0.0.1:0").listen("[::1]:0").start();
    assert_eq!(disabled.addresses.len(), 2);
    assert_eq!(disabled.get("/latest/meta-data/instance-id").status, 200);
    let mut stream = TcpStream::connect(disabled.addresses[1]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    assert!(
        bytes.is_empty(),
        "IPv6 answered while disabled: {}",
        String::from_utf8_lossy(&bytes)
    );

    let enabled = server()
        .listen("[::1]:0")
        .args(&["--http-protocol-ipv6", "enabled"])
        .start();
    assert_eq!(enabled.get("/latest/meta-data/instance-id").status, 200);
    let token = enabled.token(60);
    assert_eq!(
        enabled
            .get_with_token("/latest/meta-data/instance-id", &token)
            .status,
        200
    );
}

#[test]
fn no_user_data_and_no_role() {
    let server = server()
        .config("[instance]\nuser-data = \"\"\n[instance.iam]\nattached = false\n")
        .start();
    assert_eq!(server.get("/latest/user-data").status, 404);
    assert_eq!(server.get("/latest/").text(), "dynamic\nmeta-data");
    assert_eq!(
        server
            .get("/latest/meta-data/iam/security-credentials/")
            .status,
        404
    );
    assert_eq!(server.get("/latest/meta-data/iam/info").status, 404);
    assert!(!server.get("/latest/meta-data/").text().contains("iam/"));
}

#[test]
fn binary_user_data_is_served_exactly() {
    // gzip magic, a NUL and invalid UTF-8.
    let server = server()
        .config("[instance]\nuser-data-base64 = \"H4sIAP8A/w==\"\n")
        .start();
    let response = server.get("/latest/user-data");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        response.body,
        vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0x00, 0xff]
    );
}

#[test]
fn events_have_aws_shapes() {
    let server = server()
        .config(
            "[instance.events]\n\
             spot-interruption = { action = \"terminate\", time = \"2026-11-24T12:02:00Z\" }\n\
             rebalance-notice = \"2026-11-24T12:00:00Z\"\n\
             target-lifecycle-state = \"InService\"\n\
             [[instance.events.maintenance]]\n\
             code = \"system-reboot\"\ndescription = \"scheduled reboot\"\n\
             event-id = \"instance-event-0d59937288b749b32\"\n\
             not-before = \"2027-01-21T09:00:43Z\"\nnot-after = \"2027-01-21T09:17:23Z\"\n\
             [[instance.events.maintenance]]\n\
             code = \"instance-stop\"\nstate = \"canceled\"\ndescription = \"scheduled stop\"\n\
             not-before = \"2026-01-02T03:04:05Z\"\nnot-after = \"2026-01-02T04:04:05Z\"\n\
             [[instance.events.maintenance]]\n\
             code = \"instance-retirement\"\ndescription = \"The instance is running on degraded hardware\"\n\
             event-id = \"instance-event-07a1c1c08b77d4bf1\"\nnot-before = \"2027-01-01T02:00:00Z\"\n",
        )
        .start();
    // Compact, as a real notice (runs-on/runs-on#277).
    assert_eq!(
        server.get("/latest/meta-data/spot/instance-action").text(),
        r#"{"action":"terminate","time":"2026-11-24T12:02:00Z"}"#
    );
    assert_eq!(
        server.get("/latest/meta-data/spot/termination-time").text(),
        "2026-11-24T12:02:00Z"
    );
    let rebalance: serde_json::Value = serde_json::from_slice(
        &server
            .get("/latest/meta-data/events/recommendations/rebalance")
            .body,
    )
    .unwrap();
    assert_eq!(
        rebalance,
        serde_json::json!({"noticeTime": "2026-11-24T12:00:00Z"})
    );
    assert_eq!(
        server
            .get("/latest/meta-data/autoscaling/target-lifecycle-state")
            .text(),
        "InService"
    );
    // The layout of a real document (banzaicloud/spot-termination-exporter#14): `[ {`, `}, {`,
    // `} ]`, and no NotAfter for an event without an end.
    assert_text(
        &server
            .get("/latest/meta-data/events/maintenance/scheduled")
            .text(),
        "[ {\n  \"NotBefore\" : \"21 Jan 2027 09:00:43 GMT\",\n  \"Code\" : \"system-reboot\",\n  \
         \"Description\" : \"scheduled reboot\",\n  \"EventId\" : \"instance-event-0d59937288b749b32\",\n  \
         \"NotAfter\" : \"21 Jan 2027 09:17:23 GMT\",\n  \"State\" : \"active\"\n}, {\n  \
         \"NotBefore\" : \"1 Jan 2027 02:00:00 GMT\",\n  \"Code\" : \"instance-retirement\",\n  \
         \"Description\" : \"The instance is running on degraded hardware\",\n  \
         \"EventId\" : \"instance-event-07a1c1c08b77d4bf1\",\n  \"State\" : \"active\"\n} ]",
    );
    let history: serde_json::Value = serde_json::from_slice(
        &server
            .get("/latest/meta-data/events/maintenance/history")
            .body,
    )
    .unwrap();
    assert_eq!(history[0]["State"], "canceled");
    assert_eq!(history[0]["Description"], "[Canceled] scheduled stop");
    assert_eq!(history[0]["NotBefore"], "2 Jan 2026 03:04:05 GMT");
}

#[test]
fn short_lived_credentials_rotate_before_they_expire() {
    let server = server()
        .config("[credentials]\nlifetime-seconds = 6\n")
        .start();
    let read = || -> serde_json::Value {
        serde_json::from_slice(
            &server
                .get("/latest/meta-data/iam/security-credentials/imds-instance-role")
                .body,
        )
        .unwrap()
    };
    let first = read();
    // A sixth of the lifetime is one second: within a few seconds new credentials must appear,
    // while the first ones are still valid.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let current = read();
        if current["AccessKeyId"] != first["AccessKeyId"] {
            assert!(current["Expiration"].as_str() > first["Expiration"].as_str());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "credentials never rotated"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
