//! The state directory: what must stay the same across restarts of the server on one host.
//!
//! # Files
//! - `token-key`: 32 random bytes keying session-token MACs (mode 0600).
//! - `identity-key.pem`: the RSA key that signs identity documents (mode 0600).
//! - `identity-certificate.pem`: its self-signed certificate (mode 0644).
//! - `generated.toml`: identifiers drawn on first start for what the config leaves out.
//! - `admin-token`: the control API's bearer token (mode 0600), unless one is given.
//! - `service-account-signer.pem`: the RSA key that signs and verifies EKS Pod Identity
//!   service-account tokens (mode 0600), when `[pod-identity]` names no key.
//! - `instance-connect-ca-key.pem`, `instance-connect-signer-key.pem`: the RSA keys of EC2
//!   Instance Connect's CA and signer (mode 0600).
//! - `instance-connect-ca.pem`: the CA's self-signed certificate (mode 0644), which
//!   `imds identity instance-connect-ca` prints.
//! - `imds.db`: the embedded store (SQLite), unless `--store` names another.
//!
//! Each file is created once, atomically: written under a temporary name and then hard-linked
//! into place, which fails if another process got there first, in which case its file is used.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{format_err, Context};
use imds_core::token::KEY_LENGTH;
use imds_server::{identity::IdentitySigner, instance_connect::InstanceConnectSigner};

use imds_core::spec::Generated;

const TOKEN_KEY: &str = "token-key";
const IDENTITY_KEY: &str = "identity-key.pem";
const IDENTITY_CERTIFICATE: &str = "identity-certificate.pem";
const GENERATED: &str = "generated.toml";
const INSTANCE_CONNECT_CA_KEY: &str = "instance-connect-ca-key.pem";
const INSTANCE_CONNECT_CA: &str = "instance-connect-ca.pem";
const INSTANCE_CONNECT_SIGNER_KEY: &str = "instance-connect-signer-key.pem";
/// The control API's bearer token, made on first start unless one is given.
pub const ADMIN_TOKEN: &str = "admin-token";
/// The key service-account tokens are signed with when the config names none.
pub const SERVICE_ACCOUNT_SIGNER: &str = "service-account-signer.pem";

/// An open state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// `$XDG_STATE_HOME/imds`, else `~/.local/state/imds`, else `/var/lib/imds`.
    pub fn default_path() -> PathBuf {
        dirs::state_dir()
            .map(|directory| directory.join("imds"))
            .unwrap_or_else(|| PathBuf::from("/var/lib/imds"))
    }

    /// Opens `path`, creating it (mode 0700) if needed.
    pub fn open(path: &Path) -> anyhow::Result<StateDir> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create state directory {}", path.display()))?;
        Ok(StateDir {
            path: path.to_owned(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token MAC key, made on first use.
    pub fn token_key(&self) -> anyhow::Result<[u8; KEY_LENGTH]> {
        let bytes = self.load_or_create(TOKEN_KEY, 0o600, || {
            let mut key = [0u8; KEY_LENGTH];
            rand::Rng::fill(&mut rand::rng(), &mut key[..]);
            Ok(key.to_vec())
        })?;
        bytes.try_into().map_err(|bytes: Vec<u8>| {
            format_err!(
                "{} holds {} bytes, not {KEY_LENGTH}: remove it to make a new key",
                self.path.join(TOKEN_KEY).display(),
                bytes.len()
            )
        })
    }

    /// The identity signing key and certificate, made on first use.
    pub fn identity_signer(&self) -> anyhow::Result<IdentitySigner> {
        let key_path = self.path.join(IDENTITY_KEY);
        let certificate_path = self.path.join(IDENTITY_CERTIFICATE);
        if !key_path.exists() {
            let signer = IdentitySigner::generate()?;
            // The certificate goes first: a key without its certificate is never left behind
            // for another process to pick up.
            self.load_or_create(
                IDENTITY_CERTIFICATE,
                0o644,
                || Ok(signer.certificate_pem()?),
            )?;
            self.load_or_create(IDENTITY_KEY, 0o600, || Ok(signer.key_pem()?))?;
        }
        let key =
            fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
        let certificate = fs::read(&certificate_path)
            .with_context(|| format!("cannot read {}", certificate_path.display()))?;
        IdentitySigner::from_pem(&key, &certificate).with_context(|| {
            format!(
                "{} and {} do not hold a usable key and certificate",
                key_path.display(),
                certificate_path.display()
            )
        })
    }

    /// EC2 Instance Connect's CA and signer, made on first use.
    pub fn instance_connect_signer(&self) -> anyhow::Result<InstanceConnectSigner> {
        let paths = [
            INSTANCE_CONNECT_CA_KEY,
            INSTANCE_CONNECT_CA,
            INSTANCE_CONNECT_SIGNER_KEY,
        ]
        .map(|name| self.path.join(name));
        if !paths[0].exists() {
            let signer = InstanceConnectSigner::generate()?;
            // The keys go last, the CA key last of all: its presence says the set is complete.
            self.load_or_create(INSTANCE_CONNECT_CA, 0o644, || {
                Ok(signer.ca_certificate_pem()?)
            })?;
            self.load_or_create(INSTANCE_CONNECT_SIGNER_KEY, 0o600, || {
                Ok(signer.signer_key_pem()?)
            })?;
            self.load_or_create(INSTANCE_CONNECT_CA_KEY, 0o600, || Ok(signer.ca_key_pem()?))?;
        }
        let [ca_key, ca, signer_key] = [&paths[0], &paths[1], &paths[2]]
            .map(|path| fs::read(path).with_context(|| format!("cannot read {}", path.display())));
        InstanceConnectSigner::from_pem(&ca_key?, &ca?, &signer_key?).with_context(|| {
            format!(
                "{}, {} and {} do not hold a usable CA and signer: remove them to make new ones",
                paths[0].display(),
                paths[1].display(),
                paths[2].display()
            )
        })
    }

    /// The service-account token signing key (PEM), made on first use: RSA 2048.
    pub fn service_account_signer(&self) -> anyhow::Result<Vec<u8>> {
        self.load_or_create(SERVICE_ACCOUNT_SIGNER, 0o600, || {
            Ok(imds_server::container_api::service_account_token::SigningKey::generate_pem()?)
        })
    }

    /// The control API's bearer token, made on first use: 32 random bytes, hex.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let bytes = self.load_or_create(ADMIN_TOKEN, 0o600, || {
            let mut key = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut key[..]);
            Ok(key
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
                .into_bytes())
        })?;
        let token = String::from_utf8(bytes)
            .map_err(|_| format_err!("{} is not text", self.path.join(ADMIN_TOKEN).display()))?;
        Ok(token.trim().to_owned())
    }

    /// The identifiers generated for this host, made on first use.
    pub fn generated(&self) -> anyhow::Result<Generated> {
        let bytes = self.load_or_create(GENERATED, 0o644, || {
            let text = toml::to_string(&Generated::random())?;
            Ok(format!(
                "# Identifiers generated for this host on first start; the config file overrides them.\n{text}"
            )
            .into_bytes())
        })?;
        let path = self.path.join(GENERATED);
        let text =
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not valid: remove it to start afresh", path.display()))
    }

    fn load_or_create(
        &self,
        name: &str,
        mode: u32,
        make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let path = self.path.join(name);
        match fs::read(&path) {
            Ok(bytes) => return Ok(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        }
        let bytes = make()?;
        let temporary = self
            .path
            .join(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        // The mode given to open() is reduced by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        let linked = fs::hard_link(&temporary, &path);
        let _ = fs::remove_file(&temporary);
        match linked {
            Ok(()) => Ok(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
            }
            Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_made_once_with_private_modes() {
        let directory = tempfile::tempdir().unwrap();
        let state = StateDir::open(&directory.path().join("state")).unwrap();
        let key = state.token_key().unwrap();
        assert_eq!(state.token_key().unwrap(), key);
        let generated = state.generated().unwrap();
        assert_eq!(state.generated().unwrap(), generated);
        let signer = state.identity_signer().unwrap();
        assert_eq!(
            state.identity_signer().unwrap().certificate_pem().unwrap(),
            signer.certificate_pem().unwrap()
        );
        let mode = |name: &str| {
            fs::metadata(state.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(TOKEN_KEY), 0o600);
        assert_eq!(mode(IDENTITY_KEY), 0o600);
        assert_eq!(mode(""), 0o700);
        let leftovers: Vec<_> = fs::read_dir(state.path())
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_damaged_key_is_a_clear_error() {
        let directory = tempfile::tempdir().unwrap();
        let state = StateDir::open(directory.path()).unwrap();
        fs::write(directory.path().join(TOKEN_KEY), b"short").unwrap();
        let error = format!("{:#}", state.token_key().unwrap_err());
        assert!(error.contains("holds 5 bytes"), "{error}");
    }
}
