//! The data plane over real HTTP: listings, values, JSON shapes, paths and status codes
//! (spec Part B §3), against the example config whose values are known.

use std::collections::BTreeSet;

use crate::support::{assert_text, head, server, Server, NOT_FOUND_PAGE};

pub const EXAMPLE: &str = include_str!("../../imds.example.toml");

fn example() -> Server {
    server().config(EXAMPLE).start()
}

#[test]
fn documented_curl_sequence() {
    // The IMDSv2 sequence of the EC2 User Guide: token, meta-data/, then role credentials.
    let server = example();
    let token = server.token(21600);
    let listing = server.get_with_token("/latest/meta-data/", &token);
    assert_eq!(listing.status, 200);
    assert_eq!(listing.header("content-type"), Some("text/plain"));
    assert_eq!(listing.header("server"), Some("EC2ws"));
    assert_text(
        &listing.text(),
        "ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nevents/\nhostname\niam/\n\
         identity-credentials/\ninstance-action\ninstance-id\ninstance-life-cycle\ninstance-type\n\
         local-hostname\nlocal-ipv4\nmac\nmanaged-ssh-keys/\nmetrics/\nnetwork/\nplacement/\nprofile\npublic-hostname\n\
         public-ipv4\npublic-keys/\nreservation-id\nsecurity-groups\nservices/\nsystem",
    );
    let roles = server.get_with_token("/latest/meta-data/iam/security-credentials/", &token);
    assert_eq!(roles.text(), "my-instance-role");
    let credentials = server.get_with_token(
        "/latest/meta-data/iam/security-credentials/my-instance-role",
        &token,
    );
    assert_eq!(credentials.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&credentials.body).unwrap();
    assert_eq!(json["Code"], "Success");
    assert_eq!(json["Type"], "AWS-HMAC");
    let key_id = json["AccessKeyId"].as_str().unwrap();
    assert!(key_id.starts_with("ASIA") && key_id.len() == 20, "{key_id}");
    assert_eq!(json["SecretAccessKey"].as_str().unwrap().len(), 40);
    assert!(json["Token"].as_str().unwrap().len() > 100);
    for field in ["LastUpdated", "Expiration"] {
        let text = json[field].as_str().unwrap();
        assert!(
            text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
            "{field} = {text}"
        );
    }
    assert!(json["Expiration"].as_str() > json["LastUpdated"].as_str());
    assert_eq!(json.as_object().unwrap().len(), 7);
    // AWS's layout: "Key" : value.
    assert!(credentials
        .text()
        .starts_with("{\n  \"Code\" : \"Success\",\n"));
}

#[test]
fn values_from_the_config() {
    let server = example();
    let expect = [
        ("meta-data/instance-id", "i-0123456789abcdef0"),
        ("meta-data/ami-id", "ami-0abcdef1234567890"),
        ("meta-data/ami-launch-index", "0"),
        ("meta-data/ami-manifest-path", "(unknown)"),
        ("meta-data/instance-type", "m5.large"),
        ("meta-data/instance-life-cycle", "on-demand"),
        ("meta-data/instance-action", "none"),
        ("meta-data/reservation-id", "r-0123456789abcdef0"),
        ("meta-data/hostname", "ip-10-0-1-23.eu-west-1.compute.internal"),
        ("meta-data/local-hostname", "ip-10-0-1-23.eu-west-1.compute.internal"),
        ("meta-data/local-ipv4", "10.0.1.23"),
        ("meta-data/public-ipv4", "203.0.113.25"),
        ("meta-data/public-hostname", "ec2-203-0-113-25.eu-west-1.compute.amazonaws.com"),
        ("meta-data/mac", "02:1a:2b:3c:4d:5e"),
        ("meta-data/security-groups", "default"),
        ("meta-data/placement/region", "eu-west-1"),
        ("meta-data/placement/availability-zone", "eu-west-1b"),
        ("meta-data/placement/availability-zone-id", "euw1-az2"),
        ("meta-data/placement", "availability-zone\navailability-zone-id\nregion"),
        ("meta-data/block-device-mapping", "ami\nebs1\nroot"),
        ("meta-data/block-device-mapping/ebs1", "sdb"),
        ("meta-data/public-keys", "0=my-key"),
        ("meta-data/public-keys/0", "openssh-key"),
        (
            "meta-data/public-keys/0/openssh-key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBG8Y1cOCePbNVMkbBeQSX2qoN+RZEQ3BmXLYCGOdtxM my-key",
        ),
        ("meta-data/services/domain", "amazonaws.com"),
        ("meta-data/services/partition", "aws"),
        ("meta-data/network/interfaces/macs", "02:1a:2b:3c:4d:5e/"),
        ("meta-data/network/interfaces/macs/02:1a:2b:3c:4d:5e/interface-id", "eni-0123456789abcdef0"),
        ("meta-data/network/interfaces/macs/02:1a:2b:3c:4d:5e/owner-id", "123456789012"),
        ("meta-data/network/interfaces/macs/02:1a:2b:3c:4d:5e/security-group-ids", "sg-0123456789abcdef0"),
        ("meta-data/network/interfaces/macs/02:1a:2b:3c:4d:5e/subnet-id", "subnet-0123456789abcdef0"),
        ("meta-data/network/interfaces/macs/02:1a:2b:3c:4d:5e/vpc-ipv4-cidr-block", "10.0.0.0/16"),
        ("meta-data/network/interfaces/macs/02:1a:2b:3c:4d:5e/ipv4-associations/203.0.113.25", "10.0.1.23"),
        ("meta-data/events/maintenance/scheduled", "[]"),
        ("meta-data/events/maintenance/history", "[]"),
        ("meta-data/iam", "info\nsecurity-credentials/"),
        ("dynamic", "fws/\ninstance-identity/"),
        ("dynamic/instance-identity", "document\npkcs7\nrsa2048\nsignature"),
        ("user-data", "#!/bin/sh\necho 'Hello from imds'\n"),
    ];
    for (path, value) in expect {
        let response = server.get(&format!("/latest/{path}"));
        assert_eq!(response.status, 200, "{path}");
        assert_text(&response.text(), value);
    }
}

#[test]
fn iam_info_and_identity_document() {
    let server = example();
    let info: serde_json::Value =
        serde_json::from_slice(&server.get("/latest/meta-data/iam/info").body).unwrap();
    assert_eq!(info["Code"], "Success");
    assert_eq!(
        info["InstanceProfileArn"],
        "arn:aws:iam::123456789012:instance-profile/my-instance-role"
    );
    assert_eq!(info["InstanceProfileId"], "AIPAEXAMPLEPROFILEID1");
    let document = server.get("/latest/dynamic/instance-identity/document");
    let json: serde_json::Value = serde_json::from_slice(&document.body).unwrap();
    let expect = serde_json::json!({
        "accountId": "123456789012", "architecture": "x86_64", "availabilityZone": "eu-west-1b",
        "billingProducts": null, "devpayProductCodes": null, "marketplaceProductCodes": null,
        "imageId": "ami-0abcdef1234567890", "instanceId": "i-0123456789abcdef0",
        "instanceType": "m5.large", "kernelId": null, "pendingTime": "2026-11-24T12:00:00Z",
        "privateIp": "10.0.1.23", "ramdiskId": null, "region": "eu-west-1", "version": "2017-09-30"
    });
    assert_eq!(json, expect);
    let identity_info: serde_json::Value = serde_json::from_slice(
        &server
            .get("/latest/meta-data/identity-credentials/ec2/info")
            .body,
    )
    .unwrap();
    assert_eq!(identity_info["AccountId"], "123456789012");
    let identity_credentials: serde_json::Value = serde_json::from_slice(
        &server
            .get("/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance")
            .body,
    )
    .unwrap();
    assert!(identity_credentials["AccessKeyId"]
        .as_str()
        .unwrap()
        .starts_with("ASIA"));
}

#[test]
fn root_and_version_listings() {
    let server = example();
    let versions = server.get("/").text();
    let lines: Vec<&str> = versions.split('\n').collect();
    assert_eq!(lines.first(), Some(&"1.0"));
    assert_eq!(lines.last(), Some(&"latest"));
    for version in ["2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23"] {
        assert!(lines.contains(&version), "{version}");
        assert_eq!(
            server
                .get(&format!("/{version}/meta-data/instance-id"))
                .text(),
            "i-0123456789abcdef0"
        );
    }
    assert_eq!(
        server.get("/latest").text(),
        "dynamic\nmeta-data\nuser-data"
    );
    assert_eq!(
        server.get("/latest/").text(),
        "dynamic\nmeta-data\nuser-data"
    );
    assert_eq!(server.get("/2021-03-24/meta-data/instance-id").status, 404);
}

#[test]
fn slashes_are_forgiven_as_clients_need() {
    let server = example();
    let listing = server.get("/latest/meta-data/").text();
    assert_eq!(server.get("/latest/meta-data").text(), listing);
    assert_eq!(server.get("//latest/meta-data/").text(), listing);
    assert_eq!(server.get("/latest/dynamic/instance-identity").status, 200);
    // botocore's region lookup asks for the zone with a trailing slash.
    assert_eq!(
        server
            .get("/latest/meta-data/placement/availability-zone/")
            .text(),
        "eu-west-1b"
    );
    assert_eq!(
        server.get("//latest/meta-data/instance-id").text(),
        "i-0123456789abcdef0"
    );
    assert_eq!(
        server.get("/latest/meta-data/%69nstance-id").text(),
        "i-0123456789abcdef0"
    );
    assert_eq!(
        server.get("/latest/meta-data/instance-id?x=1").text(),
        "i-0123456789abcdef0"
    );
}

#[test]
fn not_found_is_the_real_page() {
    let server = example();
    for path in [
        "/latest/meta-data/nope",
        "/latest/meta-data/instance-id/extra",
        "/nope",
        "/latest/meta-data/spot/instance-action",
        "/latest/meta-data/events/recommendations/rebalance",
        "/latest/meta-data/tags",
        "/latest/meta-data/tags/instance/Name",
        "/latest/meta-data/iam/security-credentials/other-role",
        "/latest/meta-data/../../../etc/passwd",
    ] {
        let response = server.get(path);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.header("content-type"), Some("text/html"));
        assert_eq!(response.header("server"), Some("EC2ws"));
        assert_text(&response.text(), NOT_FOUND_PAGE);
    }
}

#[test]
fn other_methods_on_data_paths_get_405_and_head_works() {
    let server = example();
    for method in ["POST", "DELETE", "PATCH", "OPTIONS"] {
        let response = server.request(method, "/latest/meta-data/instance-id", &[]);
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"), "{method}");
    }
    // A PUT on a path other than the token's is refused as on EC2.
    let put = server.request("PUT", "/latest/meta-data/instance-id", &[]);
    assert_eq!(put.status, 403);
    assert!(put.body.is_empty());
    let response = head(server.address(), "/latest/meta-data/instance-id");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("19"));
    assert!(response.body.is_empty());
}

#[test]
fn forwarded_requests_with_a_token_are_refused() {
    let server = example();
    let token = server.token(60);
    let response = server.request(
        "GET",
        "/latest/meta-data/instance-id",
        &[
            ("X-aws-ec2-metadata-token", &token),
            ("X-Forwarded-For", "10.1.1.1"),
        ],
    );
    assert_eq!(response.status, 403);
    let tokenless = server.request(
        "GET",
        "/latest/meta-data/instance-id",
        &[("X-Forwarded-For", "10.1.1.1")],
    );
    assert_eq!(tokenless.status, 200);
}

/// Walks the tree as cloud-init does: every listed name must answer 200.
#[test]
fn every_listed_entry_answers() {
    let server = server()
        .config(&format!(
            "{EXAMPLE}\n[instance.events.spot-interruption]\naction = \"stop\"\ntime = \"2026-11-24T12:02:00Z\"\n"
        ).replace("instance-metadata-tags = \"disabled\"", "instance-metadata-tags = \"enabled\""))
        .start();
    let mut seen = BTreeSet::new();
    let mut pending = vec![
        "/latest/meta-data/".to_owned(),
        "/latest/dynamic/".to_owned(),
    ];
    while let Some(directory) = pending.pop() {
        let response = server.get(&directory);
        assert_eq!(response.status, 200, "{directory}");
        let text = response.text();
        assert!(
            !text.ends_with('\n') && !text.is_empty(),
            "{directory}: {text:?}"
        );
        for line in text.split('\n') {
            let (child, is_directory) = match line.split_once('=') {
                Some((index, _)) => (format!("{directory}{index}/"), true),
                None => (format!("{directory}{line}"), line.ends_with('/')),
            };
            if is_directory {
                pending.push(child);
            } else {
                let leaf = server.get(&child);
                assert_eq!(leaf.status, 200, "{child}");
                assert!(!leaf.body.is_empty(), "{child}");
                seen.insert(child);
            }
        }
    }
    for expected in [
        "/latest/meta-data/spot/instance-action",
        "/latest/meta-data/spot/termination-time",
        "/latest/meta-data/tags/instance/Name",
        "/latest/meta-data/public-keys/0/openssh-key",
        "/latest/dynamic/instance-identity/document",
    ] {
        assert!(seen.contains(expected), "{expected} not reached");
    }
    assert!(seen.len() > 50, "{}", seen.len());
}
