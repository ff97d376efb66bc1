//! The control plane over a network: TLS and mTLS on the control listener (certificates made
//! here with rcgen, real rustls on both sides), the certificate reloaded on SIGHUP, scoped and
//! named tokens from a directory, the audit of admin-scope calls, and the fleet-mode refusal
//! of a plain-HTTP control listener off loopback.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
    time::{Duration, Instant},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, ServerName};

use crate::support::{self, Server};

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    Ca {
        pem: certificate.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate and key PEM pair issued by `ca`, for a server (`127.0.0.1`, `localhost`) or a
/// client named `name`.
struct Leaf {
    certificate: String,
    key: String,
}

fn leaf(ca: &Ca, name: &str, server: bool) -> Leaf {
    let names = if server {
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        certificate: certificate.pem(),
        key: key.serialize_pem(),
    }
}

/// Writes `text` to `directory/name`; its path.
fn write(directory: &Path, name: &str, text: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `imds ctl` against `server` over https, with the given extra arguments (`--ca-file`, ...).
fn ctl_https(server: &Server, tls: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imds"))
        .arg("ctl")
        .arg("--endpoint")
        .arg(format!("https://{}", server.admin_address))
        .arg("--state-dir")
        .arg(&server.state_dir)
        .args(tls)
        .args(args)
        .env_remove("IMDS_ADMIN_TOKEN")
        .output()
        .unwrap()
}

/// Waits until a log line contains `text`.
#[track_caller]
fn wait_for_log(server: &Server, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if server.log().iter().any(|line| line.contains(text)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no log line with {text:?}: {:#?}", server.log());
}

/// The certificate the server presents to a new TLS connection, checked against `ca_pem`.
fn served_certificate(server: &Server, ca_pem: &str) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let mut socket = TcpStream::connect(server.admin_address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).unwrap();
    }
    let _ = socket.flush();
    connection.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[test]
fn ctl_reaches_the_control_api_over_mtls_and_is_refused_without_the_right_certificate() {
    let directory = tempfile::tempdir().unwrap();
    let files = directory.path();
    let server_ca = ca("imds test server CA");
    let client_ca = ca("imds test client CA");
    let other_ca = ca("imds test other CA");
    let served = leaf(&server_ca, "imds control", true);
    let operator = leaf(&client_ca, "operator", false);
    let stranger = leaf(&other_ca, "stranger", false);
    let server_ca_file = write(files, "server-ca.pem", &server_ca.pem);
    let other_ca_file = write(files, "other-ca.pem", &other_ca.pem);
    let cert = write(files, "server.pem", &served.certificate);
    let key = write(files, "server.key", &served.key);
    let client_ca_file = write(files, "client-ca.pem", &client_ca.pem);
    let operator_cert = write(files, "operator.pem", &operator.certificate);
    let operator_key = write(files, "operator.key", &operator.key);
    let stranger_cert = write(files, "stranger.pem", &stranger.certificate);
    let stranger_key = write(files, "stranger.key", &stranger.key);
    let server = support::server()
        .args(&[
            "--admin-tls-cert",
            arg(&cert),
            "--admin-tls-key",
            arg(&key),
            "--admin-client-ca",
            arg(&client_ca_file),
        ])
        .start();

    let with_operator = [
        "--ca-file",
        arg(&server_ca_file),
        "--cert",
        arg(&operator_cert),
        "--key",
        arg(&operator_key),
    ];
    let output = ctl_https(
        &server,
        &with_operator,
        &["--output", "json", "describe-instances"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let described: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(described["Instances"].is_array(), "{described}");

    // No client certificate: the server ends the handshake.
    let output = ctl_https(
        &server,
        &["--ca-file", arg(&server_ca_file)],
        &["describe-instances"],
    );
    assert!(!output.status.success());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach the control API"), "{stderr}");

    // A certificate from a CA the server does not take.
    let output = ctl_https(
        &server,
        &[
            "--ca-file",
            arg(&server_ca_file),
            "--cert",
            arg(&stranger_cert),
            "--key",
            arg(&stranger_key),
        ],
        &["describe-instances"],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The client checks the server too: the wrong CA refuses it.
    let output = ctl_https(
        &server,
        &[
            "--ca-file",
            arg(&other_ca_file),
            "--cert",
            arg(&operator_cert),
            "--key",
            arg(&operator_key),
        ],
        &["describe-instances"],
    );
    assert_eq!(output.status.code(), Some(1));

    // Plain HTTP on the TLS listener is not served.
    let mut socket = TcpStream::connect(server.admin_address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
}

#[test]
fn a_new_certificate_is_served_to_new_connections_after_sighup() {
    let directory = tempfile::tempdir().unwrap();
    let files = directory.path();
    let server_ca = ca("imds test server CA");
    let first = leaf(&server_ca, "first", true);
    let cert = write(files, "server.pem", &first.certificate);
    let key = write(files, "server.key", &first.key);
    let server = support::server()
        .args(&["--admin-tls-cert", arg(&cert), "--admin-tls-key", arg(&key)])
        .start();
    let first_der = CertificateDer::from_pem_slice(first.certificate.as_bytes()).unwrap();
    assert_eq!(served_certificate(&server, &server_ca.pem), first_der);

    // A broken pair is refused on reload, and the first certificate is still served.
    write(files, "server.key", "not a key\n");
    server.signal("HUP");
    wait_for_log(&server, "Control API certificate not reloaded");
    assert_eq!(served_certificate(&server, &server_ca.pem), first_der);

    let second = leaf(&server_ca, "second", true);
    write(files, "server.pem", &second.certificate);
    write(files, "server.key", &second.key);
    server.signal("HUP");
    wait_for_log(&server, "Control API certificate reloaded.");
    let second_der = CertificateDer::from_pem_slice(second.certificate.as_bytes()).unwrap();
    assert_ne!(first_der, second_der);
    assert_eq!(served_certificate(&server, &server_ca.pem), second_der);
    // Still serving after the reloads.
    let output = ctl_https(
        &server,
        &["--ca-file", arg(&write(files, "ca.pem", &server_ca.pem))],
        &["describe-instances"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Waits until the audit log has a line for which `wanted` holds.
#[track_caller]
fn wait_for_audit(path: &Path, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = audit_lines(path).into_iter().find(&wanted) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no such audit line: {:#?}",
            audit_lines(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const INSTANCE: &str = r#"{"instance-id": "i-0aaaaaaaaaaaaaaa1", "addresses": ["127.0.0.9"]}"#;

#[test]
fn read_only_tokens_describe_but_cannot_write_and_tokens_come_and_go_without_a_restart() {
    let tokens = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.jsonl");
    write(
        tokens.path(),
        "grafana.read-only",
        "view-secret-0123456789\n",
    );
    let server = support::server()
        .args(&[
            "--admin-tokens-dir",
            arg(tokens.path()),
            "--audit-log",
            arg(&audit),
        ])
        .start();
    let view = Some("view-secret-0123456789");

    let response = server.admin_with("GET", "/v1/instances", None, view);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(server.admin_with("GET", "/metrics", None, view).status, 200);
    let response = server.admin_with("POST", "/v1/instances", Some(INSTANCE), view);
    assert_eq!(response.status, 403, "{response:?}");
    let body: serde_json::Value = serde_json::from_str(&response.text()).unwrap();
    assert_eq!(body["Code"], "UnauthorizedOperation");
    assert!(
        body["Message"].as_str().unwrap().contains("grafana"),
        "{body}"
    );
    assert!(
        !response.text().contains("view-secret"),
        "{}",
        response.text()
    );
    // Role credentials need the admin scope too.
    let response = server.admin_with(
        "GET",
        "/v1/instances/i-0aaaaaaaaaaaaaaa1/roles/app/credentials",
        None,
        view,
    );
    assert_eq!(response.status, 403, "{response:?}");
    let refused = wait_for_audit(&audit, |line| {
        line["operation"] == "RegisterInstance" && line["status"] == 403
    });
    assert_eq!(refused["event"], "control-api-call");
    assert_eq!(refused["endpoint"], "control-api");
    assert_eq!(refused["token"], "grafana");
    assert!(refused["caller"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    // A token added to the directory works at once; the single admin token still works.
    write(tokens.path(), "deploy.admin", "deploy-secret-0123456789");
    let deploy = Some("deploy-secret-0123456789");
    let response = server.admin_with("POST", "/v1/instances", Some(INSTANCE), deploy);
    assert_eq!(response.status, 201, "{response:?}");
    let written = wait_for_audit(&audit, |line| {
        line["operation"] == "RegisterInstance" && line["status"] == 201
    });
    assert_eq!(written["token"], "deploy");
    let response = server.admin("DELETE", "/v1/instances/i-0aaaaaaaaaaaaaaa1", None);
    assert_eq!(response.status, 204, "{response:?}");
    let deleted = wait_for_audit(&audit, |line| line["operation"] == "DeregisterInstance");
    assert_eq!(deleted["token"], "admin");
    assert_eq!(deleted["instance_id"], "i-0aaaaaaaaaaaaaaa1");
    assert_eq!(deleted["status"], 204);

    // Removed: refused, and the refusal is audited without a name.
    std::fs::remove_file(tokens.path().join("deploy.admin")).unwrap();
    let response = server.admin_with("POST", "/v1/instances", Some(INSTANCE), deploy);
    assert_eq!(response.status, 401, "{response:?}");
    let unknown = wait_for_audit(&audit, |line| line["status"] == 401);
    assert!(unknown.get("token").is_none(), "{unknown}");
    assert_eq!(unknown["operation"], "RegisterInstance");

    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains("secret"), "{text}");
    let log = server.stop();
    assert!(
        log.iter().all(|line| !line.contains("secret-0123456789")),
        "{log:#?}"
    );
}

#[test]
fn fleet_mode_refuses_a_plain_http_control_listener_off_loopback() {
    let state = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_imds"))
            .args(["serve", "--state-dir"])
            .arg(state.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--host-id",
                "hv-1",
                "--store",
                "postgres://imds@127.0.0.1:1/imds",
                "--store-key-file",
                "/nonexistent/store.key",
                "--admin-listen",
                "0.0.0.0:0",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let output = serve(&[]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-listen"), "{stderr}");
    assert!(stderr.contains("--admin-tls-cert"), "{stderr}");
    assert!(stderr.contains("--admin-trusted-network"), "{stderr}");

    // Told the network is trusted, it goes on (to the next thing missing: the store key).
    let output = serve(&["--admin-trusted-network"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("--admin-trusted-network"), "{stderr}");
    assert!(stderr.contains("store.key"), "{stderr}");
}
