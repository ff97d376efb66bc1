//! Role credentials as current SDKs fetch them (issue #14): the extended path
//! (`iam/security-credentials-extended/`, the legacy document plus `AccountId`), on by default and
//! off per instance as on an EC2 instance that is not allowlisted for it; the scenarios the SDKs'
//! own tests stage (the SEP cases, Java's `InstanceProfileCredentialsProviderExtendedApiTest`) as
//! imds produces them by itself; and a client that names its role instead of listing
//! (`AWS_EC2_INSTANCE_PROFILE_NAME`). Every check runs in both token modes.

use serde_json::{json, Value};

use crate::support::{audit_records, server, ModeClient as Client, Response, Server};

const INSTANCE_ID: &str = "i-0123456789abcdef0";
const ACCOUNT_ID: &str = "210987654321";
const LEGACY: &str = "/latest/meta-data/iam/security-credentials";
const EXTENDED: &str = "/latest/meta-data/iam/security-credentials-extended";

fn config(extra_iam: &str) -> String {
    format!(
        "[instance]\ninstance-id = \"{INSTANCE_ID}\"\naccount-id = \"{ACCOUNT_ID}\"\n\
         [instance.iam]\nrole-name = \"app\"\n{extra_iam}"
    )
}

fn patch(server: &Server, body: Value) {
    let response = server.admin(
        "PATCH",
        &format!("/v1/instances/{INSTANCE_ID}"),
        Some(&body.to_string()),
    );
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn extended_credentials_are_the_legacy_document_plus_the_account_id() {
    for mode in ["optional", "required"] {
        let server = server()
            .config(&config(""))
            .args(&["--http-tokens", mode])
            .start();
        let client = Client::new(&server, mode);
        // The listing answers with and without the trailing slash clients send.
        assert_eq!(client.text(&format!("{EXTENDED}/")), "app");
        assert_eq!(client.text(EXTENDED), "app");
        let legacy = client.json(&format!("{LEGACY}/app"));
        let extended = client.json(&format!("{EXTENDED}/app"));
        assert_eq!(extended["AccountId"], ACCOUNT_ID, "{mode}");
        assert!(legacy.get("AccountId").is_none(), "{legacy}");
        let mut without_account = extended.as_object().unwrap().clone();
        without_account.remove("AccountId");
        assert_eq!(Value::Object(without_account), legacy, "{mode}");
        // The member is last and laid out as the others.
        let text = client.text(&format!("{EXTENDED}/app"));
        assert!(
            text.ends_with(&format!(",\n  \"AccountId\" : \"{ACCOUNT_ID}\"\n}}")),
            "{text}"
        );
        // In every version that has iam/, unlisted in iam/ itself.
        assert_eq!(
            client.json("/2021-03-23/meta-data/iam/security-credentials-extended/app"),
            extended
        );
        assert_eq!(
            client.text("/latest/meta-data/iam/"),
            "info\nsecurity-credentials/"
        );
        // Another role name is 404 on both paths, never another status.
        for path in [
            format!("{EXTENDED}/other"),
            format!("{LEGACY}/other"),
            format!("{EXTENDED}/app/more"),
        ] {
            client.absent(&path);
        }
        if mode == "required" {
            // The same token rules as the legacy path.
            for path in [EXTENDED.to_owned(), format!("{EXTENDED}/app")] {
                assert_eq!(server.get(&path).status, 401, "{path}");
            }
        }
    }
}

#[test]
fn extended_off_answers_404_as_an_instance_that_is_not_allowlisted() {
    for mode in ["optional", "required"] {
        let server = server()
            .config(&config("extended-credentials = false\n"))
            .args(&["--http-tokens", mode])
            .start();
        let client = Client::new(&server, mode);
        for path in [
            EXTENDED.to_owned(),
            format!("{EXTENDED}/"),
            format!("{EXTENDED}/app"),
        ] {
            client.absent(&path);
        }
        assert_eq!(client.text(&format!("{LEGACY}/")), "app");
        let legacy = client.json(&format!("{LEGACY}/app"));
        assert!(legacy.get("AccountId").is_none());

        // The control API turns it on and off again.
        patch(&server, json!({"iam": {"extended-credentials": true}}));
        assert_eq!(
            client.json(&format!("{EXTENDED}/app"))["AccountId"],
            ACCOUNT_ID
        );
        let described = server.admin("GET", &format!("/v1/instances/{INSTANCE_ID}"), None);
        assert!(
            described.text().contains("\"extended-credentials\":true"),
            "{described:?}"
        );
        patch(&server, json!({"iam": {"extended-credentials": false}}));
        client.absent(&format!("{EXTENDED}/app"));
        assert_eq!(client.text(&format!("{LEGACY}/")), "app");
    }
}

/// The SEP's "profile unstable" cases (3 and 7 on the extended path, 11 on the legacy one) and
/// Java's `resolveCredentials_withUnstableProfile_ReturnsCredentials`: the role an instance has
/// changes between a client's listing and its next credentials request. imds stages it by itself
/// when the control API gives the instance another role.
#[test]
fn a_role_changed_mid_session_is_404_under_the_old_name_on_both_paths() {
    for mode in ["optional", "required"] {
        let server = server()
            .config(&config(""))
            .args(&["--http-tokens", mode])
            .start();
        let client = Client::new(&server, mode);
        assert_eq!(client.text(&format!("{EXTENDED}/")), "app");
        let first = client.json(&format!("{EXTENDED}/app"));
        assert_eq!(first["AccountId"], ACCOUNT_ID);

        patch(&server, json!({"iam": {"role-name": "app-b"}}));
        // The name the client cached: 404 on both paths, so it lists again on its path.
        client.absent(&format!("{EXTENDED}/app"));
        client.absent(&format!("{LEGACY}/app"));
        assert_eq!(client.text(&format!("{EXTENDED}/")), "app-b");
        assert_eq!(client.text(&format!("{LEGACY}/")), "app-b");
        let second = client.json(&format!("{EXTENDED}/app-b"));
        assert_eq!(second["Code"], "Success");
        assert_eq!(second["AccountId"], ACCOUNT_ID);
        assert_eq!(
            client.json(&format!("{LEGACY}/app-b"))["AccessKeyId"],
            second["AccessKeyId"]
        );
    }
}

/// `AWS_EC2_INSTANCE_PROFILE_NAME` (the SEP's cases 2, 4, 6, 8, 10 and 12): a client that names
/// its role asks `security-credentials-extended/NAME` without listing, then on 404 the legacy
/// path, and a second 404 is its "invalid profile". So the server must answer the instance's role
/// on both paths without a listing first, and 404 (nothing else) for any other name.
#[test]
fn a_client_naming_its_role_gets_it_without_listing_and_404_for_another_name() {
    for mode in ["optional", "required"] {
        for extended in [true, false] {
            let server = server()
                .config(&config(&format!("extended-credentials = {extended}\n")))
                .args(&["--http-tokens", mode])
                .start();
            let client = Client::new(&server, mode);
            // The configured name is the instance's role: the first path that answers serves it.
            let first = client.get(&format!("{EXTENDED}/app"));
            let credentials: Value = if extended {
                assert_eq!(first.status, 200, "{first:?}");
                serde_json::from_slice(&first.body).unwrap()
            } else {
                assert_eq!(first.status, 404, "{first:?}");
                client.json(&format!("{LEGACY}/app"))
            };
            assert_eq!(credentials["Code"], "Success");
            assert_eq!(credentials.get("AccountId").is_some(), extended);
            // A wrong name: 404 and 404, the client's "invalid profile".
            for name in ["App", "other-role", "app-"] {
                client.absent(&format!("{EXTENDED}/{name}"));
                client.absent(&format!("{LEGACY}/{name}"));
            }
        }
    }
}

/// The extended path is counted under its own route template and audited as a credentials read.
#[test]
fn extended_reads_are_counted_and_audited() {
    let directory = tempfile::tempdir().unwrap();
    let audit = directory.path().join("audit.jsonl");
    let server = server()
        .config(&format!(
            "{}[audit]\nfile = \"{}\"\n",
            config(""),
            audit.display()
        ))
        .start();
    let token = server.token(600);
    let extended = server.get_with_token(&format!("{EXTENDED}/app"), &token);
    assert_eq!(extended.status, 200);
    let extended: Value = serde_json::from_slice(&extended.body).unwrap();
    assert_eq!(
        server
            .get_with_token(&format!("{EXTENDED}/other"), &token)
            .status,
        404
    );
    let metrics = server.admin("GET", "/metrics", None).text();
    for line in [
        "imds_requests_total{route=\"credentials-extended\",status=\"200\",version=\"v2\"} 1",
        "imds_requests_total{route=\"credentials-extended\",status=\"404\",version=\"v2\"} 1",
    ] {
        assert!(metrics.lines().any(|got| got == line), "{line}\n{metrics}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let record = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break serde_json::from_str::<Value>(line).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no audit record");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(record["event"], "credentials-issued");
    assert_eq!(record["role"], "app");
    assert_eq!(record["access_key_id"], extended["AccessKeyId"]);
}

#[track_caller]
fn json_of(response: Response) -> Value {
    assert_eq!(response.status, 200, "{response:?}");
    serde_json::from_slice(&response.body).unwrap()
}

/// "If you retrieve IAM role credentials without a session token, you receive the IMDSv1 role
/// credentials. If you retrieve IAM role credentials using a valid session token, you receive
/// the IMDSv2 role credentials" (EC2 API reference, `HttpTokens`): two sets, each stable across
/// requests, on both credentials paths; the audit log and the metrics say which was served, and
/// the control API answers the IMDSv2 set unless asked for the other.
#[test]
fn tokenless_and_token_clients_get_sets_of_their_own() {
    let directory = tempfile::tempdir().unwrap();
    let audit = directory.path().join("audit.jsonl");
    let server = server()
        .config(&format!(
            "{}[audit]\nfile = \"{}\"\n",
            config(""),
            audit.display()
        ))
        .start();
    let token = server.token(600);
    let path = format!("{LEGACY}/app");
    let v1 = json_of(server.get(&path));
    let v2 = json_of(server.get_with_token(&path, &token));
    for set in [&v1, &v2] {
        assert_eq!(set["Code"], "Success", "{set}");
    }
    for field in ["AccessKeyId", "SecretAccessKey", "Token"] {
        assert_ne!(v1[field], v2[field], "{field}");
    }
    assert_eq!(json_of(server.get(&path)), v1);
    assert_eq!(json_of(server.get_with_token(&path, &token)), v2);
    let extended = format!("{EXTENDED}/app");
    let extended_v1 = json_of(server.get(&extended));
    let extended_v2 = json_of(server.get_with_token(&extended, &token));
    assert_eq!(extended_v1["AccessKeyId"], v1["AccessKeyId"]);
    assert_eq!(extended_v2["AccessKeyId"], v2["AccessKeyId"]);
    assert_eq!(extended_v1["AccountId"], ACCOUNT_ID);

    let control = |query: &str| {
        server.admin(
            "GET",
            &format!("/v1/instances/{INSTANCE_ID}/roles/app/credentials{query}"),
            None,
        )
    };
    assert_eq!(json_of(control(""))["AccessKeyId"], v2["AccessKeyId"]);
    assert_eq!(
        json_of(control("?delivery=2.0"))["AccessKeyId"],
        v2["AccessKeyId"]
    );
    assert_eq!(
        json_of(control("?delivery=1.0"))["AccessKeyId"],
        v1["AccessKeyId"]
    );
    assert_eq!(control("?delivery=3.0").status, 400);

    let metrics = server.admin("GET", "/metrics", None).text();
    for line in [
        "imds_role_credentials_served_total{delivery=\"1.0\"} 3",
        "imds_role_credentials_served_total{delivery=\"2.0\"} 3",
    ] {
        assert!(metrics.lines().any(|got| got == line), "{line}\n{metrics}");
    }
    let records = audit_records(&audit, 9);
    for (delivery, set, endpoint, count) in [
        ("1.0", &v1, "imds", 3),
        ("2.0", &v2, "imds", 3),
        ("2.0", &v2, "control-api", 2),
        ("1.0", &v1, "control-api", 1),
    ] {
        let matching = records
            .iter()
            .filter(|record| {
                record["event"] == "credentials-issued"
                    && record["endpoint"] == endpoint
                    && record["delivery"] == delivery
                    && record["access_key_id"] == set["AccessKeyId"]
            })
            .count();
        assert_eq!(matching, count, "{delivery} {endpoint}: {records:#?}");
    }
    // Each hand-out on the guest path names the path asked: two of each set on the old path,
    // one of each on the extended one.
    for (path, count) in [
        ("iam/security-credentials", 4),
        ("iam/security-credentials-extended", 2),
    ] {
        let matching = records
            .iter()
            .filter(|record| record["endpoint"] == "imds" && record["path"] == path)
            .count();
        assert_eq!(matching, count, "{path}: {records:#?}");
    }
}

/// With tokens required "IMDSv1 credentials are not available" (EC2 API reference,
/// `HttpTokens`): once they are, tokenless requests are refused, the token client keeps its
/// set, and the control API has no IMDSv1 set to show; optional again, tokenless callers get an
/// IMDSv1 set again, still not the token client's.
#[test]
fn the_imdsv1_set_is_there_only_while_tokens_are_optional() {
    let server = server().config(&config("")).start();
    let token = server.token(600);
    let path = format!("{LEGACY}/app");
    let v1 = json_of(server.get(&path));
    let v2 = json_of(server.get_with_token(&path, &token));
    assert_ne!(v1["AccessKeyId"], v2["AccessKeyId"]);
    let options = |tokens: &str| {
        server.ctl_ok(&[
            "modify-instance-metadata-options",
            "--instance-id",
            INSTANCE_ID,
            "--http-tokens",
            tokens,
        ]);
    };
    let control_v1 = || {
        server.admin(
            "GET",
            &format!("/v1/instances/{INSTANCE_ID}/roles/app/credentials?delivery=1.0"),
            None,
        )
    };

    options("required");
    assert_eq!(server.get(&path).status, 401);
    assert_eq!(server.get(&format!("{EXTENDED}/app")).status, 401);
    assert_eq!(json_of(server.get_with_token(&path, &token)), v2);
    let refused = control_v1();
    assert_eq!(refused.status, 404, "{refused:?}");
    assert!(!refused.text().contains("AccessKeyId"));

    options("optional");
    let again = json_of(server.get(&path));
    assert_eq!(again["Code"], "Success");
    assert_ne!(again["AccessKeyId"], v2["AccessKeyId"]);
    assert_eq!(json_of(control_v1())["AccessKeyId"], again["AccessKeyId"]);
    assert_eq!(json_of(server.get_with_token(&path, &token)), v2);
}
