//! `imds env --role NAME` and `imds exec --role NAME -- COMMAND...`: a role's credentials in the
//! standard environment variables, the way Lambda hands them to a function.
//!
//! With `--config`, the credentials come straight from the config file's provider for the role
//! (the `[[roles]]` entry, else `[credentials]`), so no server needs to run; an `sts` role is
//! assumed with this host's AWS credentials, the session named after `--instance-id` (default:
//! the config's `[instance]` id, else `imds`).
//! Without it, they come from the running server's control API
//! (`GET /v1/instances/{id}/roles/{role}/credentials`), so they are the very set the instance is
//! served; `--instance-id` may be left out when the server has one instance.

use std::{os::unix::process::CommandExt, path::PathBuf};

use anyhow::{bail, format_err, Context};
use clap::Args;
use imds_core::{render::aws_timestamp, role_name::check_role_name, spec::Generated};
use imds_credentials::{CredentialProvider, CredentialRequest, Credentials, Secret};
use time::OffsetDateTime;

use crate::{
    client::{self, ApiArgs},
    config,
    error::UsageError,
};

/// Which role, from which config.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// The role whose credentials to use.
    #[arg(long)]
    pub role: String,
    /// The config file that says how the role's credentials are made; without it, ask the
    /// running server.
    #[arg(long, env = "IMDS_CONFIG")]
    pub config: Option<PathBuf>,
    /// The instance the credentials are for (names the STS role session).
    #[arg(long)]
    pub instance_id: Option<String>,
    /// The running server's control API (used without --config).
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `imds exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The variables that carry `credentials`, as Lambda sets them ("Defined runtime environment
/// variables", AWS Lambda Developer Guide) plus `AWS_CREDENTIAL_EXPIRATION`, which botocore's
/// environment provider reads.
pub fn variables(credentials: &Credentials) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            credentials.secret_access_key.expose().to_owned(),
        ),
        (
            "AWS_SESSION_TOKEN",
            credentials.session_token.expose().to_owned(),
        ),
        (
            "AWS_CREDENTIAL_EXPIRATION",
            aws_timestamp(credentials.expiration),
        ),
    ]
}

/// `value` quoted for POSIX shells.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// The role's current credentials, from the running server's control API.
#[allow(
    clippy::disallowed_methods,
    reason = "the `imds role-env` command starts here: its time is the clock's"
)]
async fn fetch_from_server(args: &RoleArgs) -> anyhow::Result<Credentials> {
    check_role_name(&args.role).map_err(|error| UsageError(format_err!("--role: {error}")))?;
    let client = client::from_args(&args.api)?;
    let instance_id = match &args.instance_id {
        Some(instance_id) => instance_id.clone(),
        None => {
            let list = client.describe_instances().await?;
            match list.instances.as_slice() {
                [only] => only.instance_id.clone(),
                instances => bail!(UsageError(format_err!(
                    "--instance-id: the server has {} instances; say which one",
                    instances.len()
                ))),
            }
        }
    };
    let answer = client.role_credentials(&instance_id, &args.role).await?;
    let expiration = OffsetDateTime::parse(
        &answer.expiration,
        &time::format_description::well_known::Rfc3339,
    )
    .context("the control API's Expiration is not a timestamp")?;
    let now = OffsetDateTime::now_utc();
    Ok(Credentials {
        access_key_id: answer.access_key_id,
        secret_access_key: Secret::new(answer.secret_access_key),
        session_token: Secret::new(answer.token),
        last_updated: now,
        expiration,
        refresh_at: expiration,
    })
}

/// The role's current credentials, from the config's provider or the running server.
#[allow(
    clippy::disallowed_methods,
    reason = "the `imds role-env` command starts here: its time is the clock's"
)]
async fn fetch(args: &RoleArgs) -> anyhow::Result<Credentials> {
    if args.role.is_empty() {
        bail!(UsageError(format_err!("--role: a role name is required")));
    }
    let file = match &args.config {
        Some(path) => config::read(path).map_err(UsageError)?,
        None => return fetch_from_server(args).await,
    };
    let configured_id = file
        .instance
        .as_ref()
        .and_then(|instance| instance.instance_id.clone());
    let resolved = file
        .resolve(&Generated::random())
        .map_err(|error| UsageError(error.context("invalid config")))?;
    let instance_id = args
        .instance_id
        .clone()
        .or(configured_id)
        .unwrap_or_else(|| "imds".to_owned());
    let request = CredentialRequest {
        role_name: &args.role,
        instance_id: &instance_id,
        // What an IMDSv2 client of the instance would get.
        delivery: imds_credentials::Delivery::V2,
    };
    resolved
        .credential_provider
        .fetch(request, OffsetDateTime::now_utc())
        .await
        .with_context(|| format!("cannot obtain credentials for role {}", args.role))
}

fn fetch_blocking(args: &RoleArgs) -> anyhow::Result<Credentials> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fetch(args))
}

/// `imds env`: prints `export NAME='value'` lines.
pub fn print_env(args: &RoleArgs) -> anyhow::Result<()> {
    let credentials = fetch_blocking(args)?;
    for (name, value) in variables(&credentials) {
        println!("export {name}={}", shell_quote(&value));
    }
    Ok(())
}

/// `imds exec`: replaces this process with the command, the credentials in its environment.
pub fn exec(args: &ExecArgs) -> anyhow::Result<()> {
    let credentials = fetch_blocking(&args.role)?;
    let (program, arguments) = args
        .command
        .split_first()
        .ok_or_else(|| UsageError(format_err!("exec: a command is required")))?;
    let error = std::process::Command::new(program)
        .args(arguments)
        .envs(variables(&credentials))
        .exec();
    Err(format_err!("cannot run {program}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(value: &str, expect: &str) {
        assert_eq!(shell_quote(value), expect);
    }

    #[test]
    fn values_are_quoted_for_the_shell() {
        check("abc", "'abc'");
        check("a/b+c=", "'a/b+c='");
        check("it's", "'it'\\''s'");
        check("", "''");
    }
}
