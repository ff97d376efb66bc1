//! EC2 Instance Connect: `imds ctl send-ssh-public-key` (and its control-API call) puts a key at
//! `meta-data/managed-ssh-keys/active-keys/USER` for 60 seconds, in both token modes; keys of
//! one user add up, other users are unaffected, bad input gets the Instance Connect API's errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{head, server, ModeClient as Client, Server};

const FIRST: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNhFc1R2IF6bIePrctFQFKCdmRXHXKsAEsvwU/5QSZS me@host";
const SECOND: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC7hYC3mJwXXHWOWUcQint/zyQl+OnyusrfFis24rfqf second";
/// A 1024-bit RSA key: too short for EC2.
const SHORT_RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCzeRskzgzKBK+VGqQFc8XXvjYZH5WI82o5fmt5Lj9OSTOdEcbqTsnVkZVX9OreKrySatrW+shIxwaPrwSzjmcMrVkmqmZFz0E51KbjOrK4YbCDGVSWvjRETupWPccWXeuzXZkDop9PecUEiLMKg/ulWDacwnIYBy9hLp1dN4fMAw== small";

const KEYS: &str = "/latest/meta-data/managed-ssh-keys/active-keys/";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes `key` with a final line feed, as `ssh-keygen` writes `.pub` files.
fn key_file(dir: &tempfile::TempDir, name: &str, key: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{key}\n")).unwrap();
    path
}

/// `imds ctl send-ssh-public-key`'s arguments.
fn send_args<'a>(instance_id: &'a str, user: &'a str, key: &'a str) -> [&'a str; 7] {
    [
        "send-ssh-public-key",
        "--instance-id",
        instance_id,
        "--instance-os-user",
        user,
        "--ssh-public-key",
        key,
    ]
}

fn send(server: &Server, instance_id: &str, user: &str, key: &std::path::Path) -> String {
    let mut args = vec!["--output", "json"];
    args.extend(send_args(instance_id, user, key.to_str().unwrap()));
    server.ctl_ok(&args)
}

/// One key's block of a user's document: its `#Name=value` lines, its key line and its
/// signature (base64).
#[derive(Debug)]
struct Block {
    fields: Vec<(String, String)>,
    key: String,
    signature: String,
}

impl Block {
    fn field(&self, name: &str) -> &str {
        &self
            .fields
            .iter()
            .find(|(field, _)| field == name)
            .unwrap_or_else(|| panic!("no #{name}= in {self:?}"))
            .1
    }
}

/// Reads a document as the on-instance parser does: `#` lines, the key line, then lines up to
/// a blank one (the signature).
fn blocks(document: &str) -> Vec<Block> {
    assert!(document.ends_with("\n\n"), "{document:?}");
    document
        .trim_end_matches('\n')
        .split("\n\n")
        .map(|block| {
            let lines: Vec<&str> = block.split('\n').collect();
            let fields = lines.iter().take_while(|line| line.starts_with('#'));
            let rest = &lines[fields.clone().count()..];
            assert!(rest[0].starts_with("ssh"), "{block}");
            Block {
                fields: fields
                    .map(|line| {
                        let (name, value) =
                            line.strip_prefix('#').unwrap().split_once('=').unwrap();
                        (name.to_owned(), value.to_owned())
                    })
                    .collect(),
                key: rest[0].to_owned(),
                signature: rest[1..].concat(),
            }
        })
        .collect()
}

/// `managed-ssh-keys/`'s listing without keys: the signer's chain and OCSP responses only.
const SIGNER_ONLY: &str = "signer-cert\nsigner-ocsp/";

#[test]
fn ssh_keys_sent_with_ctl_are_served_per_user_in_both_token_modes() {
    for mode in ["optional", "required"] {
        let server = server().args(&["--http-tokens", mode]).start();
        let client = Client::new(&server, mode);
        let dir = tempfile::tempdir().unwrap();
        let instance_id = client.text("/latest/meta-data/instance-id");
        let account = client.json("/latest/dynamic/instance-identity/document")["accountId"]
            .as_str()
            .unwrap()
            .to_owned();

        // Before any key: managed-ssh-keys/ holds the signer's chain, no active-keys/.
        let listing = client.text("/latest/meta-data/");
        assert!(
            listing.split('\n').any(|line| line == "managed-ssh-keys/"),
            "{listing}"
        );
        assert_eq!(
            client.text("/latest/meta-data/managed-ssh-keys/"),
            SIGNER_ONLY
        );
        client.absent(KEYS);
        client.absent(&format!("{KEYS}ec2-user/"));

        let first = key_file(&dir, "first.pub", FIRST);
        let before = unix_now();
        let answer: serde_json::Value =
            serde_json::from_str(&send(&server, &instance_id, "ec2-user", &first)).unwrap();
        let after = unix_now();
        assert_eq!(answer["Success"], true, "{answer}");
        let request_id = answer["RequestId"].as_str().unwrap().to_owned();
        assert_eq!(answer.as_object().unwrap().len(), 2, "{answer}");

        let listing = client.text("/latest/meta-data/");
        assert!(
            listing.split('\n').any(|line| line == "managed-ssh-keys/"),
            "{listing}"
        );
        assert_eq!(
            client.text("/latest/meta-data/managed-ssh-keys/"),
            format!("active-keys/\n{SIGNER_ONLY}")
        );
        assert_eq!(client.text(KEYS), "ec2-user");
        // The on-instance script asks with a trailing slash, other clients without.
        let document = client.text(&format!("{KEYS}ec2-user/"));
        assert_eq!(client.text(&format!("{KEYS}ec2-user")), document);
        let found = blocks(&document);
        assert_eq!(found.len(), 1, "{document}");
        let block = &found[0];
        assert_eq!(
            block
                .fields
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>(),
            ["Timestamp", "Instance", "Caller", "Request"]
        );
        let expires: i64 = block.field("Timestamp").parse().unwrap();
        assert!((before + 60..=after + 60).contains(&expires), "{expires}");
        assert_eq!(block.field("Instance"), instance_id);
        assert_eq!(
            block.field("Caller"),
            format!("arn:aws:iam::{account}:user/admin")
        );
        assert_eq!(block.field("Request"), request_id);
        assert_eq!(block.key, FIRST);
        if mode == "optional" {
            // The script's first question: does the user have keys (HEAD, 200)?
            assert_eq!(
                head(server.address(), &format!("{KEYS}ec2-user/")).status,
                200
            );
            assert_eq!(
                head(server.address(), &format!("{KEYS}ubuntu/")).status,
                404
            );
        }

        // Another user has none.
        client.absent(&format!("{KEYS}ubuntu/"));
        client.absent(&format!("{KEYS}ubuntu"));

        // A second key for the same user is added after the first.
        let second = key_file(&dir, "second.pub", SECOND);
        let answer: serde_json::Value =
            serde_json::from_str(&send(&server, &instance_id, "ec2-user", &second)).unwrap();
        assert_ne!(answer["RequestId"].as_str().unwrap(), request_id);
        let found = blocks(&client.text(&format!("{KEYS}ec2-user")));
        assert_eq!(
            found
                .iter()
                .map(|block| block.key.as_str())
                .collect::<Vec<_>>(),
            [FIRST, SECOND]
        );
        assert_eq!(found[0].field("Request"), request_id);
        assert_eq!(
            found[1].field("Request"),
            answer["RequestId"].as_str().unwrap()
        );

        // A key for another user leaves ec2-user's as they are.
        let ec2_user = client.text(&format!("{KEYS}ec2-user"));
        let text = server.ctl_ok(&send_args(&instance_id, "ubuntu", second.to_str().unwrap()));
        assert!(text.ends_with("sent (success: true)\n"), "{text}");
        assert_eq!(client.text(KEYS), "ec2-user\nubuntu");
        assert_eq!(client.text(&format!("{KEYS}ec2-user")), ec2_user);
        let ubuntu = blocks(&client.text(&format!("{KEYS}ubuntu")));
        assert_eq!(ubuntu.len(), 1);
        assert_eq!(ubuntu[0].key, SECOND);
        // Every listed name answers.
        // Two users, the chain and the OCSP responses of its two certificates.
        let leaves = client.crawl("/latest/meta-data/managed-ssh-keys/");
        assert_eq!(leaves.len(), 5, "{leaves:?}");
    }
}

#[test]
fn ssh_key_requests_with_bad_input_get_instance_connect_errors() {
    let server = server().start();
    let dir = tempfile::tempdir().unwrap();
    let instance_id = server.get("/latest/meta-data/instance-id").text();
    let path = format!("/v1/instances/{instance_id}/ssh-public-keys");
    let body = |user: &str, key: &str, zone: Option<&str>| {
        let mut body = serde_json::json!({"InstanceOSUser": user, "SSHPublicKey": key});
        if let Some(zone) = zone {
            body["AvailabilityZone"] = zone.into();
        }
        body.to_string()
    };
    let zone = server
        .get("/latest/meta-data/placement/availability-zone")
        .text();
    let check = |path: &str, body: &str, status: u16, code: &str, says: &str| {
        let response = server.admin("POST", path, Some(body));
        assert_eq!(response.status, status, "{body}: {}", response.text());
        let error: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(error["Code"], code, "{body}: {error}");
        let message = error["Message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    };
    let good = body("ec2-user", FIRST, Some(&zone));
    check(
        "/v1/instances/i-00000000000000000/ssh-public-keys",
        &good,
        404,
        "EC2InstanceNotFoundException",
        "i-00000000000000000",
    );
    check(
        "/v1/instances/not-an-instance/ssh-public-keys",
        &good,
        400,
        "InvalidArgsException",
        "InstanceId",
    );
    check(
        &path,
        &body("bad user", FIRST, None),
        400,
        "InvalidArgsException",
        "InstanceOSUser",
    );
    check(
        &path,
        &body("1234", FIRST, None),
        400,
        "InvalidArgsException",
        "InstanceOSUser",
    );
    check(
        &path,
        &body("ec2-user", SHORT_RSA, None),
        400,
        "InvalidArgsException",
        "1024 bits",
    );
    check(
        &path,
        &body("ec2-user", &FIRST.replace("AAAAC3", "AAAAB3"), None),
        400,
        "InvalidArgsException",
        "SSHPublicKey",
    );
    check(
        &path,
        &body("ec2-user", FIRST, Some("xx-nowhere-9z")),
        404,
        "EC2InstanceNotFoundException",
        "xx-nowhere-9z",
    );
    check(
        &path,
        &body("ec2-user", FIRST, Some("nowhere")),
        400,
        "InvalidArgsException",
        "AvailabilityZone",
    );
    // Nothing refused was kept.
    assert_eq!(
        server
            .get("/latest/meta-data/managed-ssh-keys/active-keys/ec2-user")
            .status,
        404
    );
    // The zone the instance is in is taken.
    let response = server.admin("POST", &path, Some(&good));
    assert_eq!(response.status, 200, "{}", response.text());

    // ctl: a missing file and a malformed key fail, naming the file, and send nothing.
    let missing = server.ctl(&send_args(&instance_id, "ubuntu", "/nonexistent/key.pub"));
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("/nonexistent/key.pub"), "{stderr}");
    let malformed = key_file(
        &dir,
        "bad.pub",
        "not a key at all, but long enough to pass the length check of the API",
    );
    let output = server.ctl(&send_args(
        &instance_id,
        "ubuntu",
        malformed.to_str().unwrap(),
    ));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.pub"), "{stderr}");
    assert_eq!(
        server
            .get("/latest/meta-data/managed-ssh-keys/active-keys/ubuntu")
            .status,
        404
    );
}

/// The one test that waits: a key is gone once its 60 seconds have passed.
#[test]
fn ssh_keys_expire_after_60_seconds() {
    let server = server().start();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(&server, "optional");
    let instance_id = client.text("/latest/meta-data/instance-id");
    let first = key_file(&dir, "first.pub", FIRST);
    send(&server, &instance_id, "ec2-user", &first);
    let document = client.text(&format!("{KEYS}ec2-user"));
    let expires: i64 = blocks(&document)[0].field("Timestamp").parse().unwrap();
    // Until its second of expiry it is served (the server's clock is this one).
    std::thread::sleep(Duration::from_secs(30));
    assert!(unix_now() < expires);
    assert_eq!(client.text(&format!("{KEYS}ec2-user")), document);
    while unix_now() < expires {
        std::thread::sleep(Duration::from_millis(100));
    }
    client.absent(&format!("{KEYS}ec2-user"));
    client.absent(&format!("{KEYS}ec2-user/"));
    client.absent(KEYS);
    assert_eq!(
        client.text("/latest/meta-data/managed-ssh-keys/"),
        SIGNER_ONLY
    );
}

/// Runs `openssl ARGS` in `dir`; its status and standard output.
fn openssl(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// The checks AWS's `eic_parse_authorized_keys` makes, with the same `openssl` commands, on what
/// a running server serves over HTTP (fetched by the paths `eic_curl_authorized_keys` asks, with
/// a 5-second token as it takes): the chain verifies strictly against the CA
/// `imds identity instance-connect-ca` prints, the signer's CN is
/// `managed-ssh-signer.REGION.DOMAIN`, every certificate's OCSP response says good, and each
/// key block's RSA-PSS signature verifies (and fails once the block is changed).
#[test]
fn instance_connect_keys_pass_the_openssl_checks_of_the_aws_script() {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let server = server().args(&["--http-tokens", "required"]).start();
    let token = server.token(5);
    let get = |path: &str| {
        let response = server.get_with_token(&format!("/latest/meta-data/{path}"), &token);
        assert_eq!(response.status, 200, "{path}: {response:?}");
        response.text()
    };
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let instance_id = get("instance-id/");
    let zone = get("placement/availability-zone/");
    let region = zone.trim_end_matches(|c: char| c.is_ascii_lowercase());
    let domain = get("services/domain/");
    for (user, key) in [("ec2-user", FIRST), ("ec2-user", SECOND)] {
        send(&server, &instance_id, user, &key_file(&dir, "key.pub", key));
    }

    // The CA a user trusts, as the command prints it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_imds"))
        .args(["identity", "instance-connect-ca", "--state-dir"])
        .arg(&server.state_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let ca = String::from_utf8(output.stdout).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----\n"), "{ca}");
    std::fs::write(work.join("ca.pem"), &ca).unwrap();

    // The chain: the signer's certificate first, then the CA's.
    let chain = get("managed-ssh-keys/signer-cert/");
    let end = "-----END CERTIFICATE-----";
    let certificates: Vec<String> = chain
        .split_inclusive(end)
        .filter(|part| part.contains(end))
        .map(|part| format!("{}\n", part.trim_start()))
        .collect();
    assert_eq!(certificates.len(), 2, "{chain}");
    assert_eq!(certificates[1], ca);
    std::fs::write(work.join("cert.pem"), &certificates[0]).unwrap();
    let (ok, subject) = openssl(work, &["x509", "-noout", "-subject", "-in", "cert.pem"]);
    assert!(ok, "{subject}");
    let expected = format!("managed-ssh-signer.{region}.{domain}");
    assert!(
        subject.trim_end().ends_with(&format!("CN = {expected}"))
            || subject.trim_end().ends_with(&format!("CN={expected}")),
        "{subject}"
    );
    let (ok, verify) = openssl(
        work,
        &["verify", "-x509_strict", "-CAfile", "ca.pem", "cert.pem"],
    );
    assert!(ok, "{verify}");
    assert_eq!(verify.trim_end(), "cert.pem: OK");
    // Another CA does not verify it.
    let (ok, other) = openssl(
        work,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-subj",
            "/CN=other",
            "-days",
            "1",
        ],
    );
    assert!(ok, "{other}");
    let (ok, verify) = openssl(
        work,
        &["verify", "-x509_strict", "-CAfile", "other.pem", "cert.pem"],
    );
    assert!(!ok, "{verify}");

    // One OCSP response per certificate, named by its SHA-1 fingerprint; each says good.
    let listed: Vec<String> = get("managed-ssh-keys/signer-ocsp/")
        .split('\n')
        .map(str::to_owned)
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for name in ["cert.pem", "ca.pem"] {
        let (ok, fingerprint) = openssl(
            work,
            &["x509", "-noout", "-fingerprint", "-sha1", "-in", name],
        );
        assert!(ok, "{fingerprint}");
        let fingerprint = fingerprint
            .trim_end()
            .split_once('=')
            .unwrap()
            .1
            .replace(':', "");
        assert!(
            listed.contains(&fingerprint),
            "{fingerprint} not in {listed:?}"
        );
        let staple = engine
            .decode(get(&format!("managed-ssh-keys/signer-ocsp/{fingerprint}")))
            .unwrap();
        std::fs::write(work.join(&fingerprint), staple).unwrap();
        let (ok, status) = openssl(
            work,
            &[
                "ocsp",
                "-no_nonce",
                "-issuer",
                "ca.pem",
                "-cert",
                name,
                "-VAfile",
                "ca.pem",
                "-respin",
                &fingerprint,
            ],
        );
        assert!(ok, "{status}");
        assert!(status.starts_with(&format!("{name}: good")), "{status}");
    }

    // Each block's signature, over its `#` lines and key line, verifies with the signer's key.
    let (ok, public_key) = openssl(work, &["x509", "-pubkey", "-noout", "-in", "cert.pem"]);
    assert!(ok, "{public_key}");
    std::fs::write(work.join("pubkey"), public_key).unwrap();
    let found = blocks(&get("managed-ssh-keys/active-keys/ec2-user/"));
    assert_eq!(found.len(), 2);
    for (index, block) in found.iter().enumerate() {
        let mut data = String::new();
        for (name, value) in &block.fields {
            data.push_str(&format!("#{name}={value}\n"));
        }
        data.push_str(&format!("{}\n", block.key));
        std::fs::write(work.join("signed"), &data).unwrap();
        std::fs::write(work.join("sig"), engine.decode(&block.signature).unwrap()).unwrap();
        let verify = [
            "dgst",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-verify",
            "pubkey",
            "-signature",
            "sig",
            "signed",
        ];
        let (ok, text) = openssl(work, &verify);
        assert!(ok, "block {index}: {text}");
        assert!(text.contains("Verified OK"), "{text}");
        std::fs::write(
            work.join("signed"),
            data.replace("#Timestamp=", "#Timestamp=9"),
        )
        .unwrap();
        let (ok, text) = openssl(work, &verify);
        assert!(!ok, "a changed block verified: {text}");
    }
}
