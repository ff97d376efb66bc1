//! Faults injected through the control API and `imds ctl`: each changes the answers it matches,
//! as its kind says, for its count or until removed; they are listed with their counts and
//! counted in metrics; and botocore behaves against them as it does against EC2. (The Rust
//! SDK's retries and its refusal of a token answer without the TTL header are tested against an
//! in-process server: `crates/imds-testing/tests/sdk.rs`.)

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::support::{server, Server};

const INSTANCE: &str = "i-0123456789abcdef0";
const CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials/app";

fn config() -> &'static str {
    "[instance]\ninstance-id = \"i-0123456789abcdef0\"\n[instance.iam]\nrole-name = \"app\"\n"
}

fn faults_path() -> String {
    format!("/v1/instances/{INSTANCE}/faults")
}

/// Injects `body` and returns the fault the API answers.
#[track_caller]
fn inject(imds: &Server, body: &str) -> serde_json::Value {
    let response = imds.admin("POST", &faults_path(), Some(body));
    assert_eq!(response.status, 201, "{}", response.text());
    serde_json::from_str(&response.text()).unwrap()
}

/// The instance's faults, as `GET .../faults` lists them.
fn faults(imds: &Server) -> Vec<serde_json::Value> {
    let response = imds.admin("GET", &faults_path(), None);
    assert_eq!(response.status, 200, "{}", response.text());
    let list: serde_json::Value = serde_json::from_str(&response.text()).unwrap();
    list["Faults"].as_array().unwrap().clone()
}

/// Sends `GET path` on a new connection and reads until the server closes it: the bytes read,
/// and the error that ended the read, if any.
fn raw_get(imds: &Server, path: &str) -> (Vec<u8>, Option<ErrorKind>) {
    let mut stream = TcpStream::connect(imds.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut read = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (read, None),
            Ok(count) => read.extend_from_slice(&chunk[..count]),
            Err(error) => return (read, Some(error.kind())),
        }
    }
}

#[test]
fn a_status_fault_answers_ec2s_error_for_its_count_then_ends_and_is_counted() {
    let imds = server().config(config()).start();
    let fault = inject(
        &imds,
        r#"{"Kind": "status", "Status": 500, "Path": "meta-data/iam/security-credentials/*", "Count": 1}"#,
    );
    assert_eq!(fault["FaultId"], "fault-1");
    assert_eq!(fault["State"], "active");
    // The listing is not matched by the pattern; the role's document is, once.
    assert_eq!(
        imds.get("/latest/meta-data/iam/security-credentials/")
            .status,
        200
    );
    let faulted = imds.get(CREDENTIALS);
    assert_eq!(faulted.status, 500);
    assert!(
        faulted.text().contains("500 - Internal Server Error"),
        "{}",
        faulted.text()
    );
    let served = imds.get(CREDENTIALS);
    assert_eq!(served.status, 200);
    assert!(
        served.text().contains("\"Code\" : \"Success\""),
        "{}",
        served.text()
    );
    let listed = faults(&imds);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["State"], "ended");
    assert_eq!(
        (
            listed[0]["Matched"].as_u64(),
            listed[0]["Injected"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let metrics = imds.admin("GET", "/metrics", None).text();
    assert!(
        metrics.contains(&format!(
            "imds_faults_injected_total{{instance_id=\"{INSTANCE}\",kind=\"status\"}} 1"
        )),
        "{metrics}"
    );
    let log = imds.stop().join("\n");
    assert!(log.contains("Fault injected."), "{log}");
}

#[test]
fn reset_sends_an_rst_and_close_a_fin_without_an_answer() {
    let imds = server().config(config()).start();
    inject(
        &imds,
        r#"{"Kind": "reset", "Path": "meta-data/ami-id", "Count": 1}"#,
    );
    let (read, error) = raw_get(&imds, "/latest/meta-data/ami-id");
    assert!(read.is_empty(), "{}", String::from_utf8_lossy(&read));
    assert_eq!(error, Some(ErrorKind::ConnectionReset));
    inject(
        &imds,
        r#"{"Kind": "close", "Path": "meta-data/ami-id", "Count": 1}"#,
    );
    let (read, error) = raw_get(&imds, "/latest/meta-data/ami-id");
    assert!(read.is_empty(), "{}", String::from_utf8_lossy(&read));
    assert_eq!(error, None, "a FIN: the read ends cleanly");
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 200);
}

#[test]
fn no_answer_holds_the_request_until_the_fault_is_removed() {
    let imds = server().config(config()).start();
    inject(
        &imds,
        r#"{"Kind": "no-answer", "FaultId": "outage", "Path": "meta-data/**"}"#,
    );
    let address = imds.address();
    let held = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream
            .write_all(b"GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut read = Vec::new();
        let result = stream.read_to_end(&mut read);
        (read, result.err().map(|error| error.kind()))
    });
    // Wait (polling) until the server holds the request, then remove the fault.
    let deadline = Instant::now() + Duration::from_secs(30);
    while faults(&imds)[0]["Matched"].as_u64() != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the request never reached the fault"
        );
        std::thread::yield_now();
    }
    assert!(!held.is_finished(), "the request is held, not answered");
    let removed = imds.admin("DELETE", &format!("{}/outage", faults_path()), None);
    assert_eq!(removed.status, 200, "{}", removed.text());
    let (read, error) = held.join().unwrap();
    assert!(read.is_empty(), "{}", String::from_utf8_lossy(&read));
    assert_eq!(
        error, None,
        "closed without an answer once the fault was removed"
    );
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 200);
    let missing = imds.admin("DELETE", &format!("{}/other", faults_path()), None);
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().contains("InvalidFaultID.NotFound"),
        "{}",
        missing.text()
    );
}

/// The head timeout counts only while a connection waits for a request: an answer held longer
/// than it (a latency fault) is still sent, and the connection is kept for the next request.
#[test]
fn an_answer_held_longer_than_the_head_timeout_is_sent() {
    let imds = server()
        .config(config())
        .args(&["--header-read-timeout", "1"])
        .start();
    inject(
        &imds,
        r#"{"Kind": "latency", "LatencyMs": 2500, "Path": "meta-data/ami-id", "Count": 1}"#,
    );
    let mut stream = TcpStream::connect(imds.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let held = crate::support::read_response(&mut stream).expect("the held answer");
    assert_eq!(held.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(2500));
    // The same connection answers at once after it.
    stream
        .write_all(b"GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let next = crate::support::read_response(&mut stream).expect("the next answer");
    assert_eq!(next.status, 200);
}

#[test]
fn credentials_faults_rewrite_the_document_and_rename_the_role() {
    let imds = server().config(config()).start();
    inject(&imds, r#"{"Kind": "credentials-code", "Count": 1}"#);
    let document: serde_json::Value = serde_json::from_str(&imds.get(CREDENTIALS).text()).unwrap();
    assert_eq!(document["Code"], "AssumeRoleUnauthorizedAccess");
    assert!(document.get("AccessKeyId").is_none(), "{document}");
    inject(
        &imds,
        r#"{"Kind": "credentials-expiry", "ExpiresIn": 120, "Count": 1}"#,
    );
    let document: serde_json::Value = serde_json::from_str(&imds.get(CREDENTIALS).text()).unwrap();
    assert_eq!(document["Code"], "Success");
    let expiration = time::OffsetDateTime::parse(
        document["Expiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expiration - time::OffsetDateTime::now_utc();
    assert!(left <= time::Duration::seconds(120), "{document}");
    assert!(left > time::Duration::ZERO, "{document}");

    inject(
        &imds,
        r#"{"Kind": "role-renamed", "RoleName": "renamed", "FaultId": "rename"}"#,
    );
    assert_eq!(
        imds.get("/latest/meta-data/iam/security-credentials/")
            .text(),
        "renamed"
    );
    assert_eq!(imds.get(CREDENTIALS).status, 404);
    let renamed = imds.get("/latest/meta-data/iam/security-credentials/renamed");
    assert_eq!(renamed.status, 200);
    assert!(renamed.text().contains("AccessKeyId"), "{}", renamed.text());
    let cleared = imds.admin("DELETE", &faults_path(), None);
    assert!(
        cleared.text().contains("\"Removed\":1"),
        "{}",
        cleared.text()
    );
    assert_eq!(imds.get(CREDENTIALS).status, 200);
}

#[test]
fn bad_faults_are_refused_naming_the_field_and_unknown_instances_404() {
    let imds = server().config(config()).start();
    for (body, expect) in [
        (r#"{"Kind": "status", "Status": 200}"#, "Status"),
        (r#"{"Kind": "latency"}"#, "LatencyMs"),
        (r#"{"Kind": "close", "Path": "meta-data/[a"}"#, "Path"),
        (r#"{"Kind": "explode"}"#, "Kind"),
    ] {
        let response = imds.admin("POST", &faults_path(), Some(body));
        assert_eq!(response.status, 400, "{body}");
        assert!(
            response.text().contains(expect),
            "{body}: {}",
            response.text()
        );
    }
    inject(&imds, r#"{"Kind": "close", "FaultId": "once"}"#);
    let taken = imds.admin(
        "POST",
        &faults_path(),
        Some(r#"{"Kind": "close", "FaultId": "once"}"#),
    );
    assert_eq!(taken.status, 409, "{}", taken.text());
    let unknown = imds.admin("GET", "/v1/instances/i-00000000000000000/faults", None);
    assert_eq!(unknown.status, 404);
}

#[test]
fn ctl_injects_describes_and_clears_faults() {
    let imds = server().config(config()).start();
    let injected = imds.ctl_ok(&[
        "inject-fault",
        "--instance-id",
        INSTANCE,
        "--kind",
        "status",
        "--status",
        "503",
        "--path",
        "meta-data/ami-id",
        "--fault-id",
        "busy",
    ]);
    assert!(injected.contains("busy status active"), "{injected}");
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 503);
    let described = imds.ctl_ok(&["describe-faults", "--instance-id", INSTANCE]);
    assert!(described.contains("busy"), "{described}");
    assert!(described.contains("meta-data/ami-id"), "{described}");
    let refused = imds.ctl(&[
        "inject-fault",
        "--instance-id",
        INSTANCE,
        "--kind",
        "nonsense",
    ]);
    assert!(!refused.status.success());
    let cleared = imds.ctl_ok(&["clear-faults", "--instance-id", INSTANCE]);
    assert!(cleared.contains("1 faults removed"), "{cleared}");
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 200);
}

#[test]
fn config_file_faults_are_in_force_from_the_start() {
    let imds = server()
        .config(&format!(
            "{}[[faults]]\nkind = \"status\"\nstatus = 503\npath = \"meta-data/ami-id\"\n\
             fault-id = \"from-config\"\ncount = 1\n",
            config()
        ))
        .start();
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 503);
    assert_eq!(imds.get("/latest/meta-data/ami-id").status, 200);
    let listed = faults(&imds);
    assert_eq!(listed[0]["FaultId"], "from-config");
    assert_eq!(listed[0]["State"], "ended");
    assert_eq!(listed[0]["Injected"].as_u64(), Some(1));
}

/// What botocore's `InstanceMetadataFetcher` (the IMDS credential provider's fetcher) with
/// `num_attempts` gets from `imds`: the access key id and expiry it returns, `none` for each
/// when it returns no credentials.
fn botocore_credentials(imds: &Server, num_attempts: u32) -> (String, String) {
    let output = std::process::Command::new(crate::sts::venv().join("bin/python"))
        .args([
            "-c",
            "import os\n\
             from botocore.utils import InstanceMetadataFetcher\n\
             fetcher = InstanceMetadataFetcher(timeout=5, num_attempts=int(os.environ['ATTEMPTS']),\n\
                                               base_url=os.environ['IMDS'])\n\
             credentials = fetcher.retrieve_iam_role_credentials()\n\
             print(credentials.get('access_key', 'none'))\n\
             print(credentials.get('expiry_time', 'none'))\n",
        ])
        .env("IMDS", format!("http://{}/", imds.address()))
        .env("ATTEMPTS", num_attempts.to_string())
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .output()
        .expect("run the virtualenv's python (scripts/install-deps makes it)");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines = stdout.lines().map(str::to_owned);
    (lines.next().unwrap(), lines.next().unwrap())
}

#[test]
fn botocore_retries_a_500_on_credentials_gives_up_and_recovers_once_cleared() {
    let imds = server().config(config()).start();
    inject(
        &imds,
        r#"{"Kind": "status", "Status": 500, "Path": "meta-data/iam/security-credentials/*", "FaultId": "outage"}"#,
    );
    // Each of its attempts gets the 500; then it returns no credentials.
    assert_eq!(botocore_credentials(&imds, 3).0, "none");
    assert_eq!(faults(&imds)[0]["Injected"].as_u64(), Some(3));
    // A document with a Code other than Success is no credentials either, without retries.
    assert_eq!(imds.admin("DELETE", &faults_path(), None).status, 200);
    inject(
        &imds,
        r#"{"Kind": "credentials-code", "FaultId": "refused"}"#,
    );
    assert_eq!(botocore_credentials(&imds, 3).0, "none");
    let refused = faults(&imds)
        .into_iter()
        .find(|fault| fault["FaultId"] == "refused")
        .unwrap();
    assert_eq!(refused["Injected"].as_u64(), Some(1));
    assert_eq!(imds.admin("DELETE", &faults_path(), None).status, 200);
    let (access_key_id, _) = botocore_credentials(&imds, 1);
    assert!(access_key_id.starts_with("ASIA"), "{access_key_id}");
}

#[test]
fn botocore_moves_a_short_expiration_ahead() {
    let imds = server().config(config()).start();
    inject(&imds, r#"{"Kind": "credentials-expiry", "ExpiresIn": 60}"#);
    let (access_key_id, expiry) = botocore_credentials(&imds, 1);
    assert!(access_key_id.starts_with("ASIA"), "{access_key_id}");
    // Served a minute ahead; botocore extends it to 12 to 20 minutes from now.
    let expiry =
        time::OffsetDateTime::parse(&expiry, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let ahead = expiry - time::OffsetDateTime::now_utc();
    assert!(
        ahead > time::Duration::minutes(11) && ahead <= time::Duration::minutes(20),
        "{ahead}"
    );
}
