//! EC2 Instance Connect's signer: what makes the keys of `managed-ssh-keys/active-keys/USER`
//! trustworthy to the on-instance scripts (docs/behaviour.md, "EC2 Instance Connect").
//!
//! On EC2 each key block carries an RSA-PSS signature (SHA-256, salt length 32) by a signer whose
//! certificate (CN and DNS name `managed-ssh-signer.REGION.DOMAIN`) and chain are at
//! `managed-ssh-keys/signer-cert`, with an OCSP response for each certificate of the chain at
//! `managed-ssh-keys/signer-ocsp/SHA1-FINGERPRINT` (base64 DER; uppercase hex without colons).
//! AWS's `eic_parse_authorized_keys` checks them with `openssl verify -x509_strict`, `openssl
//! ocsp` and `openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32`;
//! commiterate/amazon-ec2-ssh-utils with Go's `x509.Certificate.Verify` (the DNS name, system
//! roots), `ocsp.ParseResponse` and `x509.SHA256WithRSAPSS`.
//!
//! imds keeps, per server, a CA (RSA 2048, self-signed) and a signer key (RSA 2048) in its state
//! directory; `imds identity instance-connect-ca` prints the CA for a guest to trust. From them
//! it makes, per region and domain, the signer's certificate and the OCSP responses ("good") of
//! the signer certificate and of the CA, each signed by the CA, valid for
//! [`OCSP_VALIDITY_DAYS`] and made anew after [`REFRESH_HOURS`].
//!
//! OpenSSL (the `openssl` crate) makes the keys, the certificates and the signatures: the AWS
//! script checks them with the same library. Its safe API builds no OCSP response, so those are
//! RustCrypto's `x509-ocsp` builder's, signed through OpenSSL with the CA's key.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use der::{asn1::BitString, Decode, Encode};
use openssl::{
    asn1::Asn1Time,
    bn::{BigNum, MsbOption},
    hash::MessageDigest,
    pkey::{Id, PKey, Private},
    rsa::{Padding, Rsa},
    sign::{RsaPssSaltlen, Signer},
    x509::{
        extension::{
            AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectAlternativeName,
            SubjectKeyIdentifier,
        },
        X509Builder, X509NameBuilder, X509,
    },
};
use thiserror::Error;
use time::OffsetDateTime;
use x509_ocsp::{builder::OcspResponseBuilder, CertId, CertStatus, OcspGeneralizedTime};

/// RSA modulus size of the CA and of the signer.
const KEY_BITS: u32 = 2048;
/// Validity of the CA certificate.
const CA_DAYS: u32 = 3650;
/// Validity of a signer certificate.
const SIGNER_DAYS: u32 = 365;
/// How long an OCSP response is good for (its `nextUpdate` after its `thisUpdate`).
pub const OCSP_VALIDITY_DAYS: i64 = 7;
/// After how long a region's certificate and OCSP responses are made anew.
pub const REFRESH_HOURS: i64 = 24;
/// The PSS salt length the on-instance scripts verify with (`rsa_pss_saltlen:32`).
const PSS_SALT_LENGTH: i32 = 32;

/// The CA's subject CN.
pub const CA_NAME: &str = "imds EC2 Instance Connect CA";

/// The signer could not be made, read or used.
#[derive(Debug, Error)]
pub enum InstanceConnectError {
    /// OpenSSL failed: a key or certificate that does not parse, or a failed operation.
    #[error("EC2 Instance Connect signing failed: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// A certificate did not decode for the OCSP response, or the response did not encode.
    #[error("EC2 Instance Connect OCSP response: {0}")]
    Der(#[from] der::Error),
    /// The OCSP response could not be built.
    #[error("EC2 Instance Connect OCSP response: {0}")]
    Ocsp(String),
    /// A key is not RSA, or the CA key is not the CA certificate's.
    #[error("the EC2 Instance Connect CA key is not the RSA key of its certificate, or the signer key is not RSA")]
    NotItsKey,
    /// The region or domain cannot name a certificate.
    #[error("{0:?} cannot be part of the signer's name")]
    BadName(String),
}

/// What `managed-ssh-keys/` serves besides the keys, for one region and domain.
#[derive(Debug)]
pub struct SignerChain {
    /// `signer-cert`: the signer's certificate, then the CA's (PEM).
    pub certificates: Bytes,
    /// `signer-ocsp/FINGERPRINT`: for each certificate of `certificates`, its SHA-1 fingerprint
    /// (uppercase hex) and its OCSP response (base64 of the DER).
    pub staples: Vec<(String, Bytes)>,
    /// When this chain is made anew.
    pub refresh_at: OffsetDateTime,
}

/// A server's EC2 Instance Connect CA and signer key, and the chains made from them.
pub struct InstanceConnectSigner {
    ca_key: PKey<Private>,
    ca_certificate: X509,
    signer_key: PKey<Private>,
    /// The chain of each (region, domain) asked for, made on first use.
    chains: Mutex<HashMap<(String, String), Arc<SignerChain>>>,
}

impl fmt::Debug for InstanceConnectSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceConnectSigner")
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn random_serial() -> Result<openssl::asn1::Asn1Integer, openssl::error::ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    serial.to_asn1_integer()
}

impl InstanceConnectSigner {
    /// A new CA (self-signed certificate, [`CA_NAME`]) and signer key.
    pub fn generate() -> Result<InstanceConnectSigner, InstanceConnectError> {
        let ca_key = PKey::from_rsa(Rsa::generate(KEY_BITS)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("O", "imds")?;
        name.append_entry_by_text("CN", CA_NAME)?;
        let name = name.build();
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial = random_serial()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&ca_key)?;
        builder.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
        builder.set_not_after(Asn1Time::days_from_now(CA_DAYS)?.as_ref())?;
        builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        builder.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .digital_signature()
                .build()?,
        )?;
        let identifier = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
        builder.append_extension(identifier)?;
        builder.sign(&ca_key, MessageDigest::sha256())?;
        Ok(InstanceConnectSigner {
            ca_key,
            ca_certificate: builder.build(),
            signer_key: PKey::from_rsa(Rsa::generate(KEY_BITS)?)?,
            chains: Mutex::default(),
        })
    }

    /// Loads the CA key and certificate and the signer key (PEM); refuses keys that are not RSA
    /// and a CA key that is not its certificate's. Encrypted keys are refused (no passphrase is
    /// asked for).
    pub fn from_pem(
        ca_key_pem: &[u8],
        ca_certificate_pem: &[u8],
        signer_key_pem: &[u8],
    ) -> Result<InstanceConnectSigner, InstanceConnectError> {
        let ca_key = PKey::private_key_from_pem_callback(ca_key_pem, |_| Ok(0))?;
        let ca_certificate = X509::from_pem(ca_certificate_pem)?;
        let signer_key = PKey::private_key_from_pem_callback(signer_key_pem, |_| Ok(0))?;
        if ca_key.id() != Id::RSA
            || signer_key.id() != Id::RSA
            || !ca_certificate.public_key()?.public_eq(&ca_key)
        {
            return Err(InstanceConnectError::NotItsKey);
        }
        Ok(InstanceConnectSigner {
            ca_key,
            ca_certificate,
            signer_key,
            chains: Mutex::default(),
        })
    }

    /// The CA key as PKCS#8 PEM, for the state directory only.
    pub fn ca_key_pem(&self) -> Result<Vec<u8>, InstanceConnectError> {
        Ok(self.ca_key.private_key_to_pem_pkcs8()?)
    }

    /// The signer key as PKCS#8 PEM, for the state directory only.
    pub fn signer_key_pem(&self) -> Result<Vec<u8>, InstanceConnectError> {
        Ok(self.signer_key.private_key_to_pem_pkcs8()?)
    }

    /// The CA certificate as PEM: what a guest trusts.
    pub fn ca_certificate_pem(&self) -> Result<Vec<u8>, InstanceConnectError> {
        Ok(self.ca_certificate.to_pem()?)
    }

    /// The base64 (one line) RSA-PSS signature (SHA-256, MGF1 SHA-256, salt length 32) of
    /// `data`, as a key block carries it.
    pub fn sign(&self, data: &[u8]) -> Result<String, InstanceConnectError> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.signer_key)?;
        signer.set_rsa_padding(Padding::PKCS1_PSS)?;
        signer.set_rsa_pss_saltlen(RsaPssSaltlen::custom(PSS_SALT_LENGTH))?;
        signer.set_rsa_mgf1_md(MessageDigest::sha256())?;
        signer.update(data)?;
        Ok(STANDARD.encode(signer.sign_to_vec()?))
    }

    /// The chain served for instances of `region` and `domain` at `now`: the one made before
    /// unless it is due to be made anew.
    pub fn chain(
        &self,
        region: &str,
        domain: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<SignerChain>, InstanceConnectError> {
        let key = (region.to_owned(), domain.to_owned());
        let mut chains = self
            .chains
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(chain) = chains.get(&key).filter(|chain| now < chain.refresh_at) {
            return Ok(chain.clone());
        }
        let chain = Arc::new(self.make_chain(region, domain, now)?);
        chains.insert(key, chain.clone());
        Ok(chain)
    }

    fn make_chain(
        &self,
        region: &str,
        domain: &str,
        now: OffsetDateTime,
    ) -> Result<SignerChain, InstanceConnectError> {
        for part in [region, domain] {
            let label = |label: &str| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            };
            if !part.split('.').all(label) {
                return Err(InstanceConnectError::BadName(part.to_owned()));
            }
        }
        let signer_name = format!("managed-ssh-signer.{region}.{domain}");
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", &signer_name)?;
        let name = name.build();
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial = random_serial()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(self.ca_certificate.subject_name())?;
        builder.set_pubkey(&self.signer_key)?;
        let not_before = Asn1Time::from_unix(now.unix_timestamp() - 3600)?;
        let not_after =
            Asn1Time::from_unix(now.unix_timestamp() + i64::from(SIGNER_DAYS) * 86_400)?;
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.append_extension(BasicConstraints::new().critical().build()?)?;
        builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        let context = builder.x509v3_context(Some(&self.ca_certificate), None);
        let alternative = SubjectAlternativeName::new()
            .dns(&signer_name)
            .build(&context)?;
        let identifier = SubjectKeyIdentifier::new().build(&context)?;
        let authority = AuthorityKeyIdentifier::new().keyid(true).build(&context)?;
        builder.append_extension(alternative)?;
        builder.append_extension(identifier)?;
        builder.append_extension(authority)?;
        builder.sign(&self.ca_key, MessageDigest::sha256())?;
        let signer_certificate = builder.build();

        let mut certificates = signer_certificate.to_pem()?;
        certificates.extend_from_slice(&self.ca_certificate.to_pem()?);
        let staples = [&signer_certificate, &self.ca_certificate]
            .into_iter()
            .map(|certificate| {
                let fingerprint = certificate
                    .digest(MessageDigest::sha1())?
                    .iter()
                    .map(|byte| format!("{byte:02X}"))
                    .collect::<String>();
                let response = self.ocsp_response(certificate, now)?;
                Ok((fingerprint, Bytes::from(STANDARD.encode(response))))
            })
            .collect::<Result<Vec<_>, InstanceConnectError>>()?;
        Ok(SignerChain {
            certificates: Bytes::from(certificates),
            staples,
            refresh_at: now + time::Duration::hours(REFRESH_HOURS),
        })
    }

    /// The DER of a successful OCSP response saying `certificate` (issued by the CA, or the CA
    /// itself) is good from `now` for [`OCSP_VALIDITY_DAYS`], signed by the CA, which it names
    /// as its responder and carries.
    fn ocsp_response(
        &self,
        certificate: &X509,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, InstanceConnectError> {
        let issuer = x509_cert::Certificate::from_der(&self.ca_certificate.to_der()?)?;
        let subject = x509_cert::Certificate::from_der(&certificate.to_der()?)?;
        let cert_id = CertId::from_cert::<sha1::Sha1>(&issuer, &subject)
            .map_err(|error| InstanceConnectError::Ocsp(error.to_string()))?;
        let at = |when: OffsetDateTime| -> Result<OcspGeneralizedTime, der::Error> {
            let seconds = u64::try_from(when.unix_timestamp()).unwrap_or(0);
            Ok(OcspGeneralizedTime::from(
                der::DateTime::from_unix_duration(std::time::Duration::from_secs(seconds))?,
            ))
        };
        let single = x509_ocsp::SingleResponse::new(cert_id, CertStatus::good(), at(now)?)
            .with_next_update(at(now + time::Duration::days(OCSP_VALIDITY_DAYS))?);
        let mut signer = CaSigner(&self.ca_key);
        let response = OcspResponseBuilder::new(issuer.tbs_certificate.subject.clone())
            .with_single_response(single)
            .sign(&mut signer, Some(vec![issuer]), at(now)?)
            .map_err(|error| InstanceConnectError::Ocsp(error.to_string()))?;
        Ok(response.to_der()?)
    }
}

/// The CA's key as the OCSP builder signs with it: `sha256WithRSAEncryption` through OpenSSL.
struct CaSigner<'a>(&'a PKey<Private>);

/// An RSA PKCS#1 v1.5 signature's bytes.
struct RsaSignature(Vec<u8>);

impl spki::SignatureBitStringEncoding for RsaSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

impl signature::Signer<RsaSignature> for CaSigner<'_> {
    fn try_sign(&self, message: &[u8]) -> Result<RsaSignature, signature::Error> {
        let sign = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
            let mut signer = Signer::new(MessageDigest::sha256(), self.0)?;
            signer.set_rsa_padding(Padding::PKCS1)?;
            signer.update(message)?;
            signer.sign_to_vec()
        };
        sign()
            .map(RsaSignature)
            .map_err(signature::Error::from_source)
    }
}

impl spki::DynSignatureAlgorithmIdentifier for CaSigner<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<spki::AlgorithmIdentifierOwned> {
        // RFC 4055 §5: sha256WithRSAEncryption, NULL parameters.
        Ok(spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_and_mismatches_are_refused() {
        let signer = InstanceConnectSigner::generate().unwrap();
        let loaded = InstanceConnectSigner::from_pem(
            &signer.ca_key_pem().unwrap(),
            &signer.ca_certificate_pem().unwrap(),
            &signer.signer_key_pem().unwrap(),
        )
        .unwrap();
        assert_eq!(
            loaded.ca_certificate_pem().unwrap(),
            signer.ca_certificate_pem().unwrap()
        );
        let other = InstanceConnectSigner::generate().unwrap();
        let mismatched = InstanceConnectSigner::from_pem(
            &other.ca_key_pem().unwrap(),
            &signer.ca_certificate_pem().unwrap(),
            &signer.signer_key_pem().unwrap(),
        );
        assert!(matches!(mismatched, Err(InstanceConnectError::NotItsKey)));
        assert!(format!("{signer:?}").contains("redacted"));
    }

    #[test]
    fn chains_are_kept_until_due_and_name_the_region() {
        let signer = InstanceConnectSigner::generate().unwrap();
        let now = time::macros::datetime!(2026-03-01 10:00 UTC);
        let chain = signer.chain("eu-west-1", "amazonaws.com", now).unwrap();
        let again = signer
            .chain("eu-west-1", "amazonaws.com", now + time::Duration::hours(1))
            .unwrap();
        assert!(Arc::ptr_eq(&chain, &again));
        let renewed = signer
            .chain(
                "eu-west-1",
                "amazonaws.com",
                now + time::Duration::hours(REFRESH_HOURS),
            )
            .unwrap();
        assert!(!Arc::ptr_eq(&chain, &renewed));
        let certificates = X509::stack_from_pem(&chain.certificates).unwrap();
        assert_eq!(certificates.len(), 2);
        let subject = certificates[0].subject_name().entries().next().unwrap();
        let subject = String::from_utf8(subject.data().as_slice().to_vec()).unwrap();
        assert_eq!(subject, "managed-ssh-signer.eu-west-1.amazonaws.com");
        assert_eq!(chain.staples.len(), 2);
        for (fingerprint, staple) in &chain.staples {
            assert_eq!(fingerprint.len(), 40);
            assert!(fingerprint
                .bytes()
                .all(|byte| byte.is_ascii_digit() || byte.is_ascii_uppercase()));
            let der = STANDARD.decode(staple).unwrap();
            let response = x509_ocsp::OcspResponse::from_der(&der).unwrap();
            assert_eq!(
                response.response_status,
                x509_ocsp::OcspResponseStatus::Successful
            );
        }
        assert!(matches!(
            signer.chain("eu west", "amazonaws.com", now),
            Err(InstanceConnectError::BadName(_))
        ));
    }
}
