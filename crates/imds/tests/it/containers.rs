//! The container credentials endpoint over real sockets (issue #12): the ECS agent's document on
//! configured paths, and the routes that name their role (`/role-arn/ARN`, `/role/NAME`), with
//! their statuses, `Authorization` and audit records.

use std::{net::SocketAddr, process::Command};

use serde_json::Value;

use crate::support::{send_raw, server, Response, Server};

const ACCOUNT: &str = "123456789012";

/// A server whose default instance is in `ACCOUNT`, with a static role `fixed`, a configured path
/// for it, and the per-request routes behind `tok3n` when `per_request` is true.
fn container_server(per_request: bool, audit: Option<&std::path::Path>) -> Server {
    let mut config = format!(
        "[instance]\naccount-id = \"{ACCOUNT}\"\n\
         [[roles]]\nname = \"fixed\"\nprovider = \"static\"\n\
         access-key-id = \"ASIAFIXEDFIXEDFIXED1\"\nsecret-access-key = \"fixed-secret\"\n\
         session-token = \"fixed-token\"\n\
         [[container-credentials]]\npath = \"/v2/credentials/4f1c\"\nrole = \"fixed\"\n"
    );
    if per_request {
        config.push_str(
            "[container-endpoint]\nrole-arn-routes = true\nrole-routes = true\n\
             authorization-token = \"tok3n\"\n",
        );
    }
    let mut builder = server()
        .config(&config)
        .args(&["--container-listen", "127.0.0.1:0"]);
    if let Some(path) = audit {
        builder = builder.args(&["--audit-log", path.to_str().unwrap()]);
    }
    builder.start()
}

fn get(address: SocketAddr, path: &str, authorization: Option<&str>) -> Response {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 169.254.170.2\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    send_raw(address, request.as_bytes())
}

/// The document's keys in order, and the document.
fn document(response: &Response) -> (Vec<String>, Value) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    (
        keys_in_order(&response.body),
        serde_json::from_slice(&response.body).unwrap(),
    )
}

/// A JSON object's keys in the order they are written (`serde_json::Map` sorts them).
pub fn keys_in_order(body: &[u8]) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde::Deserializer::deserialize_map(&mut deserializer, Keys).unwrap()
}

#[track_caller]
fn refused(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));
}

#[test]
fn configured_paths_answer_the_ecs_agents_document() {
    let imds = container_server(false, None);
    let container = imds.container_address.unwrap();
    let (keys, body) = document(&get(container, "/v2/credentials/4f1c", None));
    assert_eq!(
        keys,
        [
            "RoleArn",
            "AccessKeyId",
            "SecretAccessKey",
            "Token",
            "Expiration"
        ]
    );
    assert_eq!(
        body["RoleArn"],
        format!("arn:aws:iam::{ACCOUNT}:role/fixed")
    );
    assert_eq!(body["AccessKeyId"], "ASIAFIXEDFIXEDFIXED1");
    assert_eq!(body["Token"], "fixed-token");
    let expiration = body["Expiration"].as_str().unwrap();
    assert_eq!(
        expiration.len(),
        "2026-03-01T16:00:00Z".len(),
        "{expiration}"
    );
    assert!(expiration.ends_with('Z'));
    // Without [container-endpoint], paths that name a role are unknown paths.
    refused(
        &get(
            container,
            &format!("/role-arn/arn:aws:iam::{ACCOUNT}:role/fixed"),
            None,
        ),
        404,
        "NotFound",
    );
    refused(&get(container, "/role/fixed", None), 404, "NotFound");
}

#[test]
fn role_arn_and_role_routes_serve_the_role_the_path_names() {
    let directory = tempfile::tempdir().unwrap();
    let audit = directory.path().join("audit.jsonl");
    let imds = container_server(true, Some(&audit));
    let container = imds.container_address.unwrap();

    // aws-vault's form: the ARN with a path, the role found by its last segment.
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/team/fixed");
    let (keys, body) = document(&get(container, &format!("/role-arn/{arn}"), Some("tok3n")));
    assert_eq!(keys[0], "RoleArn");
    assert_eq!(body["RoleArn"], arn);
    assert_eq!(body["AccessKeyId"], "ASIAFIXEDFIXEDFIXED1");
    // Percent-encoded, with a trailing slash: the same role.
    let encoded = arn.replace(':', "%3A").replace('/', "%2F");
    let (_, body) = document(&get(
        container,
        &format!("/role-arn/{encoded}/"),
        Some("tok3n"),
    ));
    assert_eq!(body["RoleArn"], arn);
    // A role nobody configured gets the default provider's credentials.
    let (_, body) = document(&get(
        container,
        &format!("/role-arn/arn:aws:iam::{ACCOUNT}:role/Other"),
        Some("tok3n"),
    ));
    assert!(body["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_ne!(body["AccessKeyId"], "ASIAFIXEDFIXEDFIXED1");
    // local-container-endpoints' form, by name.
    let (_, body) = document(&get(container, "/role/fixed", Some("tok3n")));
    assert_eq!(
        body["RoleArn"],
        format!("arn:aws:iam::{ACCOUNT}:role/fixed")
    );
    assert_eq!(body["AccessKeyId"], "ASIAFIXEDFIXEDFIXED1");

    refused(&get(container, "/role/fixed", None), 403, "AccessDenied");
    refused(
        &get(container, "/role/fixed", Some("tok3")),
        403,
        "AccessDenied",
    );
    refused(
        &get(container, "/role-arn/not-an-arn", Some("tok3n")),
        400,
        "InvalidParameterValue",
    );
    refused(
        &get(
            container,
            &format!("/role-arn/arn:aws:iam::{ACCOUNT}:user/fixed"),
            Some("tok3n"),
        ),
        400,
        "InvalidParameterValue",
    );
    refused(
        &get(container, "/role/no%20spaces", Some("tok3n")),
        400,
        "InvalidParameterValue",
    );
    let post = send_raw(
        container,
        b"POST /role/fixed HTTP/1.1\r\nHost: x\r\nAuthorization: tok3n\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    refused(&post, 405, "MethodNotAllowed");
    assert_eq!(post.header("Allow"), Some("GET"));
    // The configured path keeps its own (absent) token rule.
    document(&get(container, "/v2/credentials/4f1c", None));

    let log = imds.stop();
    assert!(!log
        .iter()
        .any(|line| line.contains("tok3n") || line.contains("fixed-secret")));
    let records: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let issued: Vec<&Value> = records
        .iter()
        .filter(|record| record["event"] == "credentials-issued")
        .collect();
    assert_eq!(issued.len(), 5, "{records:#?}");
    assert!(issued
        .iter()
        .all(|record| record["endpoint"] == "container"));
    assert_eq!(
        issued
            .iter()
            .filter(|record| record["role"] == "fixed"
                && record["access_key_id"] == "ASIAFIXEDFIXEDFIXED1")
            .count(),
        4
    );
    assert!(!std::fs::read_to_string(&audit)
        .unwrap()
        .contains("fixed-secret"));
}

/// botocore with `AWS_CONTAINER_CREDENTIALS_FULL_URI` on a `/role-arn/` path and the token in
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN`, as `aws-vault exec --ecs-server` sets them up.
#[test]
fn botocore_reads_a_role_arn_route_as_aws_vault_users_do() {
    let imds = container_server(true, None);
    let container = imds.container_address.unwrap();
    assert_eq!(
        botocore_container_credentials(
            &format!("http://{container}/role-arn/arn:aws:iam::{ACCOUNT}:role/fixed"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok3n".as_ref()),
        ),
        "container-role ASIAFIXEDFIXEDFIXED1 fixed-token"
    );
}

/// What botocore's default chain finds (`METHOD ACCESS_KEY TOKEN`) with only
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` = `full_uri` and `token`, the variable carrying the
/// authorization token (or the file holding it), set; the instance metadata service is off.
pub(crate) fn botocore_container_credentials(
    full_uri: &str,
    token: (&str, &std::ffi::OsStr),
) -> String {
    let output = Command::new(crate::sts::venv().join("bin/python"))
        .args([
            "-c",
            "import boto3\n\
             credentials = boto3.Session(region_name='us-east-1').get_credentials()\n\
             frozen = credentials.get_frozen_credentials()\n\
             print(credentials.method, frozen.access_key, frozen.token)\n",
        ])
        .env_clear()
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", full_uri)
        .env(token.0, token.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
