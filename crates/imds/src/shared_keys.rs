//! Fleet mode's shared keys: the token key and the identity-signing key and certificate, kept in
//! the shared store so that every host issues and accepts the same tokens and signs identity
//! documents that one certificate verifies.
//!
//! The store holds them sealed with AES-256-GCM under the operator's store key
//! (`--store-key-file`, 32 bytes as 64 hex digits, e.g. from `openssl rand -hex 32`), never in
//! plain text. The first host that needs a key makes it, seals it and writes it with
//! `Store::create_secret`; a host that loses that race, or starts later, opens the winner's.
//!
//! A sealed secret is `version (1 byte) ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`; the
//! secret's name is the associated data, so a sealed value copied to another name does not open.

use std::path::Path;

use anyhow::{format_err, Context};
use imds_core::token::KEY_LENGTH;
use imds_server::identity::IdentitySigner;
use imds_store::Store;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The format version of sealed secrets, so that a later format can be told apart.
const SEALED_VERSION: u8 = 1;

/// The store name of the token key.
const TOKEN_KEY: &str = "token-key";

/// The store name of the identity key and certificate (one secret, so they always match).
const IDENTITY: &str = "identity";

/// The operator's key that seals the shared secrets. Never printed.
pub struct StoreKey(LessSafeKey);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

/// The identity key and certificate as sealed together.
#[derive(Serialize, Deserialize)]
struct IdentityPems {
    key: String,
    certificate: String,
}

impl StoreKey {
    /// Reads a key file: 64 hex digits (32 bytes), surrounding whitespace ignored.
    pub fn read(path: &Path) -> anyhow::Result<StoreKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the store key file {}", path.display()))?;
        Self::from_hex(text.trim()).with_context(|| {
            format!(
                "the store key file {} must hold 32 bytes as 64 hex digits \
                 (make one with: openssl rand -hex 32)",
                path.display()
            )
        })
    }

    fn from_hex(text: &str) -> anyhow::Result<StoreKey> {
        if text.len() != 64 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(format_err!(
                "found {} characters, not 64 hex digits",
                text.len()
            ));
        }
        // Hex decoding of a fixed 64-digit string is two lines; not worth a dependency.
        let bytes: Vec<u8> = (0..32)
            .map(|index| u8::from_str_radix(&text[index * 2..index * 2 + 2], 16))
            .collect::<Result<_, _>>()?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| format_err!("not a usable AES-256 key"))?;
        Ok(StoreKey(LessSafeKey::new(key)))
    }

    fn seal(&self, name: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| format_err!("the system random source failed"))?;
        let mut in_out = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| format_err!("cannot seal {name}"))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    fn open(&self, name: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        let unreadable = || {
            format_err!(
                "the store holds the shared secret {name:?}, but this store key does not open it: \
                 give every host the same --store-key-file"
            )
        };
        let (&version, rest) = sealed.split_first().ok_or_else(unreadable)?;
        if version != SEALED_VERSION || rest.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .0
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut in_out)
            .map_err(|_| unreadable())?;
        Ok(plaintext.to_vec())
    }

    /// The secret `name`: the stored one, or `make`'s, sealed and stored if none is.
    async fn load_or_create(
        &self,
        store: &dyn Store,
        name: &str,
        make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let sealed = match store.get_secret(name).await? {
            Some(sealed) => sealed,
            None => {
                let sealed = self.seal(name, &make()?)?;
                store.create_secret(name, &sealed).await?
            }
        };
        self.open(name, &sealed)
    }

    /// The fleet's token key.
    pub async fn token_key(&self, store: &dyn Store) -> anyhow::Result<[u8; KEY_LENGTH]> {
        let bytes = self
            .load_or_create(store, TOKEN_KEY, || {
                let mut key = [0u8; KEY_LENGTH];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| format_err!("the system random source failed"))?;
                Ok(key.to_vec())
            })
            .await?;
        bytes.try_into().map_err(|bytes: Vec<u8>| {
            format_err!(
                "the shared token key holds {} bytes, not {KEY_LENGTH}",
                bytes.len()
            )
        })
    }

    /// The fleet's identity-signing key and certificate.
    pub async fn identity_signer(&self, store: &dyn Store) -> anyhow::Result<IdentitySigner> {
        let bytes = self
            .load_or_create(store, IDENTITY, || {
                let signer = IdentitySigner::generate()?;
                let pems = IdentityPems {
                    key: String::from_utf8(signer.key_pem()?)?,
                    certificate: String::from_utf8(signer.certificate_pem()?)?,
                };
                Ok(serde_json::to_vec(&pems)?)
            })
            .await?;
        let pems: IdentityPems = serde_json::from_slice(&bytes)
            .context("the shared identity key is not in the expected form")?;
        IdentitySigner::from_pem(pems.key.as_bytes(), pems.certificate.as_bytes())
            .context("the shared identity key and certificate are not usable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_secrets_open_only_under_their_name_and_key() {
        let key = StoreKey::from_hex(KEY).unwrap();
        let sealed = key.seal("token-key", b"secret bytes").unwrap();
        assert_eq!(sealed[0], SEALED_VERSION);
        assert!(!sealed.windows(12).any(|window| window == b"secret bytes"));
        assert_eq!(key.open("token-key", &sealed).unwrap(), b"secret bytes");
        // Another name, another key, a flipped bit, a truncation: refused, naming the fix.
        let message = format!("{:#}", key.open("identity", &sealed).unwrap_err());
        assert!(message.contains("--store-key-file"), "{message}");
        let other = StoreKey::from_hex(&KEY.replace("1f", "ff")).unwrap();
        assert!(other.open("token-key", &sealed).is_err());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(key.open("token-key", &flipped).is_err());
        assert!(key.open("token-key", &sealed[..10]).is_err());
        assert!(key.open("token-key", &[]).is_err());
        // Two seals of one secret differ (fresh nonces).
        assert_ne!(key.seal("token-key", b"secret bytes").unwrap(), sealed);
    }

    #[track_caller]
    fn check_bad_key(text: &str) {
        assert!(StoreKey::from_hex(text).is_err(), "{text:?}");
    }

    #[test]
    fn key_files_must_hold_64_hex_digits() {
        check_bad_key("");
        check_bad_key(&KEY[..62]);
        check_bad_key(&format!("{KEY}00"));
        check_bad_key(&KEY.replace('0', "g"));
        assert!(StoreKey::from_hex(&KEY.to_uppercase()).is_ok());
    }

    #[test]
    fn debug_hides_the_key() {
        let key = StoreKey::from_hex(KEY).unwrap();
        assert_eq!(format!("{key:?}"), "StoreKey(<redacted>)");
    }
}
