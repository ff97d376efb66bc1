//! Choosing a role's credential provider at run time through the control API and `imds ctl`:
//! the instance's next request gets credentials from the new provider, the choice outlives a
//! restart, bad descriptions are refused naming the key, and secrets never come back out.

use crate::support::{server, Server};

const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/app";
const STATIC_KEY: &str = "ASIASTATICSTATIC0001";
const STATIC_SECRET: &str = "static-secret-value-never-shown";
const STATIC_TOKEN: &str = "static-session-token-never-shown";

fn config() -> &'static str {
    "[instance]\ninstance-id = \"i-0123456789abcdef0\"\n[instance.iam]\nrole-name = \"app\"\n"
}

fn served(imds: &Server) -> serde_json::Value {
    let response = imds.get(CREDENTIALS_PATH);
    assert_eq!(response.status, 200, "{response:?}");
    serde_json::from_str(&response.text()).unwrap()
}

#[test]
fn a_role_provider_set_through_the_control_api_is_served_at_once_and_kept() {
    let state = tempfile::tempdir().unwrap();
    let keys = state.path().join("keys.json");
    std::fs::write(
        &keys,
        format!(
            r#"{{"AccessKeyId": "{STATIC_KEY}", "SecretAccessKey": "{STATIC_SECRET}", "Token": "{STATIC_TOKEN}"}}"#
        ),
    )
    .unwrap();
    let state_dir = state.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let imds = server().config(config()).state_dir(&state_dir).start();
    let generated = served(&imds);
    assert!(generated["AccessKeyId"]
        .as_str()
        .unwrap()
        .starts_with("ASIA"));
    assert_ne!(generated["AccessKeyId"], STATIC_KEY);
    assert_eq!(imds.admin("GET", "/v1/roles/app", None).status, 404);

    let keys_arg = keys.to_str().unwrap();
    let put = imds.ctl_ok(&[
        "put-role",
        "--role-name",
        "app",
        "--provider",
        "static",
        "--credentials-file",
        keys_arg,
    ]);
    assert!(put.contains("provider=static"), "{put}");
    assert!(put.contains("i-0123456789abcdef0"), "{put}");
    // No wait: the answer came once the instance served credentials from the new provider.
    let fixed = served(&imds);
    assert_eq!(fixed["AccessKeyId"], STATIC_KEY);
    assert_eq!(fixed["SecretAccessKey"], STATIC_SECRET);
    assert_eq!(fixed["Token"], STATIC_TOKEN);

    let described = imds.ctl_ok(&["--output", "json", "describe-roles"]);
    let described: serde_json::Value = serde_json::from_str(&described).unwrap();
    let role = &described["Roles"][0];
    assert_eq!(role["RoleName"], "app");
    assert_eq!(role["Provider"], "static");
    assert_eq!(role["InstanceIds"][0], "i-0123456789abcdef0");
    assert_eq!(role["Description"]["access-key-id"], STATIC_KEY);
    let table = imds.ctl_ok(&["describe-roles"]);
    assert!(table.lines().nth(1).unwrap().starts_with("app"), "{table}");
    for body in [
        described.to_string(),
        table,
        imds.admin("GET", "/v1/roles", None).text(),
    ] {
        assert!(
            !body.contains(STATIC_SECRET) && !body.contains(STATIC_TOKEN),
            "{body}"
        );
    }

    // A description the provider cannot use is refused, naming the key, and changes nothing.
    let refused = imds.admin("PUT", "/v1/roles/app", Some(r#"{"provider": "sts"}"#));
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("role.role-arn: required"),
        "{}",
        refused.text()
    );
    let refused = imds.admin(
        "PUT",
        "/v1/roles/app",
        Some(r#"{"provider": "generated", "bogus": 1}"#),
    );
    assert_eq!(refused.status, 400);
    assert!(refused.text().contains("bogus"), "{}", refused.text());
    let refused = imds.admin("PUT", "/v1/roles/a%2Fb", Some(r#"{}"#));
    assert_eq!(refused.status, 400, "{}", refused.text());
    let refused = imds.admin("PUT", "/v1/roles/app", Some(r#"{"name": "web"}"#));
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(served(&imds)["AccessKeyId"], STATIC_KEY);

    // Kept in the store: a restart serves the same provider.
    let log = imds.stop();
    let imds = server().config(config()).state_dir(&state_dir).start();
    assert_eq!(served(&imds)["AccessKeyId"], STATIC_KEY);

    // Removed: the role is back on the default provider.
    let deleted = imds.ctl_ok(&["delete-role", "--role-name", "app"]);
    assert!(deleted.contains("default provider"), "{deleted}");
    let back = served(&imds);
    assert_ne!(back["AccessKeyId"], STATIC_KEY);
    assert!(back["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    let missing = imds.ctl(&["delete-role", "--role-name", "app"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no provider of its own"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let log: Vec<String> = log.into_iter().chain(imds.stop()).collect();
    assert!(log.iter().any(|line| line.contains("Role provider set.")));
    for line in &log {
        assert!(
            !line.contains(STATIC_SECRET) && !line.contains(STATIC_TOKEN),
            "{line}"
        );
    }
}

#[test]
fn the_config_file_names_its_roles_at_every_start() {
    let state = tempfile::tempdir().unwrap();
    let with_role = format!(
        "{}[[roles]]\nname = \"app\"\nprovider = \"static\"\naccess-key-id = \"{STATIC_KEY}\"\n\
         secret-access-key = \"{STATIC_SECRET}\"\n",
        config()
    );
    let imds = server().config(&with_role).state_dir(state.path()).start();
    assert_eq!(served(&imds)["AccessKeyId"], STATIC_KEY);
    // Changed through the control API: in force until the next start.
    imds.ctl_ok(&[
        "put-role",
        "--role-name",
        "app",
        "--lifetime-seconds",
        "900",
    ]);
    assert_ne!(served(&imds)["AccessKeyId"], STATIC_KEY);
    drop(imds);
    // The file names the role again: its provider wins.
    let imds = server().config(&with_role).state_dir(state.path()).start();
    assert_eq!(served(&imds)["AccessKeyId"], STATIC_KEY);
    let role: serde_json::Value =
        serde_json::from_str(&imds.admin("GET", "/v1/roles/app", None).text()).unwrap();
    assert_eq!(role["Provider"], "static");
    assert_eq!(role["Revision"], 3);
}

#[test]
fn ctl_refuses_a_credentials_file_for_another_provider() {
    let imds = server().config(config()).start();
    let output = imds.ctl(&[
        "put-role",
        "--role-name",
        "app",
        "--provider",
        "sts",
        "--credentials-file",
        "/nonexistent.json",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--credentials-file: only the \"static\" provider"),
        "{stderr}"
    );
}
