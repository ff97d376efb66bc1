//! The control API's client for `imds ctl`, `imds env` and `imds exec`: `AdminClient` (the
//! server crate's, over the API's own types) found by the flags, its token by the one rule
//! (`admin_token`).
//!
//! A call's `ClientError` reaches `main` inside the `anyhow::Error`; those of a request the
//! server refused as wrong (400, 404, 409) exit 64, the others (401, 5xx, an unreachable
//! server) 1.

use std::path::PathBuf;

use clap::Args;
pub use imds_server::admin_api::client::{AdminClient, ClientError};

use crate::{admin_token, state_dir::StateDir};

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
    Ok(AdminClient::new(
        &args.endpoint,
        admin_token::for_client(&source)?,
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
