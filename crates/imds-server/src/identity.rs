//! The instance identity document and its signatures.
//!
//! `signature` is an RSA-SHA256 signature over the document's exact bytes; `pkcs7` and
//! `rsa2048` are PKCS#7 SignedData structures holding the same bytes (EC2 User Guide,
//! "Verify the instance identity document"). All three are made with one RSA-2048 key from the
//! state directory, whose self-signed certificate `imds identity certificate` prints, so that the
//! `openssl` commands AWS documents verify them.
//!
//! OpenSSL (through the `openssl` crate) builds the certificate and the PKCS#7 structures: it is
//! the implementation those documented commands use, so what it signs, they verify.

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use openssl::{
    asn1::Asn1Time,
    bn::BigNum,
    hash::MessageDigest,
    pkcs7::{Pkcs7, Pkcs7Flags},
    pkey::{Id, PKey, Private},
    rsa::Rsa,
    sign::Signer,
    stack::Stack,
    x509::{extension::BasicConstraints, X509Builder, X509NameBuilder, X509},
};
use thiserror::Error;

/// RSA modulus size: `rsa2048` names it.
const KEY_BITS: u32 = 2048;
/// Validity of the self-signed certificate.
const CERTIFICATE_DAYS: u32 = 3650;

/// The identity key or certificate could not be made, read or used.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// OpenSSL failed: a key or certificate that does not parse, or a failed operation.
    #[error("instance identity signing failed: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// The key is not an RSA key, or not the key the certificate is for: nothing could be
    /// signed with the pair.
    #[error("the identity key is not the RSA key of the identity certificate")]
    NotItsKey,
}

/// The key that signs identity documents, and its certificate.
pub struct IdentitySigner {
    key: PKey<Private>,
    certificate: X509,
}

impl fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The signatures of one identity document, as IMDS serves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// `signature`: base64 of the RSA-SHA256 signature.
    pub signature: Bytes,
    /// `pkcs7`: PEM body (base64 lines, no armour) of a PKCS#7 SignedData holding the document.
    pub pkcs7: Bytes,
    /// `rsa2048`: the same, from the RSA-2048 key (the same bytes, shared).
    pub rsa2048: Bytes,
}

impl IdentitySigner {
    /// Makes a new key and a self-signed certificate for it.
    pub fn generate() -> Result<IdentitySigner, IdentityError> {
        let key = PKey::from_rsa(Rsa::generate(KEY_BITS)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("O", "imds")?;
        name.append_entry_by_text("CN", "imds instance identity")?;
        let name = name.build();
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial = {
            let mut serial = BigNum::new()?;
            serial.rand(63, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
            serial.to_asn1_integer()?
        };
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        builder.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
        builder.set_not_after(Asn1Time::days_from_now(CERTIFICATE_DAYS)?.as_ref())?;
        builder.append_extension(BasicConstraints::new().critical().build()?)?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(IdentitySigner {
            key,
            certificate: builder.build(),
        })
    }

    /// Loads a key (PKCS#8 PEM) and its certificate (PEM); refuses a pair that cannot sign: a
    /// key that is not RSA (`signature` is RSA-SHA256) or not the certificate's (PKCS#7 signing
    /// needs the certificate's own key), so that it is refused at start-up rather than leaving
    /// every identity document unsigned. An encrypted key is refused too: no passphrase is
    /// asked for (OpenSSL's default would prompt on the terminal and wait).
    pub fn from_pem(
        key_pem: &[u8],
        certificate_pem: &[u8],
    ) -> Result<IdentitySigner, IdentityError> {
        let key = PKey::private_key_from_pem_callback(key_pem, |_| Ok(0))?;
        let certificate = X509::from_pem(certificate_pem)?;
        if key.id() != Id::RSA || !certificate.public_key()?.public_eq(&key) {
            return Err(IdentityError::NotItsKey);
        }
        Ok(IdentitySigner { key, certificate })
    }

    /// The private key as PKCS#8 PEM, for the state directory only.
    pub fn key_pem(&self) -> Result<Vec<u8>, IdentityError> {
        Ok(self.key.private_key_to_pem_pkcs8()?)
    }

    /// The certificate as PEM: what `imds identity certificate` prints.
    pub fn certificate_pem(&self) -> Result<Vec<u8>, IdentityError> {
        Ok(self.certificate.to_pem()?)
    }

    /// Signs `document` in the three ways IMDS publishes.
    pub fn sign(&self, document: &[u8]) -> Result<Signatures, IdentityError> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        signer.update(document)?;
        let signature = Bytes::from(wrap_base64(&STANDARD.encode(signer.sign_to_vec()?)));
        let pkcs7 = Bytes::from(self.pkcs7(document)?);
        Ok(Signatures {
            signature,
            rsa2048: pkcs7.clone(),
            pkcs7,
        })
    }

    fn pkcs7(&self, document: &[u8]) -> Result<String, IdentityError> {
        let no_extra_certificates = Stack::new()?;
        // The document is embedded, as AWS documents `openssl smime -verify ... | tee document`.
        // BINARY: sign the document's bytes as they are, with no MIME line-ending
        // canonicalisation, so verifiers that hash the raw document agree.
        let flags = Pkcs7Flags::BINARY | Pkcs7Flags::NOCERTS;
        let signed = Pkcs7::sign(
            &self.certificate,
            &self.key,
            &no_extra_certificates,
            document,
            flags,
        )?;
        let pem = String::from_utf8(signed.to_pem()?).expect("PEM is ASCII");
        Ok(pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// Breaks base64 into 64-character lines, as PEM bodies are.
fn wrap_base64(text: &str) -> String {
    text.as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use openssl::sign::Verifier;

    use super::*;

    #[test]
    fn signatures_verify_with_the_certificate() {
        let signer = IdentitySigner::generate().unwrap();
        let document = b"{\n  \"instanceId\" : \"i-1\"\n}";
        let signatures = signer.sign(document).unwrap();

        let signature_text = String::from_utf8(signatures.signature.to_vec()).unwrap();
        let raw = STANDARD.decode(signature_text.replace('\n', "")).unwrap();
        let public_key = signer.certificate.public_key().unwrap();
        let mut verifier = Verifier::new(MessageDigest::sha256(), &public_key).unwrap();
        verifier.update(document).unwrap();
        assert!(verifier.verify(&raw).unwrap());

        let pem = format!(
            "-----BEGIN PKCS7-----\n{}\n-----END PKCS7-----\n",
            String::from_utf8_lossy(&signatures.pkcs7)
        );
        let parsed = Pkcs7::from_pem(pem.as_bytes()).unwrap();
        let mut certificates = Stack::new().unwrap();
        certificates.push(signer.certificate.clone()).unwrap();
        let store = openssl::x509::store::X509StoreBuilder::new()
            .unwrap()
            .build();
        parsed
            .verify(
                &certificates,
                &store,
                Some(document),
                None,
                Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY,
            )
            .unwrap();
        let tampered = b"{\n  \"instanceId\" : \"i-2\"\n}";
        assert!(parsed
            .verify(
                &certificates,
                &store,
                Some(tampered),
                None,
                Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY
            )
            .is_err());
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let signer = IdentitySigner::generate().unwrap();
        let loaded = IdentitySigner::from_pem(
            &signer.key_pem().unwrap(),
            &signer.certificate_pem().unwrap(),
        )
        .unwrap();
        let document = b"{}";
        assert_eq!(
            signer.sign(document).unwrap().signature,
            loaded.sign(document).unwrap().signature
        );
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    /// A key that is not the certificate's, and Ed25519 and EC pairs (`testdata/identity`, each a
    /// key and its certificate separated by a NUL byte): such pairs used to load, and then no
    /// document could be signed.
    #[test]
    fn a_pair_that_cannot_sign_is_refused_when_loaded() {
        let [first, second] = [(); 2].map(|()| IdentitySigner::generate().unwrap());
        let mismatched = IdentitySigner::from_pem(
            &first.key_pem().unwrap(),
            &second.certificate_pem().unwrap(),
        );
        assert!(
            matches!(mismatched, Err(IdentityError::NotItsKey)),
            "{mismatched:?}"
        );
        for pair in [
            &include_bytes!("../testdata/identity/ed25519-pair")[..],
            &include_bytes!("../testdata/identity/ec-pair")[..],
        ] {
            let split = pair.iter().position(|&byte| byte == 0).unwrap();
            let loaded = IdentitySigner::from_pem(&pair[..split], &pair[split + 1..]);
            assert!(
                matches!(loaded, Err(IdentityError::NotItsKey)),
                "{loaded:?}"
            );
        }
    }

    /// An encrypted key (`testdata/identity/encrypted-key`: PKCS#8, AES-256-CBC) is
    /// refused at once, without a passphrase prompt; the same key unencrypted, with the same
    /// certificate, loads and signs (`rsa-1024-pair`).
    #[test]
    fn an_encrypted_key_is_refused_without_asking_for_a_passphrase() {
        let split = |pair: &'static [u8]| {
            let at = pair.iter().position(|&byte| byte == 0).unwrap();
            (&pair[..at], &pair[at + 1..])
        };
        let (key, certificate) = split(include_bytes!("../testdata/identity/encrypted-key"));
        assert!(key.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let loaded = IdentitySigner::from_pem(key, certificate);
        assert!(
            matches!(loaded, Err(IdentityError::OpenSsl(_))),
            "{loaded:?}"
        );
        let (key, certificate) = split(include_bytes!("../testdata/identity/rsa-1024-pair"));
        IdentitySigner::from_pem(key, certificate)
            .unwrap()
            .sign(b"{}")
            .unwrap();
    }
}
