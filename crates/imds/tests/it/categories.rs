//! The metadata tree as the current User Guide and real instances show it (issue #14): `system`,
//! `metrics/vhostmd`, `network-card`, delegated prefixes, the newer API versions, resource names
//! and IPv6-only instances, tags while disabled; from the config file and the control API, in
//! both token modes.

use serde_json::json;

use crate::support::{server, ModeClient as Client};

const MAC: &str = "02:1a:2b:3c:4d:5e";
const SECOND_MAC: &str = "02:1a:2b:3c:4d:5f";

fn lines(text: &str) -> Vec<&str> {
    text.split('\n').collect()
}

#[test]
fn current_categories_of_a_default_instance() {
    for mode in ["optional", "required"] {
        let server = server().args(&["--http-tokens", mode]).start();
        let client = Client::new(&server, mode);
        let listing = client.text("/latest/meta-data/");
        for entry in ["metrics/", "system"] {
            assert!(lines(&listing).contains(&entry), "{mode}: {listing}");
        }
        assert!(!lines(&listing).contains(&"tags/"), "{listing}");
        assert_eq!(client.text("/latest/meta-data/metrics/"), "vhostmd");
        assert_eq!(
            client.text("/latest/meta-data/metrics/vhostmd"),
            r#"<?xml version="1.0" encoding="UTF-8"?>"#
        );
        assert_eq!(client.text("/latest/meta-data/system"), "nitro");

        // The newest API build the guide names is listed and serves the tree.
        let versions = client.text("/");
        let versions = lines(&versions);
        assert_eq!(versions[versions.len() - 2..], ["2022-09-24", "latest"]);
        assert_eq!(
            client.text("/2022-09-24/meta-data/system"),
            client.text("/latest/meta-data/system")
        );

        // A single-card instance has no network-card key, and network-card-index does not exist
        // on real IMDS (amazonlinux/amazon-ec2-net-utils#105; the VPC CNI reads network-card).
        let mac = client.text("/latest/meta-data/mac");
        let interface = format!("/latest/meta-data/network/interfaces/macs/{mac}/");
        let keys = client.text(&interface);
        for missing in [
            "network-card",
            "network-card-index",
            "ipv4-prefix",
            "ipv6-prefix",
        ] {
            assert!(!lines(&keys).contains(&missing), "{mode}: {keys}");
            client.absent(&format!("{interface}{missing}"));
        }

        // Tags disabled: no tags/, but tags/instance answers 200 with nothing (as real IMDS
        // does, aws/amazon-ec2-metadata-mock#189).
        client.absent("/latest/meta-data/tags");
        client.absent("/latest/meta-data/tags/");
        for path in [
            "/latest/meta-data/tags/instance",
            "/latest/meta-data/tags/instance/",
        ] {
            let response = client.get(path);
            assert_eq!(response.status, 200, "{mode} {path}");
            assert!(response.body.is_empty());
            assert_eq!(response.header("content-type"), Some("text/plain"));
        }
        client.absent("/latest/meta-data/tags/instance/Name");
        // Nothing a crawl reaches answers otherwise.
        let leaves = client.crawl("/latest/meta-data/");
        assert!(leaves.contains("/latest/meta-data/metrics/vhostmd"));
        assert!(!leaves.iter().any(|leaf| leaf.contains("/tags/")));
    }
}

const MULTI_CARD: &str = r#"
[instance]
instance-id = "i-0123456789abcdef0"
system = "xen"

[instance.placement]
region = "eu-west-1"

[[instance.network-interfaces]]
mac = "02:1a:2b:3c:4d:5e"
local-ipv4s = ["10.0.1.23", "10.0.1.24"]
ipv4-prefixes = ["10.0.1.32/28", "10.0.1.48/28"]
ipv6s = ["2001:db8:1234:1a00::123"]
ipv6-prefixes = ["2001:db8:1234:1a00:9::/80"]

[[instance.network-interfaces]]
mac = "02:1a:2b:3c:4d:5f"
device-number = 0
network-card-index = 1
interface-id = "eni-0123456789abcdef1"
local-ipv4s = ["10.0.2.5"]
subnet-id = "subnet-0123456789abcdef1"
vpc-id = "vpc-0123456789abcdef0"
"#;

#[test]
fn network_cards_and_delegated_prefixes() {
    for mode in ["optional", "required"] {
        let server = server()
            .config(MULTI_CARD)
            .args(&["--http-tokens", mode])
            .start();
        let client = Client::new(&server, mode);
        assert_eq!(client.text("/latest/meta-data/system"), "xen");
        let interface = |mac: &str, key: &str| {
            client.text(&format!(
                "/latest/meta-data/network/interfaces/macs/{mac}/{key}"
            ))
        };
        // Two cards: every interface has network-card, and device numbers repeat across cards
        // (amazonlinux/amazon-ec2-net-utils#104).
        assert_eq!(interface(MAC, "network-card"), "0");
        assert_eq!(interface(SECOND_MAC, "network-card"), "1");
        assert_eq!(interface(MAC, "device-number"), "0");
        assert_eq!(interface(SECOND_MAC, "device-number"), "0");
        for mac in [MAC, SECOND_MAC] {
            assert!(lines(&interface(mac, "")).contains(&"network-card"));
            assert!(!lines(&interface(mac, "")).contains(&"network-card-index"));
        }
        // Delegated prefixes, one per line, listed only where assigned.
        assert_eq!(interface(MAC, "ipv4-prefix"), "10.0.1.32/28\n10.0.1.48/28");
        assert_eq!(interface(MAC, "ipv6-prefix"), "2001:db8:1234:1a00:9::/80");
        let keys = interface(MAC, "");
        assert!(lines(&keys).contains(&"ipv4-prefix") && lines(&keys).contains(&"ipv6-prefix"));
        client.absent(&format!(
            "/latest/meta-data/network/interfaces/macs/{SECOND_MAC}/ipv4-prefix"
        ));
        client.crawl("/latest/meta-data/");
    }
}

const IPV6_ONLY: &str = r#"
[instance]
instance-id = "i-0951b6d0b66337123"

[instance.placement]
region = "us-east-2"

[[instance.network-interfaces]]
mac = "02:7c:03:b8:5c:af"
local-ipv4s = []
ipv6s = ["2600:1f16:67f:f201:6613:29a2:dbf7:2f1f"]
subnet-ipv6-cidr-blocks = ["2600:1f16:67f:f201::/64"]
vpc-ipv4-cidr-blocks = ["192.168.0.0/20"]
"#;

/// An IPv6-only instance as cloud-init's crawl of a real one shows it (`MULTI_NIC_V6_ONLY_MD`):
/// resource names, no IPv4 values.
#[test]
fn ipv6_only_instances() {
    for mode in ["optional", "required"] {
        let server = server()
            .config(IPV6_ONLY)
            .args(&["--http-tokens", mode])
            .start();
        let client = Client::new(&server, mode);
        let resource_name = "i-0951b6d0b66337123.us-east-2.compute.internal";
        assert_eq!(client.text("/latest/meta-data/hostname"), resource_name);
        assert_eq!(
            client.text("/latest/meta-data/local-hostname"),
            resource_name
        );
        assert_eq!(
            client.text("/latest/meta-data/ipv6"),
            "2600:1f16:67f:f201:6613:29a2:dbf7:2f1f"
        );
        // "If this is an IPv6-only instance, this item is not set and results in an HTTP 404
        // response" (User Guide, local-ipv4, local-ipv4s); no public IPv4 either.
        let listing = client.text("/latest/meta-data/");
        for missing in ["local-ipv4", "public-ipv4", "public-hostname"] {
            assert!(!lines(&listing).contains(&missing), "{mode}: {listing}");
            client.absent(&format!("/latest/meta-data/{missing}"));
        }
        let interface = "/latest/meta-data/network/interfaces/macs/02:7c:03:b8:5c:af/";
        let keys = client.text(interface);
        for missing in [
            "local-ipv4s",
            "public-ipv4s",
            "ipv4-associations/",
            "subnet-ipv4-cidr-block",
        ] {
            assert!(!lines(&keys).contains(&missing), "{mode}: {keys}");
        }
        client.absent(&format!("{interface}local-ipv4s"));
        assert_eq!(
            client.text(&format!("{interface}local-hostname")),
            resource_name
        );
        assert_eq!(
            client.text(&format!("{interface}vpc-ipv4-cidr-block")),
            "192.168.0.0/20"
        );
        let document: serde_json::Value =
            serde_json::from_str(&client.text("/latest/dynamic/instance-identity/document"))
                .unwrap();
        assert_eq!(document["privateIp"], serde_json::Value::Null);
        client.crawl("/latest/meta-data/");
    }
}

#[test]
fn resource_names_for_a_dual_stack_instance() {
    for mode in ["optional", "required"] {
        let server = server()
            .config(
                "[instance]\ninstance-id = \"i-0123456789abcdef0\"\nhostname-type = \"resource-name\"\n\
                 [[instance.network-interfaces]]\nlocal-ipv4s = [\"10.0.1.23\"]\n\
                 [[instance.network-interfaces]]\nmac = \"02:1a:2b:3c:4d:5f\"\n\
                 interface-id = \"eni-0123456789abcdef1\"\nlocal-ipv4s = [\"10.0.1.99\"]\n\
                 subnet-id = \"subnet-0123456789abcdef1\"\nvpc-id = \"vpc-0123456789abcdef0\"\n",
            )
            .args(&["--http-tokens", mode])
            .start();
        let client = Client::new(&server, mode);
        // us-east-1 names end in ec2.internal (User Guide, "Amazon EC2 instance hostname types").
        let resource_name = "i-0123456789abcdef0.ec2.internal";
        assert_eq!(client.text("/latest/meta-data/hostname"), resource_name);
        assert_eq!(
            client.text("/latest/meta-data/local-hostname"),
            resource_name
        );
        assert_eq!(
            client.text(&format!(
                "/latest/meta-data/network/interfaces/macs/{SECOND_MAC}/local-hostname"
            )),
            resource_name
        );
        // The IPv4 values stay.
        assert_eq!(client.text("/latest/meta-data/local-ipv4"), "10.0.1.23");
    }
}

#[test]
fn the_control_api_takes_the_same_settings() {
    for mode in ["optional", "required"] {
        let server = server().args(&["--http-tokens", mode]).start();
        let created = server.admin(
            "POST",
            "/v1/instances",
            Some(
                &json!({
                    "instance-id": "i-0aaaaaaaaaaaaaaa1",
                    "addresses": ["127.0.0.2"],
                    "system": "xen",
                    "hostname-type": "resource-name",
                    "metadata-options": {"http-tokens": mode},
                    "network-interfaces": [
                        {"local-ipv4s": [], "ipv6s": ["2001:db8::5"], "ipv6-prefixes": ["2001:db8:0:0:1::/80"]},
                        {"mac": SECOND_MAC, "network-card-index": 1, "interface-id": "eni-0123456789abcdef1",
                         "local-ipv4s": ["10.0.9.9"], "ipv4-prefixes": ["10.0.9.16/28"],
                         "subnet-id": "subnet-0123456789abcdef1", "vpc-id": "vpc-0123456789abcdef0"}
                    ]
                })
                .to_string(),
            ),
        );
        assert_eq!(created.status, 201, "{created:?}");
        let token = (mode == "required").then(|| {
            server
                .request_from(
                    "127.0.0.2",
                    "PUT",
                    "/latest/api/token",
                    &[("X-aws-ec2-metadata-token-ttl-seconds", "600")],
                )
                .text()
        });
        let get = |path: &str| {
            let headers: Vec<(&str, &str)> = token
                .iter()
                .map(|token| ("X-aws-ec2-metadata-token", token.as_str()))
                .collect();
            let response = server.request_from("127.0.0.2", "GET", path, &headers);
            (response.status, response.text())
        };
        assert_eq!(get("/latest/meta-data/system"), (200, "xen".to_owned()));
        assert_eq!(
            get("/latest/meta-data/hostname"),
            (200, "i-0aaaaaaaaaaaaaaa1.ec2.internal".to_owned())
        );
        assert_eq!(get("/latest/meta-data/local-ipv4").0, 404);
        assert_eq!(
            get(&format!(
                "/latest/meta-data/network/interfaces/macs/{SECOND_MAC}/network-card"
            )),
            (200, "1".to_owned())
        );
        assert_eq!(
            get(&format!(
                "/latest/meta-data/network/interfaces/macs/{SECOND_MAC}/ipv4-prefix"
            )),
            (200, "10.0.9.16/28".to_owned())
        );

        // Values that cannot be served are refused naming the key.
        for (body, key) in [
            (
                json!({"hostname-type": "ip-name", "network-interfaces": [{"local-ipv4s": [], "ipv6s": ["2001:db8::6"]}]}),
                "instance.hostname-type",
            ),
            (
                json!({"network-interfaces": [{"ipv4-prefixes": ["10.0.1.33/28"]}]}),
                "instance.network-interfaces[0].ipv4-prefixes",
            ),
            (
                json!({"network-interfaces": [{"local-ipv4s": []}]}),
                "instance.network-interfaces[0].ipv6s",
            ),
            (json!({"system": "Nitro System"}), "instance.system"),
        ] {
            let mut body = body;
            body["addresses"] = json!(["127.0.0.9"]);
            let refused = server.admin("POST", "/v1/instances", Some(&body.to_string()));
            assert_eq!(refused.status, 400, "{body}: {refused:?}");
            assert!(refused.text().contains(key), "{body}: {}", refused.text());
        }
    }
}
