//! `imds capture`: a capture of one `imds serve` replayed by another serves the same tree
//! (credentials and signatures aside, which every imds makes anew), for the example instance
//! and for one with every optional category; IMDSv1 only when asked; every wait bounded.

use std::{net::SocketAddr, process::Command, time::Duration};

use crate::{
    guest_api::EXAMPLE,
    support::{
        assert_same_tree, comparable, output_within, proxy, server, silent_listener, walk_tree,
        Namespace, Server,
    },
};

/// Far longer than any capture here takes: it only stops a hung test.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// An instance with every optional category and setting: tags on, tokens required, three
/// interfaces (IPv6, several addresses and groups), placement group, kernel and ramdisk, two
/// keys, binary user data, a Spot interruption, a rebalance recommendation, an Auto Scaling
/// state and maintenance events scheduled, completed and canceled.
const EVERYTHING: &str = r#"
[instance]
instance-id = "i-0fedcba9876543210"
account-id = "210987654321"
ami-id = "ami-0123456789abcdef0"
ami-launch-index = 2
ami-manifest-path = "my-bucket/my-image.manifest.xml"
ancestor-ami-ids = ["ami-0aaaaaaaaaaaaaaaa", "ami-0bbbbbbbbbbbbbbbb"]
architecture = "arm64"
instance-type = "c7g.xlarge"
instance-life-cycle = "spot"
kernel-id = "aki-5c21674b"
ramdisk-id = "ari-5c21674b"
product-codes = ["3iplms73etrdhxdepv72l6ywj"]
reservation-id = "r-0fedcba9876543210"
pending-time = "2026-10-01T08:30:00Z"
hostname = "i-0fedcba9876543210.ap-southeast-2.compute.internal"
services-domain = "amazonaws.com"
services-partition = "aws"
# gzip magic, a NUL, a carriage return, bytes that are not UTF-8.
user-data-base64 = "H4sIAAAAAAAAA0vLz1dIzs8tKEotLk5NUUjLL8pVSEwuyczPUyjJzytOLVJIz0nMS1FIzs8rSc0rUcjMS0lVKM7PTS0uTk8FAB/4y8YjAAAADQAKAP/+"

[instance.placement]
region = "ap-southeast-2"
availability-zone = "ap-southeast-2c"
availability-zone-id = "apse2-az2"
group-name = "my-partition-group"
host-id = "h-0123456789abcdef0"
partition-number = 3

[[instance.network-interfaces]]
mac = "0a:11:22:33:44:55"
device-number = 0
network-card-index = 0
interface-id = "eni-0aaaaaaaaaaaaaaa1"
local-hostname = "i-0fedcba9876543210.ap-southeast-2.compute.internal"
local-ipv4s = ["10.1.2.3", "10.1.2.4"]
public-ipv4s = ["198.51.100.7", "198.51.100.8"]
public-hostname = "ec2-198-51-100-7.ap-southeast-2.compute.amazonaws.com"
ipv6s = ["2001:db8:1:2::10", "2001:db8:1:2::11"]
security-groups = [{ id = "sg-0aaaaaaaaaaaaaaa1", name = "web" }, { id = "sg-0aaaaaaaaaaaaaaa2", name = "ssh" }]
subnet-id = "subnet-0aaaaaaaaaaaaaaa1"
subnet-ipv4-cidr-block = "10.1.2.0/24"
subnet-ipv6-cidr-blocks = ["2001:db8:1:2::/64"]
vpc-id = "vpc-0aaaaaaaaaaaaaaa1"
vpc-ipv4-cidr-blocks = ["10.1.0.0/16", "100.64.0.0/16"]
vpc-ipv6-cidr-blocks = ["2001:db8:1::/56"]

[[instance.network-interfaces]]
mac = "0a:11:22:33:44:66"
device-number = 1
network-card-index = 1
interface-id = "eni-0aaaaaaaaaaaaaaa2"
local-ipv4s = ["10.1.3.9"]
public-ipv4s = []
security-groups = [{ id = "sg-0aaaaaaaaaaaaaaa3", name = "internal" }]
subnet-id = "subnet-0aaaaaaaaaaaaaaa2"
subnet-ipv4-cidr-block = "10.1.3.0/24"
vpc-id = "vpc-0aaaaaaaaaaaaaaa1"
vpc-ipv4-cidr-blocks = ["10.1.0.0/16"]

[[instance.network-interfaces]]
mac = "0a:11:22:33:44:77"
device-number = 2
interface-id = "eni-0aaaaaaaaaaaaaaa3"
local-ipv4s = []
ipv6s = ["2001:db8:1:4::5"]
security-groups = []
subnet-id = "subnet-0aaaaaaaaaaaaaaa3"
subnet-ipv4-cidr-block = "10.1.4.0/24"
vpc-id = "vpc-0aaaaaaaaaaaaaaa1"

[instance.block-device-mapping]
ami = "/dev/sda1"
root = "/dev/sda1"
ebs2 = "/dev/sdf"
ephemeral0 = "sdb"

[[instance.public-keys]]
name = "deploy"
openssh-key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBG8Y1cOCePbNVMkbBeQSX2qoN+RZEQ3BmXLYCGOdtxM deploy"

[[instance.public-keys]]
name = "backup key"
openssh-key = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 backup"

[instance.iam]
role-name = "app-role"
instance-profile-arn = "arn:aws:iam::210987654321:instance-profile/app-profile"
instance-profile-id = "AIPAEXAMPLEPROFILEID9"
extended-credentials = false

[instance.tags]
Name = "everything"
"aws:autoscaling:groupName" = "my-asg"
"team@example.com" = "a value with spaces, = and\na line feed"
"Ünïcode" = "ünïcode value"

[instance.metadata-options]
http-tokens = "required"
instance-metadata-tags = "enabled"

[instance.events]
spot-interruption = { action = "stop", time = "2026-12-01T10:02:00Z" }
rebalance-notice = "2026-12-01T09:58:00Z"
target-lifecycle-state = "Warmed:Stopped"

[[instance.events.maintenance]]
code = "system-reboot"
description = "scheduled reboot"
event-id = "instance-event-0d59937288b749b32"
not-before = "2027-01-21T09:00:43Z"
not-after = "2027-01-21T09:17:23Z"

[[instance.events.maintenance]]
code = "instance-stop"
description = "scheduled stop"
event-id = "instance-event-0d59937288b749b33"
not-before = "2026-11-01T09:00:00Z"
not-after = "2026-11-01T10:00:00Z"
state = "completed"

[[instance.events.maintenance]]
code = "instance-retirement"
description = "retirement"
event-id = "instance-event-0d59937288b749b34"
not-before = "2026-11-02T09:00:00Z"
not-after = "2026-11-02T10:00:00Z"
state = "canceled"
"#;

/// `imds capture ARGS`, to its end.
fn capture(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imds"));
    command.arg("capture").args(args);
    output_within(command, HANG_GUARD)
}

/// `imds capture --endpoint http://ADDRESS ARGS`, which must succeed: the config file and the
/// report.
#[track_caller]
fn capture_ok(address: SocketAddr, args: &[&str]) -> (String, String) {
    let endpoint = format!("http://{address}");
    let mut all = vec!["--endpoint", endpoint.as_str()];
    all.extend_from_slice(args);
    let output = capture(&all);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "imds capture failed: {stderr}");
    (String::from_utf8(output.stdout).unwrap(), stderr)
}

/// The tree a server serves, ready to compare.
fn tree(server: &Server) -> std::collections::BTreeMap<String, String> {
    comparable(&walk_tree(server.address(), &server.token(600)))
}

/// Captures `original`, serves the capture, and asserts the two trees are the same and that
/// the report found nothing to leave out; returns the config file and the replaying server.
#[track_caller]
fn capture_and_replay(original: &Server, args: &[&str]) -> (String, Server) {
    let (config, report) = capture_ok(original.address(), args);
    assert!(
        report.contains("every one is served back as captured"),
        "{report}"
    );
    assert_eq!(
        report.lines().count(),
        1,
        "nothing but the summary: {report}"
    );
    let replay = server().config(&config).start();
    assert_same_tree(&tree(&replay), &tree(original));
    (config, replay)
}

#[test]
fn a_capture_of_the_example_instance_serves_the_same_tree() {
    let original = server().config(EXAMPLE).start();
    let (config, replay) = capture_and_replay(&original, &[]);
    assert!(
        config.starts_with("# Captured by `imds capture` from http://127.0.0.1:"),
        "{config}"
    );
    assert!(config.contains("http-tokens = \"optional\""), "{config}");
    assert!(
        config.contains("instance-metadata-tags = \"disabled\""),
        "{config}"
    );
    // The original answers the extended credentials path (only its listing was read).
    assert!(config.contains("extended-credentials = true"), "{config}");
    // The role comes back with the same name and other credentials; no secret is copied.
    let token = original.token(60);
    let path = "/latest/meta-data/iam/security-credentials/my-instance-role";
    let served: serde_json::Value =
        serde_json::from_slice(&original.get_with_token(path, &token).body).unwrap();
    for field in ["AccessKeyId", "SecretAccessKey", "Token"] {
        let secret = served[field].as_str().unwrap();
        assert!(!config.contains(secret), "{field} is in the capture");
    }
    let replayed: serde_json::Value =
        serde_json::from_slice(&replay.get_with_token(path, &replay.token(60)).body).unwrap();
    assert_eq!(replayed["Code"], "Success");
    assert_ne!(replayed["AccessKeyId"], served["AccessKeyId"]);
    // The replay signs with its own key.
    let signature = "/latest/dynamic/instance-identity/signature";
    assert_ne!(
        original.get_with_token(signature, &token).body,
        replay.get_with_token(signature, &replay.token(60)).body
    );
}

#[test]
fn a_capture_with_every_optional_category_serves_the_same_tree() {
    let original = server().config(EVERYTHING).start();
    let (config, replay) = capture_and_replay(&original, &["--api-version", "2021-03-23"]);
    for expect in [
        "http-tokens = \"required\"",
        "instance-metadata-tags = \"enabled\"",
        "user-data-base64 = ",
        "state = \"canceled\"",
        "target-lifecycle-state = \"Warmed:Stopped\"",
        "instance-life-cycle = \"spot\"",
        "name = \"app-role\"",
        "extended-credentials = false",
    ] {
        assert!(config.contains(expect), "{expect} missing from\n{config}");
    }
    // Tokenless requests are refused by the replay too, and user data is the same bytes.
    assert_eq!(replay.get("/latest/meta-data/instance-id").status, 401);
    // The extended credentials path answers 404 there as on the original.
    let extended = "/latest/meta-data/iam/security-credentials-extended/";
    assert_eq!(
        replay.get_with_token(extended, &replay.token(60)).status,
        404
    );
    let user_data = "/latest/user-data";
    assert_eq!(
        replay.get_with_token(user_data, &replay.token(60)).body,
        original.get_with_token(user_data, &original.token(60)).body
    );
}

#[test]
fn a_capture_of_a_capture_is_the_same_file() {
    let original = server().config(EVERYTHING).start();
    let (first, _) = capture_ok(original.address(), &[]);
    let replay = server().config(&first).start();
    let (second, _) = capture_ok(replay.address(), &[]);
    let body = |text: &str| -> String {
        text.lines()
            .filter(|line| !line.starts_with("# Captured by"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&first), body(&second));
}

#[test]
fn values_the_description_cannot_hold_are_reported() {
    // A service that serves what imds cannot: a category it does not know, an instance-action
    // other than none, a zone that is not its region and a letter.
    let original = server().config(EXAMPLE).start();
    let listing = original
        .get_with_token("/latest/meta-data/", &original.token(60))
        .text();
    let overrides = [
        ("/latest/meta-data/", format!("{listing}\nfuture-category/")),
        ("/latest/meta-data/future-category/", "thing".to_owned()),
        (
            "/latest/meta-data/future-category/thing",
            "value".to_owned(),
        ),
        ("/latest/meta-data/instance-action", "reboot".to_owned()),
        (
            "/latest/meta-data/placement/availability-zone",
            "nova".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(path, body)| (path.to_owned(), body.into_bytes()))
    .collect();
    let service = proxy(original.address(), false, overrides);
    let (config, report) = capture_ok(service, &[]);
    for expect in [
        "imds capture: meta-data/future-category/ is not served (captured as a category)",
        "imds capture: meta-data/future-category/thing is not served (captured: \"value\")",
        "imds capture: meta-data/instance-action is served as \"none\" (captured: \"reboot\")",
        "imds capture: instance.placement.availability-zone = \"nova\" not kept: instance.placement.availability-zone: ",
        "imds capture: meta-data/placement/availability-zone is served as \"eu-west-1a\" (captured: \"nova\")",
        "imds capture: dynamic/instance-identity/document field availabilityZone is served as \"eu-west-1a\" (captured: \"eu-west-1b\")",
        "imds capture: meta-data/ is listed without \"future-category/\" (compared with the capture)",
        "; 7 not served back as captured (above)",
    ] {
        assert!(report.contains(expect), "{expect:?} not in\n{report}");
    }
    assert!(
        config.contains("# 7 captured values are not served back as captured"),
        "{config}"
    );
    // The rest is kept: the file still serves the instance.
    let replay = server().config(&config).start();
    assert_eq!(
        replay.get("/latest/meta-data/instance-id").text(),
        "i-0123456789abcdef0"
    );
}

#[test]
fn a_service_without_tokens_needs_imdsv1() {
    let original = server().config(EXAMPLE).start();
    let service = proxy(original.address(), true, Vec::new());
    let endpoint = format!("http://{service}");

    let refused = capture(&["--endpoint", &endpoint]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&endpoint), "{stderr}");
    assert!(stderr.contains("405 Method Not Allowed"), "{stderr}");
    assert!(stderr.contains("give --imdsv1"), "{stderr}");
    assert!(refused.stdout.is_empty());

    let (config, report) = capture_ok(service, &["--imdsv1"]);
    assert!(
        report.contains("walking without a token (IMDSv1)"),
        "{report}"
    );
    assert!(
        report.contains("IMDSv1); every one is served back"),
        "{report}"
    );
    assert!(config.contains("http-tokens = \"optional\""), "{config}");
    let replay = server().config(&config).start();
    assert_same_tree(&tree(&replay), &tree(&original));
}

#[test]
fn imdsv1_is_not_used_when_tokens_are_issued() {
    let original = server().config(EXAMPLE).start();
    let (config, report) = capture_ok(original.address(), &["--imdsv1"]);
    assert!(!report.contains("without a token"), "{report}");
    assert!(config.contains("(API version latest, IMDSv2)"), "{config}");
}

#[test]
fn an_endpoint_that_never_answers_fails_within_the_bound() {
    let silent = silent_listener();
    let endpoint = format!("http://{silent}");
    for extra in [&[][..], &["--imdsv1"][..]] {
        let mut args = vec![
            "--endpoint",
            endpoint.as_str(),
            "--timeout",
            "1",
            "--retries",
            "1",
        ];
        args.extend_from_slice(extra);
        let output = capture(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(&endpoint), "{stderr}");
        assert!(stderr.contains("within 1 s (2 tries)"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn an_unreachable_endpoint_fails_naming_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let endpoint = format!("http://{address}");
    let output = capture(&["--endpoint", &endpoint, "--retries", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the metadata service at {endpoint}")),
        "{stderr}"
    );
}

#[test]
fn a_disabled_endpoint_fails_clearly() {
    let original = server().args(&["--http-endpoint", "disabled"]).start();
    let output = capture(&["--endpoint", &format!("http://{}", original.address())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("403 Forbidden"), "{stderr}");
    assert!(stderr.contains("turned off"), "{stderr}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["--endpoint", "https://169.254.169.254"][..],
        &["--endpoint", "http://127.0.0.1:1/latest/"][..],
        &["--endpoint", "http://127.0.0.1:1", "--api-version", "../x"][..],
    ] {
        let output = capture(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--endpoint") || stderr.contains("--api-version"),
            "{stderr}"
        );
    }
    let output = capture(&["--endpoint", "http://127.0.0.1:1", "--token-ttl", "0"]);
    assert_eq!(output.status.code(), Some(2), "clap refuses a TTL of 0");
}

#[test]
fn the_cloud_init_export_has_cloud_init_s_shape() {
    let original = server().config(EVERYTHING).start();
    let (text, _) = capture_ok(original.address(), &["--format", "cloud-init"]);
    assert!(
        text.starts_with("{\n \"base64_encoded_keys\": []"),
        "{text}"
    );
    assert!(
        text.is_ascii(),
        "non-ASCII is escaped, as cloud-init writes it"
    );
    assert!(!text.contains("security-credentials"));
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    let v1 = &data["v1"];
    assert_eq!(v1["instance_id"], "i-0fedcba9876543210");
    assert_eq!(v1["instance-id"], "i-0fedcba9876543210");
    assert_eq!(v1["region"], "ap-southeast-2");
    assert_eq!(v1["availability_zone"], "ap-southeast-2c");
    assert_eq!(v1["local_hostname"], "i-0fedcba9876543210");
    assert_eq!(v1["cloud_name"], "aws");
    assert_eq!(v1["platform"], "ec2");
    assert_eq!(
        v1["subplatform"],
        format!("metadata (http://{})", original.address())
    );
    assert_eq!(v1["public_ssh_keys"].as_array().unwrap().len(), 2);
    let meta_data = &data["ds"]["meta-data"];
    assert_eq!(
        meta_data["public-keys"]["backup key"],
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 backup"
    );
    // Values with line feeds become lists; JSON objects are parsed.
    assert_eq!(
        meta_data["network"]["interfaces"]["macs"]["0a:11:22:33:44:55"]["local-ipv4s"],
        serde_json::json!(["10.1.2.3", "10.1.2.4"])
    );
    assert_eq!(meta_data["spot"]["instance-action"]["action"], "stop");
    assert_eq!(meta_data["tags"]["instance"]["Ünïcode"], "ünïcode value");
    assert_eq!(meta_data["iam"]["info"]["Code"], "Success");
    assert!(meta_data["iam"].get("security-credentials").is_none());
    let identity = &data["ds"]["dynamic"]["instance-identity"];
    assert_eq!(identity["document"]["instanceId"], "i-0fedcba9876543210");
    assert!(identity["pkcs7"].is_array());
    assert_eq!(data["ds"]["_metadata_api_version"], "latest");
    assert!(data["ds"].get("user-data").is_none());
}

#[test]
fn the_default_endpoint_in_a_namespace_and_ipv6() {
    // 169.254.169.254 and fd00:ec2::254 exist only inside this namespace.
    let namespace = Namespace::new("capture");
    for address in ["169.254.169.254/32", "fd00:ec2::254/128"] {
        let added = namespace.run("ip", &["addr", "add", address, "dev", "lo"]);
        assert!(added.status.success(), "{added:?}");
    }
    let _imds = server()
        .netns(&namespace.0)
        .config(EXAMPLE)
        .listen("169.254.169.254:80")
        .listen("[fd00:ec2::254]:80")
        .args(&["--http-protocol-ipv6", "enabled"])
        .start();
    let default = namespace.imds(&["capture"]);
    let stderr = String::from_utf8_lossy(&default.stderr);
    assert!(default.status.success(), "{stderr}");
    let config = String::from_utf8(default.stdout).unwrap();
    assert!(
        config.contains("from http://169.254.169.254 (API version latest, IMDSv2)"),
        "{config}"
    );
    assert!(
        !config.contains("http-protocol-ipv6"),
        "not seen over IPv4: {config}"
    );

    let ipv6 = namespace.imds(&["capture", "--endpoint", "http://[fd00:ec2::254]"]);
    let stderr = String::from_utf8_lossy(&ipv6.stderr);
    assert!(ipv6.status.success(), "{stderr}");
    let config = String::from_utf8(ipv6.stdout).unwrap();
    assert!(
        config.contains("http-protocol-ipv6 = \"enabled\""),
        "{config}"
    );
}
