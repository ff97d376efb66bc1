//! SIGHUP re-reads the config file: a file that checks is applied while the server serves (its
//! roles, instances and rate limits, each only where it changed), one that does not changes
//! nothing and the log names the key at fault; the config generation served shows in the log
//! and in `/metrics`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::support::{server, Server};

const INSTANCE: &str = "i-0a1b2c3d4e5f60718";
const REGISTERED: &str = "i-0bbbbbbbbbbbbbbb1";
const CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials/app";

fn config(key: &str, instance_type: &str, extra: &str) -> String {
    format!(
        "[instance]\ninstance-id = \"{INSTANCE}\"\ninstance-type = \"{instance_type}\"\n\
         [instance.iam]\nrole-name = \"app\"\n\
         [[roles]]\nname = \"app\"\nprovider = \"static\"\naccess-key-id = \"{key}\"\n\
         secret-access-key = \"reload-test-secret\"\n{extra}"
    )
}

const REGISTERED_INSTANCE: &str =
    "[[instances]]\ninstance-id = \"i-0bbbbbbbbbbbbbbb1\"\naddresses = [\"127.0.0.9\"]\n";

/// Waits until the log has `count` lines containing `text`.
#[track_caller]
fn wait_for_lines(server: &Server, text: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<String> = server
            .log()
            .into_iter()
            .filter(|line| line.contains(text))
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} log lines with {text:?}: {:#?}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn access_key(server: &Server) -> String {
    let answer = server.get(CREDENTIALS);
    assert_eq!(answer.status, 200, "{answer:?}");
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    json["AccessKeyId"].as_str().unwrap().to_owned()
}

fn generation(server: &Server) -> String {
    let metrics = server.admin("GET", "/metrics", None).text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("imds_config_generation "))
        .unwrap_or_else(|| panic!("no imds_config_generation in {metrics}"))
        .to_owned()
}

fn rewrite(state: &Path, toml: &str) {
    std::fs::write(state.join("test-config.toml"), toml).unwrap();
}

#[test]
fn sighup_applies_a_changed_file_and_an_invalid_one_changes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let imds = server()
        .state_dir(state.path())
        .config(&config("AKIARELOADFIRST00000", "t3.micro", ""))
        .start();
    assert_eq!(access_key(&imds), "AKIARELOADFIRST00000");
    assert_eq!(generation(&imds), "1");
    assert_eq!(
        imds.admin("GET", &format!("/v1/instances/{REGISTERED}"), None)
            .status,
        404
    );

    // A changed role, a changed default instance, a new registered instance.
    rewrite(
        state.path(),
        &config("AKIARELOADSECOND0000", "m5.large", REGISTERED_INSTANCE),
    );
    imds.signal("HUP");
    let reloaded = wait_for_lines(&imds, "Config reloaded.", 1);
    assert!(reloaded[0].contains("generation=2"), "{reloaded:?}");
    assert_eq!(access_key(&imds), "AKIARELOADSECOND0000");
    assert_eq!(
        imds.get("/latest/meta-data/instance-type").text(),
        "m5.large"
    );
    assert_eq!(
        imds.admin("GET", &format!("/v1/instances/{REGISTERED}"), None)
            .status,
        200
    );
    assert_eq!(generation(&imds), "2");

    // An invalid file: nothing changes, and the log names the key.
    rewrite(
        state.path(),
        &config(
            "AKIARELOADTHIRD00000",
            "c5.xlarge",
            "[[roles]]\nname = \"other\"\nprovider = \"nope\"\n",
        ),
    );
    imds.signal("HUP");
    let refused = wait_for_lines(&imds, "Config not reloaded", 1);
    assert!(refused[0].contains("provider"), "{refused:?}");
    assert!(refused[0].contains("generation=2"), "{refused:?}");
    assert_eq!(access_key(&imds), "AKIARELOADSECOND0000");
    assert_eq!(
        imds.get("/latest/meta-data/instance-type").text(),
        "m5.large"
    );
    assert_eq!(generation(&imds), "2");

    // The registered instance leaves the file: it is deregistered. A start-only section
    // changed is named in the log and not applied; the rest is.
    rewrite(
        state.path(),
        &format!(
            "{}[throttle]\nrequests-per-second = 1\n[audit]\nfile = \"-\"\n",
            config("AKIARELOADSECOND0000", "m5.large", "")
        ),
    );
    imds.signal("HUP");
    let reloaded = wait_for_lines(&imds, "Config reloaded.", 2);
    assert!(reloaded[1].contains("generation=3"), "{reloaded:?}");
    assert_eq!(
        imds.admin("GET", &format!("/v1/instances/{REGISTERED}"), None)
            .status,
        404
    );
    let later = wait_for_lines(&imds, "take effect at the next start", 1);
    assert!(later[0].contains("audit"), "{later:?}");
    // One request a second: of twenty sent at once, some are refused with 429.
    let statuses: Vec<u16> = (0..20)
        .map(|_| imds.get("/latest/meta-data/instance-id").status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        !imds
            .log()
            .iter()
            .any(|line| line.contains("reload-test-secret")),
        "a role's secret was logged"
    );
    let log = imds.stop();
    assert!(
        !log.iter().any(|line| line.contains("panicked")),
        "{log:#?}"
    );
}

#[test]
fn sighup_without_a_config_file_reloads_nothing_and_keeps_serving() {
    let imds = server().start();
    imds.signal("HUP");
    wait_for_lines(&imds, "Reloading.", 1);
    assert_eq!(imds.get("/latest/meta-data/instance-id").status, 200);
    assert_eq!(generation(&imds), "1");
}
