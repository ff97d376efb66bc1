//! The Rust SDK probe: asks a running imds what aws-config's IMDS client and credentials
//! provider see, and prints one JSON object; conformance/run compares it with what the server
//! was configured with.
//!
//! The endpoint comes from `AWS_EC2_METADATA_SERVICE_ENDPOINT`, as for any SDK user; nothing
//! here is specific to imds.
//!
//! With the argument `container`, it asks aws-config's container credentials provider
//! (`EcsCredentialsProvider`, which serves ECS and EKS Pod Identity) instead, configured as in a
//! container: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`, and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN` or `_TOKEN_FILE`.

use std::time::Instant;

use aws_config::{
    ecs::EcsCredentialsProvider,
    imds::{self, credentials::ImdsCredentialsProvider, region::ImdsRegionProvider},
};
use aws_credential_types::provider::ProvideCredentials;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("container") {
        let started = Instant::now();
        let provider = EcsCredentialsProvider::builder().build();
        let outcome = provider.provide_credentials().await;
        println!(
            r#"{{"credentials":{}}}"#,
            credentials_json(outcome, started)
        );
        return;
    }
    let client = imds::Client::builder().build();
    let mut fields: Vec<(String, String)> = Vec::new();

    for (name, path) in [
        ("instance_id", "/latest/meta-data/instance-id"),
        ("placement_region", "/latest/meta-data/placement/region"),
        ("user_data", "/latest/user-data"),
        ("role_list", "/latest/meta-data/iam/security-credentials/"),
    ] {
        let started = Instant::now();
        let outcome = client
            .get(path)
            .await
            .map(|value| value.as_ref().to_owned());
        fields.push((name.to_owned(), outcome_json(outcome, started)));
    }

    let started = Instant::now();
    let region = ImdsRegionProvider::builder().build().region().await;
    let region_json = match region {
        Some(region) => format!(
            r#"{{"ok":{},"ms":{}}}"#,
            json_string(region.as_ref()),
            started.elapsed().as_millis()
        ),
        None => format!(
            r#"{{"err":"no region","ms":{}}}"#,
            started.elapsed().as_millis()
        ),
    };
    fields.push(("region_provider".to_owned(), region_json));

    let started = Instant::now();
    let provider = ImdsCredentialsProvider::builder().build();
    let outcome = provider.provide_credentials().await;
    fields.push(("credentials".to_owned(), credentials_json(outcome, started)));

    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}:{}", json_string(name), value))
        .collect();
    println!("{{{}}}", body.join(","));
}

/// A credentials provider's outcome as JSON: `{"ok": {keys, expiry}}` or `{"err": message}`,
/// with its duration.
fn credentials_json(
    outcome: aws_credential_types::provider::Result,
    started: Instant,
) -> String {
    match outcome {
        Ok(credentials) => format!(
            r#"{{"ok":{{"access_key_id":{},"secret_access_key":{},"session_token":{},"expiry":{}}},"ms":{}}}"#,
            json_string(credentials.access_key_id()),
            json_string(credentials.secret_access_key()),
            json_string(credentials.session_token().unwrap_or("")),
            credentials
                .expiry()
                .and_then(|expiry| expiry.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|since_epoch| since_epoch.as_secs().to_string())
                .unwrap_or_else(|| "null".to_owned()),
            started.elapsed().as_millis()
        ),
        Err(error) => format!(
            r#"{{"err":{},"ms":{}}}"#,
            json_string(&format!("{}", error_chain(&error))),
            started.elapsed().as_millis()
        ),
    }
}

/// One request's outcome as JSON: `{"ok": value}` or `{"err": message}`, with its duration.
fn outcome_json(
    outcome: Result<String, imds::client::error::ImdsError>,
    started: Instant,
) -> String {
    let elapsed_ms = started.elapsed().as_millis();
    match outcome {
        Ok(value) => format!(r#"{{"ok":{},"ms":{}}}"#, json_string(&value), elapsed_ms),
        Err(error) => format!(
            r#"{{"err":{},"ms":{}}}"#,
            json_string(&error_chain(&error)),
            elapsed_ms
        ),
    }
}

/// The error and its sources, joined, so a failure says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A JSON string literal.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", control as u32))
            }
            other => out.push(other),
        }
    }
    out.push('"');
    out
}
