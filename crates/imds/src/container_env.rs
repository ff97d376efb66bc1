//! `imds container-env`: the environment a container needs to find imds's container endpoints,
//! in `docker run --env-file` form (`NAME=value` lines, no quoting).
//!
//! - `--relative-uri PATH`: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, which SDKs append to
//!   `http://169.254.170.2` (ECS task roles).
//! - `--full-uri URL`: `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with `--token-file FILE` as
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
//! - `--pod-identity`: as EKS sets a pod up: `AWS_CONTAINER_CREDENTIALS_FULL_URI` at the Pod
//!   Identity Agent's address and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, after minting the
//!   service account's token into `--token-file` (`imds pod-identity mint-token`).
//! - `--metadata-uri URL`: `ECS_CONTAINER_METADATA_URI_V4`, the task metadata endpoint.
//! - `--region`: `AWS_REGION`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::{cli::SignerArgs, UsageError};

/// EKS's URI for IPv4 clusters (EKS User Guide, "How EKS Pod Identity works").
const POD_IDENTITY_URI: &str = "http://169.254.170.23/v1/credentials";

/// `imds container-env`.
#[derive(Debug, Args)]
pub struct ContainerEnvArgs {
    /// A path of the container endpoint, for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI.
    #[arg(long, conflicts_with_all = ["full_uri", "pod_identity"])]
    pub relative_uri: Option<String>,
    /// A whole URL of the container endpoint, for AWS_CONTAINER_CREDENTIALS_FULL_URI.
    #[arg(long, conflicts_with = "pod_identity")]
    pub full_uri: Option<String>,
    /// EKS Pod Identity: mint the service account's token into --token-file and point
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI at the agent's address.
    #[arg(long, requires_all = ["namespace", "service_account", "token_file"])]
    pub pod_identity: bool,
    /// The Pod Identity URL (EKS: http://169.254.170.23/v1/credentials; IPv6 clusters use
    /// `http://[fd00:ec2::23]/v1/credentials`).
    #[arg(long, default_value = POD_IDENTITY_URI, requires = "pod_identity")]
    pub pod_identity_uri: String,
    /// The service account's namespace (--pod-identity).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The service account (--pod-identity).
    #[arg(long)]
    pub service_account: Option<String>,
    /// The token file, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, as the container sees its path;
    /// with --pod-identity it is written here.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The task metadata endpoint's URL, ECS_CONTAINER_METADATA_URI_V4.
    #[arg(long)]
    pub metadata_uri: Option<String>,
    /// AWS_REGION.
    #[arg(long)]
    pub region: Option<String>,
    /// The key that signs the minted token (--pod-identity).
    #[command(flatten)]
    pub signer: SignerArgs,
}

/// The variables, in the order printed.
pub fn variables(args: &ContainerEnvArgs) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut variables = Vec::new();
    if let Some(path) = &args.relative_uri {
        if !path.starts_with('/') {
            bail!("--relative-uri: must be a path starting with '/' (SDKs append it to http://169.254.170.2)");
        }
        variables.push(("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", path.clone()));
    }
    if let Some(url) = &args.full_uri {
        variables.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI", url.clone()));
    }
    if args.pod_identity {
        variables.push((
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            args.pod_identity_uri.clone(),
        ));
    }
    if let Some(path) = &args.token_file {
        variables.push((
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            path.to_str()
                .ok_or_else(|| anyhow::format_err!("--token-file: not UTF-8"))?
                .to_owned(),
        ));
    }
    if let Some(url) = &args.metadata_uri {
        variables.push(("ECS_CONTAINER_METADATA_URI_V4", url.clone()));
    }
    if let Some(region) = &args.region {
        variables.push(("AWS_REGION", region.clone()));
    }
    if variables.is_empty() {
        bail!("give --relative-uri, --full-uri or --pod-identity (and --region, --metadata-uri)");
    }
    for (name, value) in &variables {
        if value.is_empty() || value.contains(['\n', '\r']) {
            bail!("{name}: must be one non-empty line (an env file has one variable a line)");
        }
    }
    Ok(variables)
}

/// Prints the variables, minting the Pod Identity token first.
pub fn run(args: &ContainerEnvArgs) -> anyhow::Result<()> {
    let variables = variables(args).map_err(UsageError)?;
    if args.pod_identity {
        let (Some(namespace), Some(service_account), Some(token_file)) =
            (&args.namespace, &args.service_account, &args.token_file)
        else {
            return Err(UsageError(anyhow::format_err!(
                "--pod-identity needs --namespace, --service-account and --token-file"
            ))
            .into());
        };
        crate::pod_identity::mint_to_file(&args.signer, namespace, service_account, token_file)?;
    }
    for (name, value) in variables {
        println!("{name}={value}");
    }
    Ok(())
}
