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

/// One key's block of a user's document: its `#Name=value` lines and its key line.
#[derive(Debug)]
struct Block {
    fields: Vec<(String, String)>,
    key: String,
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
/// a blank one (the signature, which imds leaves out).
fn blocks(document: &str) -> Vec<Block> {
    assert!(document.ends_with("\n\n"), "{document:?}");
    document
        .trim_end_matches('\n')
        .split("\n\n")
        .map(|block| {
            let lines: Vec<&str> = block.split('\n').collect();
            let (key, fields) = lines.split_last().unwrap();
            Block {
                fields: fields
                    .iter()
                    .map(|line| {
                        let (name, value) =
                            line.strip_prefix('#').unwrap().split_once('=').unwrap();
                        (name.to_owned(), value.to_owned())
                    })
                    .collect(),
                key: (*key).to_owned(),
            }
        })
        .collect()
}

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

        // Before any key: no managed-ssh-keys/ at all.
        let listing = client.text("/latest/meta-data/");
        assert!(
            !listing.split('\n').any(|line| line == "managed-ssh-keys/"),
            "{listing}"
        );
        client.absent("/latest/meta-data/managed-ssh-keys/");
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
            "active-keys/"
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
        let leaves = client.crawl("/latest/meta-data/managed-ssh-keys/");
        assert_eq!(leaves.len(), 2, "{leaves:?}");
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
    client.absent("/latest/meta-data/managed-ssh-keys/");
    let listing = client.text("/latest/meta-data/");
    assert!(
        !listing.split('\n').any(|line| line == "managed-ssh-keys/"),
        "{listing}"
    );
}
