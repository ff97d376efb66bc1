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

#[test]
fn version_names_the_package_version_and_the_commit() {
    let printed = imds(&["--version"]);
    assert!(printed.status.success());
    let line = String::from_utf8(printed.stdout).unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(head.status.success(), "the tests run from a git checkout");
    let commit = String::from_utf8(head.stdout).unwrap();
    assert_eq!(
        line.trim(),
        format!(
            "imds {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            commit.trim()
        )
    );
    // Subcommands say the same.
    let serve = imds(&["serve", "--version"]);
    assert_eq!(
        String::from_utf8(serve.stdout).unwrap(),
        line.replacen("imds", "imds-serve", 1)
    );
}

/// The subcommands `imds <path> --help` lists (without `help`), each with its own path.
fn subcommands(path: &[String]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = imds(&args);
    assert!(help.status.success(), "{args:?}");
    let help = String::from_utf8(help.stdout).unwrap();
    let Some((_, listed)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    listed
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(|name| {
            let mut child = path.to_vec();
            child.push(name.to_owned());
            child
        })
        .collect()
}

/// Every subcommand of `imds`, nested ones included, as `--help` lists them.
fn every_subcommand() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = subcommands(&[]);
    while let Some(path) = pending.pop() {
        pending.extend(subcommands(&path));
        found.push(path);
    }
    assert!(found.len() > 10, "{found:?}");
    found
}

#[test]
fn completions_offer_every_subcommand() {
    let commands = every_subcommand();
    for shell in ["bash", "zsh", "fish"] {
        let printed = imds(&["completions", shell]);
        assert!(printed.status.success(), "{shell}");
        let script = String::from_utf8(printed.stdout).unwrap();
        for path in &commands {
            let name = path.last().unwrap();
            assert!(
                script.contains(name.as_str()),
                "{shell} completions lack {path:?}"
            );
        }
        // A flag of a nested subcommand, so the completions go deeper than the top level.
        assert!(script.contains("no-pod-identity"), "{shell}");
    }
    let unknown = imds(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn man_pages_cover_every_subcommand() {
    let directory = tempfile::tempdir().unwrap();
    let pages = directory.path().join("man1");
    let written = imds(&["man", pages.to_str().unwrap()]);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let main = std::fs::read_to_string(pages.join("imds.1")).unwrap();
    assert!(main.starts_with(".ie"), "{main}");
    assert!(main.contains(".TH imds 1"), "{main}");
    for path in every_subcommand() {
        let name = format!("imds-{}", path.join("-"));
        let page = std::fs::read_to_string(pages.join(format!("{name}.1")))
            .unwrap_or_else(|error| panic!("no man page {name}.1: {error}"));
        assert!(page.contains(&format!(".TH {name} 1")), "{page}");
    }
    // The serve page documents its flags as --help does.
    let serve = std::fs::read_to_string(pages.join("imds-serve.1")).unwrap();
    assert!(serve.contains("admin\\-listen"), "{serve}");
}
