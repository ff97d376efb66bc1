//! How `imds serve` secures its control listener: TLS and client certificates, named tokens,
//! and the refusal to expose it unencrypted in fleet mode. (What SIGHUP reloads: `reload`.)
//!
//! Each `[control]` key of the config file has a flag that overrides it. Everything is checked
//! before the store is opened or anything is bound.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::format_err;
use imds_server::tls::{ServerTls, TlsFiles};

use crate::{cli::ServeArgs, config::ControlFile, error::UsageError};

/// The control listener's settings, checked.
#[derive(Debug)]
pub struct ControlPlane {
    /// TLS, when configured.
    pub tls: Option<ServerTls>,
    /// The directory of named tokens, when configured.
    pub tokens_dir: Option<PathBuf>,
}

/// The flags over the file: `[control]` as `serve` applies it.
pub fn resolve(args: &ServeArgs, file: &ControlFile) -> anyhow::Result<ControlPlane> {
    let certificate = args.admin_tls_cert.clone().or(file.tls_cert.clone());
    let key = args.admin_tls_key.clone().or(file.tls_key.clone());
    let client_ca = args.admin_client_ca.clone().or(file.client_ca.clone());
    let files =
        match (certificate, key) {
            (Some(certificate), Some(key)) => Some(TlsFiles {
                certificate,
                key,
                client_ca,
            }),
            (None, None) if client_ca.is_some() => {
                return Err(usage(
                    "--admin-client-ca (control.client-ca) needs TLS: give --admin-tls-cert and \
                 --admin-tls-key (control.tls-cert, control.tls-key) too",
                ))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(usage(
                    "--admin-tls-cert (control.tls-cert) needs its key: give --admin-tls-key \
                 (control.tls-key)",
                ))
            }
            (None, Some(_)) => return Err(usage(
                "--admin-tls-key (control.tls-key) needs its certificate: give --admin-tls-cert \
                 (control.tls-cert)",
            )),
        };
    check_exposure(
        args.host_id.is_some(),
        args.admin_listen,
        files.is_some(),
        args.admin_trusted_network || file.trusted_network,
    )
    .map_err(usage)?;
    let tls = match files {
        Some(files) => Some(ServerTls::load(files).map_err(|error| {
            UsageError(format_err!(
                "cannot serve the control API over TLS: {error}"
            ))
        })?),
        None => None,
    };
    Ok(ControlPlane {
        tls,
        tokens_dir: args.admin_tokens_dir.clone().or(file.tokens_dir.clone()),
    })
}

fn usage(message: impl std::fmt::Display) -> anyhow::Error {
    UsageError(format_err!("{message}")).into()
}

/// In fleet mode the control API is meant to be reached from other machines; bearer tokens in
/// plain HTTP across a network are refused unless the operator says the network is trusted.
fn check_exposure(
    fleet: bool,
    address: SocketAddr,
    tls: bool,
    trusted: bool,
) -> Result<(), String> {
    if fleet && !address.ip().is_loopback() && !tls && !trusted {
        return Err(format!(
            "the control API would listen on {address} (--admin-listen), off loopback, in fleet \
             mode, without TLS: its bearer tokens would cross the network in the clear. Give \
             --admin-tls-cert and --admin-tls-key (control.tls-cert, control.tls-key), or \
             --admin-trusted-network (control.trusted-network = true) if the network is trusted"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_exposure;

    #[test]
    fn fleet_mode_off_loopback_needs_tls_or_a_trusted_network() {
        let public = "0.0.0.0:1339".parse().unwrap();
        let loopback = "127.0.0.1:1339".parse().unwrap();
        let error = check_exposure(true, public, false, false).unwrap_err();
        assert!(error.contains("--admin-listen"), "{error}");
        assert!(error.contains("--admin-trusted-network"), "{error}");
        assert!(error.contains("control.tls-cert"), "{error}");
        assert!(check_exposure(true, public, true, false).is_ok());
        assert!(check_exposure(true, public, false, true).is_ok());
        assert!(check_exposure(true, loopback, false, false).is_ok());
        assert!(check_exposure(true, "[::1]:1339".parse().unwrap(), false, false).is_ok());
        assert!(check_exposure(false, public, false, false).is_ok());
    }
}
