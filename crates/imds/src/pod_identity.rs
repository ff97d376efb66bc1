//! `imds pod-identity`: service-account tokens for the EKS Pod Identity endpoint, minted and
//! verified with one key (a PEM file, or the state directory's `service-account-signer.pem`,
//! which `imds serve --pod-identity-listen` also uses when `[pod-identity]` names no key).

#![allow(
    clippy::disallowed_methods,
    reason = "a token is issued at the moment the command runs"
)]

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use anyhow::Context;
use imds_server::container_api::service_account_token::{SigningKey, TokenRequest};

use crate::{
    cli::{PodIdentityCommand, SignerArgs},
    state_dir::StateDir,
    UsageError,
};

/// Runs one `imds pod-identity` command.
pub fn run(command: PodIdentityCommand) -> anyhow::Result<()> {
    match command {
        PodIdentityCommand::MintToken {
            namespace,
            service_account,
            audience,
            lifetime,
            issuer,
            output,
            signer,
        } => {
            let key = signing_key(&signer)?;
            let issued_at = time::OffsetDateTime::now_utc().unix_timestamp();
            let token = key.mint(&TokenRequest {
                namespace: &namespace,
                service_account: &service_account,
                audience: &audience,
                issuer: &issuer,
                issued_at,
                lifetime: i64::from(lifetime),
            })?;
            match output {
                Some(path) => write_token(&path, &token),
                None => {
                    println!("{token}");
                    Ok(())
                }
            }
        }
        PodIdentityCommand::Jwks { signer } => {
            let key = signing_key(&signer)?;
            println!("{}", serde_json::to_string_pretty(&key.jwks()?)?);
            Ok(())
        }
    }
}

/// Mints an EKS Pod Identity token for `namespace`/`service_account` (a day's lifetime) into
/// `path`.
pub fn mint_to_file(
    signer: &SignerArgs,
    namespace: &str,
    service_account: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let key = signing_key(signer)?;
    let token = key.mint(&TokenRequest {
        namespace,
        service_account,
        audience: imds_server::container_api::service_account_token::AUDIENCE,
        issuer: DEFAULT_ISSUER,
        issued_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        lifetime: i64::from(imds_server::container_api::service_account_token::DEFAULT_LIFETIME),
    })?;
    write_token(path, &token)
}

/// The issuer of minted tokens unless one is given.
pub use imds_server::container_api::service_account_token::DEFAULT_ISSUER;

fn signing_key(signer: &SignerArgs) -> anyhow::Result<SigningKey> {
    let (pem, source) = match &signer.key_file {
        Some(path) => (
            std::fs::read(path)
                .with_context(|| format!("cannot read {}", path.display()))
                .map_err(UsageError)?,
            path.display().to_string(),
        ),
        None => {
            let path = signer
                .state_dir
                .clone()
                .unwrap_or_else(StateDir::default_path);
            let state = StateDir::open(&path)?;
            let source = path
                .join(crate::state_dir::SERVICE_ACCOUNT_SIGNER)
                .display()
                .to_string();
            (state.service_account_signer()?, source)
        }
    };
    SigningKey::from_pem(&pem)
        .with_context(|| format!("{source} is no RSA or P-256 private key"))
        .map_err(|error| UsageError(error).into())
}

/// Writes the token as the kubelet projects it: no trailing newline (SDKs refuse one), mode 0600.
pub(crate) fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
