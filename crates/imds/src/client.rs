//! The control API's client for `imds ctl`, `imds env` and `imds exec`: `AdminClient` (the
//! server crate's, over the API's own types) found by the flags, its token by the one rule
//! (`admin_token`).
//!
//! A call's `ClientError` reaches `main` inside the `anyhow::Error`; those of a request the
//! server refused as wrong (400, 404, 409) exit 64, the others (401, 403, 5xx, an unreachable
//! server) 1.
//!
//! An `https://` endpoint is reached over TLS (rustls): the server's certificate is checked
//! against `--ca-file` when given, else the system's CAs; `--cert` and `--key` present a client
//! certificate, for a server that requires one (mTLS).

use std::path::PathBuf;

use anyhow::format_err;
use clap::Args;
pub use imds_server::admin_api::client::{AdminClient, ClientError};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use crate::{admin_token, error::UsageError, state_dir::StateDir};

/// Where the running server's control API is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The control API of the running server.
    #[arg(long, env = "IMDS_ENDPOINT", default_value = "http://127.0.0.1:1339")]
    pub endpoint: String,
    /// File holding the control API's bearer token; before IMDS_ADMIN_TOKEN and the state
    /// directory's `admin-token`.
    #[arg(long, env = "IMDS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The server's state directory, where its admin token is kept.
    #[arg(long, env = "IMDS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ClientTls,
}

/// How an `https://` endpoint is reached.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientTls {
    /// CA certificates (PEM) the control API's certificate is checked against (https://
    /// endpoints); without it, the system's CAs.
    #[arg(long, env = "IMDS_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) to present, for a server that requires one (mTLS).
    #[arg(long, env = "IMDS_CLIENT_CERT", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, env = "IMDS_CLIENT_KEY", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// The rustls settings these files give.
    fn config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for certificate in certificates(path, "CA file")? {
                    roots.add(certificate).map_err(|error| {
                        UsageError(format_err!(
                            "the CA file {} holds a certificate rustls refuses: {error}",
                            path.display()
                        ))
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for certificate in found.certs {
                    let _ = roots.add(certificate);
                }
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| format_err!("TLS settings: {error}"))?
        .with_root_certificates(roots);
        // hyper-rustls sets the ALPN protocols (`http/1.1`) itself.
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "client certificate file")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
                    UsageError(format_err!(
                        "cannot read a private key from {}: {error}",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    UsageError(format_err!(
                        "the client key does not go with the certificate {}: {error}",
                        cert.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(config)
    }
}

/// The certificates of a PEM file; none is an error.
fn certificates(
    path: &std::path::Path,
    what: &str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    imds_server::tls::certificates(path, what).map_err(|error| UsageError(error.into()).into())
}

/// A client as the flags say, its token found by the one rule (`admin_token`).
pub fn from_args(args: &ApiArgs) -> anyhow::Result<AdminClient> {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(StateDir::default_path);
    let source = admin_token::source(
        args.admin_token_file.as_deref(),
        admin_token::from_environment(),
        &state_dir,
    );
    Ok(AdminClient::with_tls(
        &args.endpoint,
        admin_token::for_client(&source)?,
        args.tls.config()?,
    ))
}

/// True when `error` is the control API refusing a request as wrong (exit 64).
pub fn is_refusal(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_refusal)
    })
}
