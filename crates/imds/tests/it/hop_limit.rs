//! The PUT response hop limit over a real routed network: a client namespace behind a router
//! namespace (one forwarding hop) and the server in a third, all made by the test (it needs
//! root, as CI has). Addresses are documentation ranges (RFC 5737) that exist only inside the
//! test's namespaces.

use std::process::{Command, Output};

use crate::support::server;

/// Three namespaces and two veth links; removed on drop.
struct RoutedNetwork {
    client: String,
    router: String,
    server: String,
}

const CLIENT_ADDRESS: &str = "192.0.2.2";
const SERVER_ADDRESS: &str = "198.51.100.2";

#[track_caller]
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is installed");
    assert!(
        output.status.success(),
        "ip {}: {} (these tests need root to make network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl RoutedNetwork {
    fn new() -> RoutedNetwork {
        let tag = format!("{}", std::process::id() % 100_000);
        let network = RoutedNetwork {
            client: format!("imds-hl-c-{tag}"),
            router: format!("imds-hl-r-{tag}"),
            server: format!("imds-hl-s-{tag}"),
        };
        let (c, r, s) = (&network.client, &network.router, &network.server);
        for name in [c, r, s] {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        let (client_link, router_client_link) = (format!("hlc{tag}"), format!("hlrc{tag}"));
        let (server_link, router_server_link) = (format!("hls{tag}"), format!("hlrs{tag}"));
        ip(&[
            "link",
            "add",
            &client_link,
            "netns",
            c,
            "type",
            "veth",
            "peer",
            "name",
            &router_client_link,
            "netns",
            r,
        ]);
        ip(&[
            "link",
            "add",
            &server_link,
            "netns",
            s,
            "type",
            "veth",
            "peer",
            "name",
            &router_server_link,
            "netns",
            r,
        ]);
        ip(&[
            "-n",
            c,
            "addr",
            "add",
            &format!("{CLIENT_ADDRESS}/24"),
            "dev",
            &client_link,
        ]);
        ip(&["-n", c, "link", "set", &client_link, "up"]);
        ip(&["-n", c, "route", "add", "default", "via", "192.0.2.1"]);
        ip(&[
            "-n",
            r,
            "addr",
            "add",
            "192.0.2.1/24",
            "dev",
            &router_client_link,
        ]);
        ip(&[
            "-n",
            r,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            &router_server_link,
        ]);
        ip(&["-n", r, "link", "set", &router_client_link, "up"]);
        ip(&["-n", r, "link", "set", &router_server_link, "up"]);
        ip(&[
            "netns",
            "exec",
            r,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ]);
        ip(&[
            "-n",
            s,
            "addr",
            "add",
            &format!("{SERVER_ADDRESS}/24"),
            "dev",
            &server_link,
        ]);
        ip(&["-n", s, "link", "set", &server_link, "up"]);
        ip(&["-n", s, "route", "add", "default", "via", "198.51.100.1"]);
        network
    }

    /// curl from the client namespace; `None` when it timed out.
    fn curl(&self, args: &[&str]) -> Option<String> {
        let output: Output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "curl",
                "-s",
                "--max-time",
                "3",
            ])
            .args(args)
            .output()
            .expect("curl is installed");
        match output.status.code() {
            Some(0) => Some(String::from_utf8_lossy(&output.stdout).into_owned()),
            Some(28) => None,
            other => panic!(
                "curl failed with {other:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    fn token(&self) -> Option<String> {
        self.curl(&[
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
            &format!("http://{SERVER_ADDRESS}/latest/api/token"),
        ])
    }
}

impl Drop for RoutedNetwork {
    fn drop(&mut self) {
        for name in [&self.client, &self.router, &self.server] {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
}

#[test]
fn token_responses_do_not_travel_further_than_the_hop_limit() {
    let network = RoutedNetwork::new();
    let imds = server()
        .netns(&network.server)
        .listen(&format!("{SERVER_ADDRESS}:80"))
        .start();
    // Data requests are not limited: IMDSv1 answers across the router.
    let instance_id = network
        .curl(&[&format!(
            "http://{SERVER_ADDRESS}/latest/meta-data/instance-id"
        )])
        .expect("an IMDSv1 answer across one router");
    assert!(instance_id.starts_with("i-"));
    // Hop limit 1 (the default): the token response dies at the router, the client times out.
    assert_eq!(network.token(), None);

    // Raised to 2 at run time, through the control API (inside the server's namespace).
    let modified = Command::new("ip")
        .args([
            "netns",
            "exec",
            &network.server,
            env!("CARGO_BIN_EXE_imds"),
            "ctl",
            "--endpoint",
        ])
        .arg(format!("http://{}", imds.admin_address))
        .arg("--state-dir")
        .arg(&imds.state_dir)
        .args([
            "modify-instance-metadata-options",
            "--instance-id",
            &instance_id,
            "--http-put-response-hop-limit",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        modified.status.success(),
        "{}",
        String::from_utf8_lossy(&modified.stderr)
    );
    let token = network.token().expect("a token with hop limit 2");
    assert_eq!(token.len(), 55);
    let with_token = network
        .curl(&[
            "-H",
            &format!("X-aws-ec2-metadata-token: {token}"),
            &format!("http://{SERVER_ADDRESS}/latest/meta-data/instance-id"),
        ])
        .unwrap();
    assert_eq!(with_token, instance_id);
}
