//! `imds capture`: walks a metadata service the way cloud-init does and writes what it serves
//! as a config file that `imds serve --config` serves back (or, with `--format cloud-init`, as
//! cloud-init's `instance-data.json`).
//!
//! Secrets stay behind: role credentials are never read (the role comes back with generated
//! credentials), and the identity signatures are left to the serving imds's own key. Every
//! captured value the config file cannot carry is reported on standard error; the file itself
//! goes to standard output.
//!
//! # Layout
//! - `client`: HTTP to the service: the IMDSv2 token, timeouts and retries.
//! - `walk`: the walk over `meta-data/`, `dynamic/` and `user-data`.
//! - `describe`: from the walk to an `InstanceSpec` and its role.
//! - `check`: what that description serves, compared with what was walked.
//! - `cloud_init`: the walk as `instance-data.json`.

mod check;
mod client;
mod cloud_init;
mod describe;
mod walk;

use std::{io::Write, time::Duration};

use anyhow::{bail, format_err};
use clap::{Args, ValueEnum};
use imds_core::{render::aws_timestamp, spec::Generated};
use imds_credentials::spec::RoleSpec;
use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    capture::{
        client::{ImdsClient, Settings, TokenOutcome},
        walk::Capture,
    },
    error::UsageError,
};

/// Where EC2's metadata service answers (EC2 User Guide, "Access instance metadata").
const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// `imds capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The metadata service to walk.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Walk without a token (IMDSv1) when the service issues none; without this flag a refused
    /// token request is an error.
    #[arg(long)]
    pub imdsv1: bool,
    /// The TTL, in seconds, asked for with the IMDSv2 token.
    #[arg(long, default_value_t = 21_600, value_parser = clap::value_parser!(u32).range(1..=21_600))]
    pub token_ttl: u32,
    /// The API version to walk: `latest` or a dated one such as `2021-03-23`.
    #[arg(long, default_value = "latest")]
    pub api_version: String,
    /// What to write: a config file for `imds serve --config`, or cloud-init's
    /// `instance-data.json`.
    #[arg(long, value_enum, default_value = "toml")]
    pub format: Format,
    /// Seconds one request may take, connecting included.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
    /// How many times a request that got no answer, a 429 or a 5xx is tried again.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
}

/// The output of `imds capture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A config file (TOML) that `imds serve --config` serves back.
    Toml,
    /// cloud-init's `instance-data.json` (JSON).
    CloudInit,
}

/// Runs `imds capture`.
pub async fn run(args: CaptureArgs) -> anyhow::Result<()> {
    check_api_version(&args.api_version).map_err(UsageError)?;
    let mut client = ImdsClient::new(
        &args.endpoint,
        Settings {
            timeout: Duration::from_secs(args.timeout),
            retries: args.retries,
            token_ttl: args.token_ttl,
        },
    )?;
    match client.fetch_token().await? {
        TokenOutcome::Issued => {}
        TokenOutcome::Refused(how) if args.imdsv1 => {
            report(&format!(
                "{}: {how}; walking without a token (IMDSv1)",
                client.base()
            ));
        }
        TokenOutcome::Refused(how) => {
            bail!(
                "{}: {how}, so no IMDSv2 token; give --imdsv1 to walk it without one",
                client.base()
            )
        }
    }
    let mut capture = walk::walk(&mut client, &args.api_version).await?;
    capture.tokens_required = if client.has_token() {
        let path = format!("/{}/meta-data/", args.api_version);
        match client.status_without_token(&path).await?.as_u16() {
            401 => Some(true),
            200 => Some(false),
            _ => None,
        }
    } else {
        Some(false)
    };
    for note in &capture.notes {
        report(note);
    }
    let output = match args.format {
        Format::CloudInit => cloud_init::to_cloud_init_json(&cloud_init::instance_data(&capture)),
        Format::Toml => config_file(&capture)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| format_err!("cannot write the output: {error}"))?;
    Ok(())
}

/// `latest` or `YYYY-MM-DD`.
fn check_api_version(version: &str) -> anyhow::Result<()> {
    let dated = version.len() == 10
        && version
            .bytes()
            .enumerate()
            .all(|(index, byte)| match index {
                4 | 7 => byte == b'-',
                _ => byte.is_ascii_digit(),
            });
    if version == "latest" || dated {
        Ok(())
    } else {
        bail!("--api-version {version:?} must be latest or a date such as 2021-03-23")
    }
}

/// One line on standard error.
fn report(text: &str) {
    eprintln!("imds capture: {text}");
}

/// What the config file holds: the instance and its role.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct CapturedConfig<'a> {
    instance: &'a imds_core::spec::InstanceSpec,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    roles: &'a [RoleSpec],
}

/// The config file of a walk, every captured value it cannot serve back reported.
fn config_file(capture: &Capture) -> anyhow::Result<String> {
    let description = describe::describe(capture);
    let mut notes = description.notes;
    let (mut spec, instance) =
        check::servable(description.instance, &Generated::random(), &mut notes)?;
    let served = check::served_tree(&instance, OffsetDateTime::now_utc())?;
    let differences = check::compare(capture, &served);
    for note in &notes {
        report(note);
    }
    for difference in &differences {
        report(difference);
    }
    let n_values = capture.entries.len();
    let header = header(capture, notes.len() + differences.len());
    let render = |spec: &imds_core::spec::InstanceSpec| -> anyhow::Result<String> {
        let body = toml::to_string_pretty(&CapturedConfig {
            instance: spec,
            roles: &description.roles,
        })
        .map_err(|error| format_err!("cannot write the config file: {error}"))?;
        let end = if body.ends_with('\n') { "" } else { "\n" };
        Ok(format!("{header}\n{body}{end}"))
    };
    let mut text = render(&spec)?;
    // What a TOML reader makes of the text must be the description itself; user data is the
    // one value whose text form might not come back byte for byte.
    if read_back(&text)? != spec
        && spec
            .user_data
            .as_deref()
            .is_some_and(|text| !text.is_empty())
    {
        use base64::{engine::general_purpose::STANDARD, Engine};
        let user_data = spec.user_data.take().unwrap_or_default();
        spec.user_data_base64 = Some(STANDARD.encode(user_data));
        text = render(&spec)?;
    }
    if read_back(&text)? != spec {
        bail!("the config file written does not read back as the captured instance");
    }
    report(&format!(
        "{n_values} listings and values captured from {} (API version {}, {}); {}",
        capture.endpoint,
        capture.api_version,
        if capture.used_token {
            "IMDSv2"
        } else {
            "IMDSv1"
        },
        match notes.len() + differences.len() {
            0 => "every one is served back as captured".to_owned(),
            count => format!("{count} not served back as captured (above)"),
        }
    ));
    Ok(text)
}

/// The instance a written config file describes.
fn read_back(text: &str) -> anyhow::Result<imds_core::spec::InstanceSpec> {
    let file = crate::config::parse(text)
        .map_err(|error| format_err!("the config file written does not parse: {error:#}"))?;
    file.instance
        .ok_or_else(|| format_err!("the config file written has no [instance]"))
}

/// The comment that opens a captured config file.
fn header(capture: &Capture, n_differences: usize) -> String {
    let mut lines =
        vec![
        format!(
            "# Captured by `imds capture` from {} (API version {}, {}) at {}.",
            capture.endpoint,
            capture.api_version,
            if capture.used_token { "IMDSv2" } else { "IMDSv1" },
            aws_timestamp(OffsetDateTime::now_utc())
        ),
        "# Serve it with `imds serve --config FILE`.".to_owned(),
        "# Credentials are not captured: the instance's role gets generated credentials, and the"
            .to_owned(),
        "# identity document is signed with the serving imds's own key.".to_owned(),
        "# HttpPutResponseHopLimit cannot be seen from the instance: it keeps its default."
            .to_owned(),
    ];
    if n_differences > 0 {
        lines.push(format!(
            "# {n_differences} captured values are not served back as captured (reported when captured)."
        ));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for good in ["latest", "2021-03-23", "2009-04-04"] {
            assert!(check_api_version(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Latest",
            "2021-3-23",
            "2021-03-23/",
            "../x",
            "2021/03/23",
        ] {
            assert!(check_api_version(bad).is_err(), "{bad}");
        }
    }
}
