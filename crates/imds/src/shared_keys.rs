//! Keys shared through the store: the session-token key and the identity-signing key (with its
//! certificate), which every server on one store must use alike, so that a token issued by one
//! host is accepted by another and identity documents verify with one certificate fleet-wide.
//!
//! They are sealed with AES-256-GCM (ring) under the operator's store key before they reach the
//! store, never written in plain text. Each sealed value is `version ‖ nonce ‖ ciphertext ‖ tag`,
//! with the secret's name as associated data, so a value cannot be passed off as another one.
//! The first server to start makes each secret; the others read it (`Store::create_secret`).
//! The same key seals static roles' secrets in stored role descriptions (`Sealer`).

use std::path::Path;

use anyhow::{bail, format_err, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use imds_core::token::KEY_LENGTH;
use imds_server::identity::IdentitySigner;
use imds_store::Store;
use ring::{
    aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN},
    rand::{SecureRandom, SystemRandom},
};
use serde::{Deserialize, Serialize};

/// The store's name of the session-token key.
const TOKEN_KEY: &str = "token-key";
/// The store's name of the identity-signing key and certificate.
const IDENTITY: &str = "identity";
/// The first byte of a sealed value: the format, for a later change of algorithm.
const SEALED_V1: u8 = 1;

/// The operator's key that seals shared secrets. `Debug` never shows it.
pub struct StoreKey(LessSafeKey);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

impl StoreKey {
    /// Reads a key file: 32 random bytes in base64 (`openssl rand -base64 32 > store.key`).
    pub fn from_file(path: &Path) -> anyhow::Result<StoreKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the store key file {}", path.display()))?;
        // The file's contents are never echoed: it is a secret.
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            format_err!(
                "the store key file {} is not base64; make one with `openssl rand -base64 32`",
                path.display()
            )
        })?;
        StoreKey::from_bytes(&bytes).with_context(|| format!("store key file {}", path.display()))
    }

    fn from_bytes(bytes: &[u8]) -> anyhow::Result<StoreKey> {
        if bytes.len() != 32 {
            bail!(
                "the key is {} bytes; it must be 32 (`openssl rand -base64 32`)",
                bytes.len()
            );
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| format_err!("the key is not usable for AES-256-GCM"))?;
        Ok(StoreKey(LessSafeKey::new(key)))
    }

    /// Seals `plaintext` as the secret `name`.
    fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut in_out = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut in_out,
            )
            .expect("AES-GCM seals any value shorter than 64 GiB");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        sealed
    }

    /// Opens the sealed secret `name`; fails if it was sealed under another key or altered.
    fn open(&self, name: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        let Some((&SEALED_V1, rest)) = sealed.split_first() else {
            bail!("the stored secret {name} is in a format this build does not know");
        };
        if rest.len() < NONCE_LEN {
            bail!("the stored secret {name} is truncated");
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("the length was checked");
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .0
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut in_out)
            .map_err(|_| {
                format_err!(
                    "the stored secret {name} does not open with this store key: every server on \
                     the store must be given the same --store-key-file"
                )
            })?;
        Ok(plaintext.to_vec())
    }

    /// The secret `name` from the store, made with `make` (and stored) if no server made it yet.
    async fn shared(
        &self,
        store: &dyn Store,
        name: &str,
        make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let sealed = match store.get_secret(name).await? {
            Some(sealed) => sealed,
            None => {
                let sealed = self.seal(name, &make()?);
                // Another server may have stored its own meanwhile: then that one is used.
                store.create_secret(name, sealed).await?
            }
        };
        self.open(name, &sealed)
    }

    /// The session-token key shared by every server on the store.
    pub async fn token_key(&self, store: &dyn Store) -> anyhow::Result<[u8; KEY_LENGTH]> {
        let bytes = self
            .shared(store, TOKEN_KEY, || {
                let mut key = [0u8; KEY_LENGTH];
                rand::Rng::fill(&mut rand::rng(), &mut key[..]);
                Ok(key.to_vec())
            })
            .await?;
        bytes
            .try_into()
            .map_err(|_| format_err!("the stored token key is not {KEY_LENGTH} bytes"))
    }

    /// The identity signer shared by every server on the store.
    pub async fn identity_signer(&self, store: &dyn Store) -> anyhow::Result<IdentitySigner> {
        let bytes = self
            .shared(store, IDENTITY, || {
                let signer = IdentitySigner::generate()?;
                Ok(serde_json::to_vec(&IdentityPem {
                    key: String::from_utf8(signer.key_pem()?)?,
                    certificate: String::from_utf8(signer.certificate_pem()?)?,
                })?)
            })
            .await?;
        let pem: IdentityPem = serde_json::from_slice(&bytes)
            .context("the stored identity key is not in the expected form")?;
        Ok(IdentitySigner::from_pem(
            pem.key.as_bytes(),
            pem.certificate.as_bytes(),
        )?)
    }
}

impl imds_server::sealing::Sealer for StoreKey {
    fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        StoreKey::seal(self, name, plaintext)
    }

    fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        StoreKey::open(self, name, sealed).map_err(|error| format!("{error:#}"))
    }
}

/// The identity key and its certificate, kept together so that no server pairs one host's key
/// with another's certificate.
#[derive(Serialize, Deserialize)]
struct IdentityPem {
    key: String,
    certificate: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> StoreKey {
        StoreKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_the_key_and_name_they_were_sealed_with() {
        let sealed = key(1).seal("token-key", b"plain secret bytes");
        assert_eq!(sealed[0], SEALED_V1);
        assert!(!sealed.windows(5).any(|window| window == b"plain"));
        assert_eq!(
            key(1).open("token-key", &sealed).unwrap(),
            b"plain secret bytes"
        );
        let wrong_key = key(2).open("token-key", &sealed).unwrap_err().to_string();
        assert!(wrong_key.contains("same --store-key-file"), "{wrong_key}");
        assert!(key(1).open("identity", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key(1).open("token-key", &altered).is_err());
        assert!(key(1).open("token-key", &[SEALED_V1, 0, 0]).is_err());
        assert!(key(1).open("token-key", &[]).is_err());
        // Each seal draws a new nonce.
        assert_ne!(
            key(1).seal("token-key", b"x"),
            key(1).seal("token-key", b"x")
        );
    }

    #[test]
    fn key_files_must_hold_32_bytes_of_base64() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("store.key");
        std::fs::write(&path, format!("{}\n", STANDARD.encode([7u8; 32]))).unwrap();
        assert!(StoreKey::from_file(&path).is_ok());
        std::fs::write(&path, STANDARD.encode([7u8; 16])).unwrap();
        let error = format!("{:#}", StoreKey::from_file(&path).unwrap_err());
        assert!(error.contains("16 bytes; it must be 32"), "{error}");
        std::fs::write(&path, "not base64 at all!").unwrap();
        let error = format!("{:#}", StoreKey::from_file(&path).unwrap_err());
        assert!(
            error.contains("is not base64") && !error.contains("at all"),
            "{error}"
        );
        assert!(!format!("{:?}", key(3)).contains('3'));
    }

    #[tokio::test]
    async fn servers_on_one_store_share_the_keys() {
        let directory = tempfile::tempdir().unwrap();
        let uri = format!("sqlite:{}", directory.path().join("shared.db").display());
        let first = imds_store::open(&uri).await.unwrap();
        let second = imds_store::open(&uri).await.unwrap();
        let token_key = key(5).token_key(&*first).await.unwrap();
        assert_eq!(key(5).token_key(&*second).await.unwrap(), token_key);
        let signer = key(5).identity_signer(&*first).await.unwrap();
        let again = key(5).identity_signer(&*second).await.unwrap();
        assert_eq!(
            signer.certificate_pem().unwrap(),
            again.certificate_pem().unwrap()
        );
        // Nothing is stored in plain text.
        let stored = first.get_secret(IDENTITY).await.unwrap().unwrap();
        assert!(!stored.windows(10).any(|window| window == b"-----BEGIN"));
        let stored = first.get_secret(TOKEN_KEY).await.unwrap().unwrap();
        assert!(!stored.windows(KEY_LENGTH).any(|window| window == token_key));
        // Another key cannot read them.
        let error = key(6).token_key(&*second).await.unwrap_err().to_string();
        assert!(error.contains("same --store-key-file"), "{error}");
    }
}
