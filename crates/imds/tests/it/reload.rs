//! SIGHUP re-reads the config file: a file that checks is applied while the server serves (its
//! roles, instances and rate limits, each only where it changed, its lockdown and the audit
//! log's destination), one that does not changes nothing and the log names the key at fault; the
//! config generation served shows in the log and in `/metrics`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::support::{audit_records, read_response, server, Server};

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
            "{}[throttle]\nrequests-per-second = 1\n[credentials]\nlifetime-seconds = 7200\n",
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
    assert!(later[0].contains("credentials"), "{later:?}");
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

fn audit_section(path: &Path) -> String {
    format!("[audit]\nfile = \"{}\"\n", path.display())
}

#[test]
fn sighup_moves_the_audit_log_to_the_file_the_config_names_and_off() {
    let state = tempfile::tempdir().unwrap();
    let first = state.path().join("first-audit.jsonl");
    let second = state.path().join("second-audit.jsonl");
    let key = "AKIARELOADAUDIT00000";
    let imds = server()
        .state_dir(state.path())
        .config(&config(key, "t3.micro", &audit_section(&first)))
        .start();
    assert_eq!(access_key(&imds), key);
    let before = audit_records(&first, 1);
    assert_eq!(before[0]["event"], "credentials-issued", "{before:?}");

    rewrite(
        state.path(),
        &config(key, "t3.micro", &audit_section(&second)),
    );
    imds.signal("HUP");
    let moved = wait_for_lines(&imds, "Audit log moved.", 1);
    assert!(moved[0].contains("second-audit.jsonl"), "{moved:?}");
    let reloaded = wait_for_lines(&imds, "Config reloaded.", 1);
    assert!(reloaded[0].contains("audit_moved=true"), "{reloaded:?}");
    assert!(
        !imds
            .log()
            .iter()
            .any(|line| line.contains("take effect at the next start")),
        "{:#?}",
        imds.log()
    );
    assert_eq!(access_key(&imds), key);
    let after = audit_records(&second, 1);
    assert_eq!(after[0]["access_key_id"], key, "{after:?}");
    // The first file got nothing more.
    assert_eq!(audit_records(&first, 1).len(), before.len());

    // A destination that cannot be opened: nothing changes.
    let missing = state.path().join("no-such-dir").join("audit.jsonl");
    rewrite(
        state.path(),
        &config(key, "t3.micro", &audit_section(&missing)),
    );
    imds.signal("HUP");
    let refused = wait_for_lines(&imds, "Config not reloaded", 1);
    assert!(refused[0].contains("audit.file"), "{refused:?}");
    assert_eq!(access_key(&imds), key);
    assert_eq!(audit_records(&second, 2).len(), 2);

    // No [audit]: records are written nowhere from then on.
    rewrite(state.path(), &config(key, "t3.micro", ""));
    imds.signal("HUP");
    wait_for_lines(&imds, "Config reloaded.", 2);
    assert_eq!(access_key(&imds), key);
    imds.stop();
    assert_eq!(audit_records(&second, 2).len(), 2);
    assert!(!missing.exists());
}

/// One request on `stream` (a keep-alive connection), and its status.
fn status_on(stream: &mut std::net::TcpStream, path: &str) -> u16 {
    use std::io::Write;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"
    )
    .unwrap();
    read_response(stream).expect("a response").status
}

/// A reload that turns lockdown on is enforced at once, on connections opened before it too;
/// one that turns it off lets the caller read credentials again.
#[test]
fn sighup_applies_a_changed_lockdown_to_open_connections() {
    let state = tempfile::tempdir().unwrap();
    let key = "AKIARELOADLOCKDOWN00";
    let imds = server()
        .state_dir(state.path())
        .config(&config(key, "t3.micro", ""))
        .start();
    let mut kept = std::net::TcpStream::connect(imds.addresses[0]).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(status_on(&mut kept, CREDENTIALS), 200);

    // Only uid 65534 may read credentials: this test's user (root) may not.
    rewrite(
        state.path(),
        &config(key, "t3.micro", "[lockdown]\ncredential-users = [65534]\n"),
    );
    imds.signal("HUP");
    let reloaded = wait_for_lines(&imds, "Config reloaded.", 1);
    assert!(
        reloaded[0].contains("lockdown_changed=true"),
        "{reloaded:?}"
    );
    wait_for_lines(&imds, "Lockdown changed.", 1);
    // The connection opened before the reload is refused now (and closed, as every error
    // answer closes its connection).
    assert_eq!(status_on(&mut kept, CREDENTIALS), 403);
    assert_eq!(imds.get(CREDENTIALS).status, 403);
    let mut kept = std::net::TcpStream::connect(imds.addresses[0]).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(status_on(&mut kept, "/latest/meta-data/instance-id"), 200);

    rewrite(state.path(), &config(key, "t3.micro", ""));
    imds.signal("HUP");
    wait_for_lines(&imds, "Lockdown off.", 1);
    // A connection decided under the lockdown reads credentials again.
    assert_eq!(status_on(&mut kept, CREDENTIALS), 200);
    assert_eq!(access_key(&imds), key);
}

/// The associations the control API lists: (namespace, service account, role, origin).
fn associations(server: &Server) -> Vec<(String, String, String, String)> {
    let answer = server.admin("GET", "/v1/pod-identity/associations", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    json["Associations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|association| {
            let field = |key: &str| association[key].as_str().unwrap().to_owned();
            (
                field("Namespace"),
                field("ServiceAccount"),
                field("Role"),
                field("Origin"),
            )
        })
        .collect()
}

fn association_entry(service_account: &str, role: &str) -> String {
    format!(
        "[[pod-identity-associations]]\nnamespace = \"shop\"\nservice-account = \"{service_account}\"\nrole = \"{role}\"\n"
    )
}

#[test]
fn sighup_applies_the_files_pod_identity_associations_and_keeps_the_control_apis() {
    let state = tempfile::tempdir().unwrap();
    let imds = server()
        .state_dir(state.path())
        .config(&config(
            "AKIARELOADFIRST00000",
            "t3.micro",
            &association_entry("cart", "app"),
        ))
        .start();
    let own = |service_account: &str, role: &str, origin: &str| {
        (
            "shop".to_owned(),
            service_account.to_owned(),
            role.to_owned(),
            origin.to_owned(),
        )
    };
    assert_eq!(associations(&imds), [own("cart", "app", "config")]);
    let created = imds.admin(
        "POST",
        "/v1/pod-identity/associations",
        Some(r#"{"Namespace": "shop", "ServiceAccount": "web", "Role": "app"}"#),
    );
    assert_eq!(created.status, 201, "{created:?}");

    // cart leaves the file and pay comes in; the control API's web stays.
    rewrite(
        state.path(),
        &config(
            "AKIARELOADFIRST00000",
            "t3.micro",
            &association_entry("pay", "payments"),
        ),
    );
    imds.signal("HUP");
    let reloaded = wait_for_lines(&imds, "Config reloaded.", 1);
    assert!(
        reloaded[0].contains("associations_changed=true"),
        "{reloaded:?}"
    );
    assert_eq!(
        associations(&imds),
        [own("pay", "payments", "config"), own("web", "app", "api")]
    );
    assert!(
        !imds
            .log()
            .iter()
            .any(|line| line.contains("next start") && line.contains("pod-identity-associations")),
        "associations are applied, not left for the next start"
    );

    // An invalid entry changes nothing.
    rewrite(
        state.path(),
        &config(
            "AKIARELOADFIRST00000",
            "t3.micro",
            &association_entry("Pay", "payments"),
        ),
    );
    imds.signal("HUP");
    let refused = wait_for_lines(&imds, "Config not reloaded", 1);
    assert!(refused[0].contains("service-account"), "{refused:?}");
    assert_eq!(
        associations(&imds),
        [own("pay", "payments", "config"), own("web", "app", "api")]
    );
}

/// `[server] listen` with these addresses.
fn listen_section(addresses: &[&str]) -> String {
    let quoted: Vec<String> = addresses
        .iter()
        .map(|address| format!("\"{address}\""))
        .collect();
    format!("[server]\nlisten = [{}]\n", quoted.join(", "))
}

/// The address of the `n`th "Listening." line.
fn listening(server: &Server, n: usize) -> std::net::SocketAddr {
    let lines = wait_for_lines(server, "Listening. address=", n + 1);
    let (_, address) = lines[n].split_once("Listening. address=").unwrap();
    address.trim().parse().unwrap()
}

/// Waits until connecting to `address` is refused.
#[track_caller]
fn wait_until_refused(address: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(address).is_ok() {
        assert!(Instant::now() < deadline, "{address} still accepts");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_binds_the_listeners_the_file_adds_and_closes_those_it_removes() {
    let state = tempfile::tempdir().unwrap();
    let imds = server()
        .state_dir(state.path())
        .listeners_from_config(1)
        .config(&config(
            "AKIALISTENERS0000000",
            "t3.micro",
            &listen_section(&["127.0.0.1:0"]),
        ))
        .start();
    let first = imds.address();
    assert_eq!(access_key(&imds), "AKIALISTENERS0000000");

    // A second address: bound and served beside the first, which is not touched.
    rewrite(
        state.path(),
        &config(
            "AKIALISTENERS0000000",
            "t3.micro",
            &listen_section(&["127.0.0.1:0", "127.0.0.2:0"]),
        ),
    );
    imds.signal("HUP");
    let reloaded = wait_for_lines(&imds, "Config reloaded.", 1);
    assert!(reloaded[0].contains("listeners_opened=1"), "{reloaded:?}");
    let second = listening(&imds, 1);
    assert_eq!(second.ip().to_string(), "127.0.0.2");
    let answer = crate::support::send_raw(
        second,
        b"GET /latest/meta-data/instance-type HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer.text(), "t3.micro");
    assert_eq!(
        imds.get("/latest/meta-data/instance-type").text(),
        "t3.micro"
    );

    // An address that cannot be bound refuses the whole reload: the instance type stays too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    rewrite(
        state.path(),
        &config(
            "AKIALISTENERS0000000",
            "m5.large",
            &listen_section(&["127.0.0.1:0", &taken.local_addr().unwrap().to_string()]),
        ),
    );
    imds.signal("HUP");
    let refused = wait_for_lines(&imds, "Config not reloaded", 1);
    assert!(
        refused[0].contains("server.listen: cannot listen on"),
        "{refused:?}"
    );
    assert_eq!(
        imds.get("/latest/meta-data/instance-type").text(),
        "t3.micro"
    );
    assert_eq!(generation(&imds), "2");

    // The first address removed: it refuses connections, the second answers.
    rewrite(
        state.path(),
        &config(
            "AKIALISTENERS0000000",
            "t3.micro",
            &listen_section(&["127.0.0.2:0"]),
        ),
    );
    imds.signal("HUP");
    let reloaded = wait_for_lines(&imds, "Config reloaded.", 2);
    assert!(reloaded[1].contains("listeners_closed=1"), "{reloaded:?}");
    wait_for_lines(&imds, &format!("Listener closed. address={first}"), 1);
    wait_until_refused(first);
    let answer = crate::support::send_raw(
        second,
        b"GET /latest/meta-data/instance-type HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer.status, 200);
    let log = imds.stop();
    assert!(
        !log.iter().any(|line| line.contains("panicked")),
        "{log:#?}"
    );
}

#[test]
fn with_listen_flags_the_files_listeners_are_not_used() {
    let state = tempfile::tempdir().unwrap();
    let imds = server()
        .state_dir(state.path())
        .config(&config(
            "AKIALISTENFLAGS00000",
            "t3.micro",
            &listen_section(&["127.0.0.3:0"]),
        ))
        .start();
    assert_eq!(imds.addresses.len(), 1);
    assert_eq!(imds.address().ip().to_string(), "127.0.0.1");
    wait_for_lines(&imds, "the config file's server.listen is not used", 1);

    rewrite(
        state.path(),
        &config(
            "AKIALISTENFLAGS00000",
            "t3.micro",
            &listen_section(&["127.0.0.4:0"]),
        ),
    );
    imds.signal("HUP");
    wait_for_lines(&imds, "Config reloaded.", 1);
    wait_for_lines(&imds, "server.listen changed but is not used", 1);
    assert_eq!(wait_for_lines(&imds, "Listening.", 1).len(), 1);
    assert_eq!(
        imds.get("/latest/meta-data/instance-type").text(),
        "t3.micro"
    );
}
