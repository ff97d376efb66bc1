//! The command line: config printing and checking, errors and exit codes.

use std::process::Command;

fn imds(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imds"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn default_config_checks_clean() {
    let printed = imds(&["config", "default"]);
    assert!(printed.status.success());
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("imds.toml");
    std::fs::write(&path, &printed.stdout).unwrap();
    let checked = imds(&["config", "check", path.to_str().unwrap()]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn bad_config_names_the_field_and_exits_64() {
    let directory = tempfile::tempdir().unwrap();
    for (text, field) in [
        (
            "[instance.metadata-options]\nhttp-tokens = \"sometimes\"\n",
            "instance.metadata-options.http-tokens",
        ),
        ("[instance]\ninstance-type = 5\n", "instance.instance-type"),
        (
            "[instance.placement]\nregion = \"eu-west-1\"\navailability-zone = \"eu-west-1\"\n",
            "instance.placement.availability-zone",
        ),
        ("[instanse]\n", "unknown field `instanse`"),
    ] {
        let path = directory.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let checked = imds(&["config", "check", path.to_str().unwrap()]);
        assert_eq!(checked.status.code(), Some(64), "{text}");
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert!(stderr.contains(field), "{stderr} does not name {field}");

        let state = directory.path().join("state");
        let served = imds(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            path.to_str().unwrap(),
        ]);
        assert_eq!(served.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&served.stderr).contains(field));
    }
    let missing = imds(&["config", "check", "/nonexistent/imds.toml"]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/imds.toml"));
}

#[test]
fn bad_flags_are_usage_errors() {
    let out_of_range = imds(&["serve", "--http-put-response-hop-limit", "65"]);
    assert_eq!(out_of_range.status.code(), Some(2));
    let bad_value = imds(&["serve", "--http-tokens", "maybe"]);
    assert_eq!(bad_value.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_value.stderr).contains("optional"));
}

#[test]
fn a_port_in_use_is_a_clear_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let state = tempfile::tempdir().unwrap();
    let served = imds(&[
        "serve",
        "--listen",
        &address,
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert_eq!(served.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&served.stderr).contains(&format!("cannot listen on {address}"))
    );
}
