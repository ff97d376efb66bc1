//! TLS for the control listener: a certificate chain and key from PEM files, optionally client
//! certificates required from a CA (mTLS), with rustls over ring.
//!
//! `ServerTls` keeps the files' names and the `rustls::ServerConfig` made from them; `reload`
//! reads the files again and swaps the new config in for the connections accepted after it
//! (open ones keep theirs). A reload that fails (a missing file, a key that is not the
//! certificate's) changes nothing, and says why.

use std::{path::PathBuf, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};

/// The files the control listener's TLS is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), its own certificate first.
    pub certificate: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When given, clients must present a certificate issued by one of these CAs (PEM).
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files could not be used; it names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The control listener's TLS settings, reloadable.
#[derive(Clone)]
pub struct ServerTls {
    files: Arc<TlsFiles>,
    config: Arc<ArcSwap<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads `files`; an error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let config = build(&files)?;
        Ok(ServerTls {
            files: Arc::new(files),
            config: Arc::new(ArcSwap::from_pointee(config)),
        })
    }

    /// The files it is made from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again; connections accepted from now on get the new certificate. On an
    /// error the one served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// What accepts the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

/// The certificates of the PEM file at `path` (`what` it is, for the message); none is an
/// error. `imds ctl` reads its CA and client certificate files with it too.
pub fn certificates(
    path: &std::path::Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| {
            TlsError(format!(
                "cannot read the {what} {}: {error}",
                path.display()
            ))
        })?;
    if certificates.is_empty() {
        return Err(TlsError(format!(
            "the {what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.certificate, "TLS certificate file")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| {
        TlsError(format!(
            "cannot read a private key from the TLS key file {}: {error}",
            files.key.display()
        ))
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError(format!("TLS settings: {error}")))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(path, "client CA file")? {
                roots.add(certificate).map_err(|error| {
                    TlsError(format!(
                        "the client CA file {} holds a certificate that is not a CA's: {error}",
                        path.display()
                    ))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| {
                    TlsError(format!("the client CA file {}: {error}", path.display()))
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|error| {
        TlsError(format!(
            "the TLS key file {} does not go with the certificate {}: {error}",
            files.key.display(),
            files.certificate.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
