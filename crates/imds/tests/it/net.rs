//! `imds net up` / `imds net down`, exercised only inside a network namespace the test makes
//! (root needed, as CI has): the link-local endpoint addresses appear, the server binds and
//! answers on them, both commands are idempotent, and a user without the capability gets a clear
//! error.

use std::process::{Command, Output};

use crate::support::{server, Namespace};

#[track_caller]
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether this kernel can make dummy interfaces (some, like this project's CI VMs, cannot).
fn kernel_has_dummy_interfaces(namespace: &Namespace) -> bool {
    let probe = namespace.run("ip", &["link", "add", "imds-probe", "type", "dummy"]);
    let _ = namespace.run("ip", &["link", "del", "imds-probe"]);
    probe.status.success()
}

#[test]
fn net_up_and_down_are_idempotent_and_the_endpoint_answers() {
    let namespace = Namespace::new("net-up");
    let interface = if kernel_has_dummy_interfaces(&namespace) {
        "imds0"
    } else {
        // Without dummy interfaces the default fails with a clear message, and the addresses go
        // on loopback instead.
        let refused = namespace.imds(&["net", "up"]);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("this kernel has no dummy interfaces (CONFIG_DUMMY)"),
            "{stderr}"
        );
        "lo"
    };
    let first = succeeded(&namespace.imds(&["net", "up", "--interface", interface]));
    assert!(first.contains("169.254.169.254/32 added"), "{first}");
    assert!(first.contains("fd00:ec2::254/128 added"), "{first}");
    let again = succeeded(&namespace.imds(&["net", "up", "--interface", interface]));
    assert!(
        again.contains("169.254.169.254/32 already there"),
        "{again}"
    );
    let addresses = namespace.addresses();
    assert!(
        addresses.contains(&format!("{interface} ")) && addresses.contains("169.254.169.254/32"),
        "{addresses}"
    );
    assert!(addresses.contains("fd00:ec2::254/128"), "{addresses}");
    for address in ["169.254.170.2/32", "169.254.170.23/32", "fd00:ec2::23/128"] {
        assert!(first.contains(&format!("{address} added")), "{first}");
        assert!(addresses.contains(address), "{addresses}");
    }

    let imds = server()
        .netns(&namespace.0)
        .listen("169.254.169.254:80")
        .listen("[fd00:ec2::254]:80")
        .args(&["--http-protocol-ipv6", "enabled"])
        .start();
    for url in [
        "http://169.254.169.254/latest/meta-data/instance-id",
        "http://[fd00:ec2::254]/latest/meta-data/instance-id",
    ] {
        let answer = succeeded(&namespace.run("curl", &["-s", "--fail", "--max-time", "5", url]));
        assert!(answer.starts_with("i-"), "{url}: {answer}");
    }
    drop(imds);

    let down = succeeded(&namespace.imds(&["net", "down", "--interface", interface]));
    assert!(down.contains("removed"), "{down}");
    let left = namespace.addresses();
    for address in [
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.170.2/",
        "169.254.170.23",
        "fd00:ec2::23/",
    ] {
        assert!(!left.contains(address), "{left}");
    }
    // Loopback itself stays.
    assert!(left.contains("127.0.0.1"), "{left}");
    let down_again = succeeded(&namespace.imds(&["net", "down", "--interface", interface]));
    assert!(
        down_again.contains("not present") || down_again.contains("no endpoint addresses"),
        "{down_again}"
    );
}

#[test]
fn net_up_without_the_capability_is_a_clear_error() {
    let namespace = Namespace::new("net-perm");
    let refused = namespace.run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            env!("CARGO_BIN_EXE_imds"),
            "net",
            "up",
            "--interface",
            "lo",
        ],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not permitted (run as root or with CAP_NET_ADMIN)"),
        "{stderr}"
    );
    assert!(!namespace.addresses().contains("169.254.169.254"));
}

/// The container endpoint at ECS's own address, `169.254.170.2`, inside a namespace: boto3 finds
/// it from `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` alone (no token, as ECS task roles work).
#[test]
fn boto3_finds_the_container_endpoint_from_a_relative_uri() {
    let namespace = Namespace::new("net-ecs");
    succeeded(&namespace.run("ip", &["addr", "add", "169.254.170.2/32", "dev", "lo"]));
    let _imds = server()
        .netns(&namespace.0)
        .config(
            "[instance]\n[[roles]]\nname = \"task\"\nprovider = \"static\"\n\
             access-key-id = \"ASIATASKROLETASKROLE\"\nsecret-access-key = \"task-secret\"\n\
             session-token = \"task-token\"\n\
             [[container-credentials]]\npath = \"/v2/credentials/4f1c\"\nrole = \"task\"\n",
        )
        .args(&["--container-listen", "169.254.170.2:80"])
        .start();
    let python = crate::sts::venv().join("bin/python");
    let output = Command::new("ip")
        .args(["netns", "exec", &namespace.0, "env", "-i"])
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .args([
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/4f1c",
            "AWS_EC2_METADATA_DISABLED=true",
            "AWS_CONFIG_FILE=/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
        ])
        .arg(python)
        .args([
            "-c",
            "import boto3\n\
             credentials = boto3.Session(region_name='us-east-1').get_credentials()\n\
             frozen = credentials.get_frozen_credentials()\n\
             print(credentials.method, frozen.access_key, frozen.token)\n",
        ])
        .output()
        .unwrap();
    assert_eq!(
        succeeded(&output).trim(),
        "container-role ASIATASKROLETASKROLE task-token"
    );
}

/// EKS Pod Identity at the agent's own addresses, inside a namespace: `imds net up` puts them on
/// (and only those asked for), the server listens there, botocore reads it as a pod does
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` at `169.254.170.23`, a token file minted by
/// `imds pod-identity mint-token`), and the IPv6 address answers too.
#[test]
fn pod_identity_answers_at_the_agents_addresses() {
    let namespace = Namespace::new("net-eks");
    let only = succeeded(&namespace.imds(&["net", "up", "--interface", "lo", "--no-container"]));
    assert!(!only.contains("169.254.170.2/"), "{only}");
    assert!(only.contains("169.254.170.23/32 added"), "{only}");
    assert!(!namespace.addresses().contains("169.254.170.2/"));
    let state = tempfile::tempdir().unwrap();
    let token_file = state.path().join("eks-pod-identity-token");
    succeeded(
        &Command::new(env!("CARGO_BIN_EXE_imds"))
            .args(["pod-identity", "mint-token", "--namespace", "shop"])
            .args(["--service-account", "cart", "--state-dir"])
            .arg(state.path())
            .arg("--output")
            .arg(&token_file)
            .output()
            .unwrap(),
    );
    let _imds = server()
        .netns(&namespace.0)
        .state_dir(state.path())
        .config(
            "[instance]\n[[roles]]\nname = \"pod\"\nprovider = \"static\"\n\
             access-key-id = \"ASIAPODROLEPODROLE01\"\nsecret-access-key = \"pod-secret\"\n\
             session-token = \"pod-token\"\n\
             [[pod-identity-associations]]\nnamespace = \"shop\"\nservice-account = \"cart\"\nrole = \"pod\"\n",
        )
        .args(&[
            "--pod-identity-listen",
            "169.254.170.23:80",
            "--pod-identity-listen",
            "[fd00:ec2::23]:80",
        ])
        .start();
    let python = crate::sts::venv().join("bin/python");
    let output = Command::new("ip")
        .args(["netns", "exec", &namespace.0, "env", "-i"])
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .args([
            "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials",
            "AWS_EC2_METADATA_DISABLED=true",
            "AWS_CONFIG_FILE=/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
        ])
        .arg(format!(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={}",
            token_file.display()
        ))
        .arg(python)
        .args([
            "-c",
            "import boto3\n\
             credentials = boto3.Session(region_name='us-east-1').get_credentials()\n\
             frozen = credentials.get_frozen_credentials()\n\
             print(credentials.method, frozen.access_key, frozen.token)\n",
        ])
        .output()
        .unwrap();
    assert_eq!(
        succeeded(&output).trim(),
        "container-role ASIAPODROLEPODROLE01 pod-token"
    );
    let token = std::fs::read_to_string(&token_file).unwrap();
    let answer = succeeded(&namespace.run(
        "curl",
        &[
            "-s",
            "--fail",
            "--max-time",
            "5",
            "-H",
            &format!("Authorization: {token}"),
            "http://[fd00:ec2::23]/v1/credentials",
        ],
    ));
    assert!(answer.contains("\"AccountId\":"), "{answer}");
    succeeded(&namespace.imds(&["net", "down", "--interface", "lo"]));
    assert!(!namespace.addresses().contains("169.254.170.23"));
}
