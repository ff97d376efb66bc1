//! The Kubernetes service-account tokens the EKS Pod Identity endpoint accepts.
//!
//! The EKS Pod Identity Agent (`aws/eks-pod-identity-agent`, `pkg/handlers/eks_credential_handler.go`,
//! `internal/validation/request.go`) checks only what it can without keys, in this order: the
//! token is not empty; it parses as a JWT (`jwt.ParseUnverified` of `golang-jwt/jwt/v5`); `exp`
//! is not past and `nbf` not ahead (`jwt.NewValidator().Validate`, no leeway, both optional).
//! Everything else is EKS Auth's (`AssumeRoleForPodIdentity`): the signature, the audience and
//! the association. imds does both halves: `check` runs the agent's checks with the agent's
//! texts, then verifies the signature against the configured keys (`jsonwebtoken`, RS256 or
//! ES256), requires the audience `pods.eks.amazonaws.com` and a `sub` of
//! `system:serviceaccount:NAMESPACE:NAME` (the claims of a Kubernetes bound token,
//! `pkg/serviceaccount/claims.go`).
//!
//! Keys are a JWKS (the cluster issuer's `/openid/v1/jwks`; a token naming a `kid` is tried
//! only with the key of that id) or one PEM key, public or private, RSA or P-256 (tried whatever
//! `kid` the token names). Minted tokens name their key as Kubernetes names its signing keys: the
//! unpadded base64url SHA-256 of the public key's DER (`SubjectPublicKeyInfo`).

use std::{collections::HashSet, fmt};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use openssl::{
    bn::BigNumContext,
    ec::EcGroup,
    nid::Nid,
    pkey::{Id, PKey, Private, Public},
};
use serde::{Deserialize, Serialize};

/// The audience EKS Pod Identity tokens are for.
pub const AUDIENCE: &str = "pods.eks.amazonaws.com";

/// Seconds a minted token is valid unless told otherwise: a day, as EKS projects them.
pub const DEFAULT_LIFETIME: u32 = 86_400;

/// The longest lifetime the control API mints a token with: a year.
pub const LONGEST_LIFETIME: u32 = 31_536_000;

/// The issuer of the tokens imds mints unless one is given.
pub const DEFAULT_ISSUER: &str = "https://imds.invalid/pod-identity";

/// The keys service-account tokens are verified with.
#[derive(Clone)]
pub struct TokenKeys {
    keys: Vec<VerifyingKey>,
}

#[derive(Clone)]
struct VerifyingKey {
    /// The key id; a token naming another is not tried with this key.
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|key| (key.kid.as_deref(), key.algorithm)),
            )
            .finish()
    }
}

/// Why keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The JWKS is not JSON of the JWK Set form.
    #[error("not a JWK Set: {0}")]
    Jwks(#[from] serde_json::Error),
    /// A JWK this endpoint cannot verify with.
    #[error("key {index} of the JWK Set: {reason}")]
    UnusableJwk {
        /// Its place in `keys`.
        index: usize,
        /// Why.
        reason: String,
    },
    /// No usable key.
    #[error("no RSA or P-256 key")]
    NoKeys,
    /// The PEM holds no key this endpoint can use.
    #[error("not a PEM RSA or P-256 key: {0}")]
    Pem(String),
}

impl TokenKeys {
    /// The signing keys of a JWK Set (`{"keys": [...]}`): RSA keys (RS256) and P-256 keys
    /// (ES256).
    pub fn from_jwks(json: &[u8]) -> Result<TokenKeys, KeyError> {
        let set: JwkSet = serde_json::from_slice(json)?;
        let mut keys = Vec::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            let unusable = |reason: &str| KeyError::UnusableJwk {
                index,
                reason: reason.to_owned(),
            };
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => return Err(unusable("only RSA and P-256 keys are supported")),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|error| unusable(&error.to_string()))?;
            keys.push(VerifyingKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(TokenKeys { keys })
    }

    /// One PEM key: a public key (`BEGIN PUBLIC KEY`) or a private key (its public half).
    pub fn from_pem(pem: &[u8]) -> Result<TokenKeys, KeyError> {
        let public = match PKey::public_key_from_pem(pem) {
            Ok(public) => public,
            Err(_) => {
                let private = PKey::private_key_from_pem(pem)
                    .map_err(|_| KeyError::Pem("no PEM public or private key".to_owned()))?;
                public_of(&private)?
            }
        };
        let (algorithm, key) = decoding_key(&public)?;
        // A PEM file names no key id: tokens naming any id are tried with it.
        Ok(TokenKeys {
            keys: vec![VerifyingKey {
                kid: None,
                algorithm,
                key,
            }],
        })
    }
}

fn public_of(private: &PKey<Private>) -> Result<PKey<Public>, KeyError> {
    let der = private
        .public_key_to_der()
        .map_err(|error| KeyError::Pem(error.to_string()))?;
    PKey::public_key_from_der(&der).map_err(|error| KeyError::Pem(error.to_string()))
}

fn decoding_key(public: &PKey<Public>) -> Result<(Algorithm, DecodingKey), KeyError> {
    let pem_error = |error: openssl::error::ErrorStack| KeyError::Pem(error.to_string());
    match public.id() {
        Id::RSA => {
            let rsa = public.rsa().map_err(pem_error)?;
            Ok((
                Algorithm::RS256,
                DecodingKey::from_rsa_raw_components(&rsa.n().to_vec(), &rsa.e().to_vec()),
            ))
        }
        Id::EC => {
            let ec = public.ec_key().map_err(pem_error)?;
            if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
                return Err(KeyError::Pem(
                    "only the P-256 curve is supported".to_owned(),
                ));
            }
            let (x, y) = affine(&ec).map_err(pem_error)?;
            let key = DecodingKey::from_ec_components(
                &URL_SAFE_NO_PAD.encode(x),
                &URL_SAFE_NO_PAD.encode(y),
            )
            .map_err(|error| KeyError::Pem(error.to_string()))?;
            Ok((Algorithm::ES256, key))
        }
        _ => Err(KeyError::Pem(
            "only RSA and P-256 keys are supported".to_owned(),
        )),
    }
}

/// A P-256 public point's coordinates, 32 bytes each.
fn affine(
    ec: &openssl::ec::EcKey<Public>,
) -> Result<([u8; 32], [u8; 32]), openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let mut context = BigNumContext::new()?;
    let mut x = openssl::bn::BigNum::new()?;
    let mut y = openssl::bn::BigNum::new()?;
    ec.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut context)?;
    let pad = |number: &openssl::bn::BigNum| -> Result<[u8; 32], openssl::error::ErrorStack> {
        let bytes = number.to_vec_padded(32)?;
        let mut out = [0; 32];
        out.copy_from_slice(&bytes);
        Ok(out)
    };
    Ok((pad(&x)?, pad(&y)?))
}

/// Kubernetes' id of a signing key: unpadded base64url of the SHA-256 of its public DER.
fn key_id(public: &PKey<Public>) -> Result<String, KeyError> {
    let der = public
        .public_key_to_der()
        .map_err(|error| KeyError::Pem(error.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(openssl::sha::sha256(&der)))
}

/// Whom a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The namespace.
    pub namespace: String,
    /// The service account's name.
    pub name: String,
}

/// Why a token is refused, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No token (the agent: `400`, "Service account token cannot be empty").
    Empty,
    /// Not a JWT (the agent: `400`, "Service account token cannot be parsed: ..."); the text is
    /// `golang-jwt`'s.
    Malformed(String),
    /// `exp` past or `nbf` ahead (the agent: `400`, "Service account token failed basic claim
    /// validations: ...").
    Claims(String),
    /// What EKS Auth refuses (`InvalidTokenException`): the reason is for the log only.
    Invalid(&'static str),
}

/// The registered claims `golang-jwt` reads, and what Kubernetes adds that this endpoint uses.
#[derive(Debug, Deserialize)]
struct UnverifiedClaims {
    exp: Option<f64>,
    nbf: Option<f64>,
    #[allow(dead_code)] // Read to refuse non-numeric values as golang-jwt does.
    iat: Option<f64>,
    #[allow(dead_code)] // Read to refuse a non-string value as golang-jwt does.
    sub: Option<String>,
    #[allow(dead_code)] // Read to refuse a non-string value as golang-jwt does.
    iss: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JoseHeader {
    /// Any JSON: golang-jwt calls a non-string `alg` unspecified.
    alg: Option<serde_json::Value>,
}

/// What `golang-jwt` knows how to verify; another `alg` is "unverifiable".
const KNOWN_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256",
    "PS384", "PS512", "EdDSA", "none",
];

/// Checks `token` at `now` (seconds since the epoch): the agent's checks, then EKS Auth's.
pub fn check(keys: &TokenKeys, token: &str, now: f64) -> Result<ServiceAccount, Rejection> {
    if token.is_empty() {
        return Err(Rejection::Empty);
    }
    let claims = parse_unverified(token)?;
    let mut failed = Vec::new();
    if claims.exp.is_some_and(|exp| now >= exp) {
        failed.push("token is expired");
    }
    if claims.nbf.is_some_and(|nbf| now < nbf) {
        failed.push("token is not valid yet");
    }
    if !failed.is_empty() {
        return Err(Rejection::Claims(failed.join(", ")));
    }
    verify(keys, token)
}

fn malformed(detail: impl fmt::Display) -> Rejection {
    Rejection::Malformed(format!("token is malformed: {detail}"))
}

/// `jwt.ParseUnverified` into `RegisteredClaims`, with its error texts.
fn parse_unverified(token: &str) -> Result<UnverifiedClaims, Rejection> {
    let segments: Vec<&str> = token.split('.').collect();
    let [header, claims, _signature] = segments[..] else {
        return Err(malformed("token contains an invalid number of segments"));
    };
    let header = decode_segment(header)
        .map_err(|detail| malformed(format!("could not base64 decode header: {detail}")))?;
    let header: JoseHeader = serde_json::from_slice(&header)
        .map_err(|error| malformed(format!("could not JSON decode header: {error}")))?;
    let claims = decode_segment(claims)
        .map_err(|detail| malformed(format!("could not base64 decode claim: {detail}")))?;
    let claims: UnverifiedClaims = serde_json::from_slice(&claims)
        .map_err(|error| malformed(format!("could not JSON decode claim: {error}")))?;
    match header.alg.as_ref().and_then(serde_json::Value::as_str) {
        Some(alg) if KNOWN_ALGORITHMS.contains(&alg) => Ok(claims),
        Some(_) => Err(Rejection::Malformed(
            "token is unverifiable: signing method (alg) is unavailable".to_owned(),
        )),
        None => Err(Rejection::Malformed(
            "token is unverifiable: signing method (alg) is unspecified".to_owned(),
        )),
    }
}

/// Unpadded base64url, as `golang-jwt` decodes segments; errors as Go's `encoding/base64`.
fn decode_segment(segment: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|error| {
        let offset = match error {
            base64::DecodeError::InvalidByte(offset, _)
            | base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
            base64::DecodeError::InvalidLength(length) => length,
            base64::DecodeError::InvalidPadding => segment.len(),
        };
        format!("illegal base64 data at input byte {offset}")
    })
}

/// The claims checked once the signature is.
#[derive(Debug, Deserialize)]
struct VerifiedClaims {
    sub: Option<String>,
}

/// EKS Auth's half: the signature, the audience, the subject.
fn verify(keys: &TokenKeys, token: &str) -> Result<ServiceAccount, Rejection> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid("unreadable header"))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(Rejection::Invalid("algorithm is neither RS256 nor ES256"));
    }
    let mut reason = "no configured key has the token's kid";
    for key in &keys.keys {
        if key.algorithm != header.alg {
            reason = "no configured key is for the token's algorithm";
            continue;
        }
        if let (Some(wanted), Some(kid)) = (&header.kid, &key.kid) {
            if wanted != kid {
                continue;
            }
        }
        let mut validation = Validation::new(key.algorithm);
        validation.required_spec_claims = HashSet::from(["aud".to_owned()]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_audience(&[AUDIENCE]);
        match jsonwebtoken::decode::<VerifiedClaims>(token, &key.key, &validation) {
            Ok(data) => return subject(data.claims.sub.as_deref()),
            Err(error) => {
                reason = match error.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "signature does not verify"
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAudience
                    | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                        return Err(Rejection::Invalid("audience is not pods.eks.amazonaws.com"))
                    }
                    _ => "signature does not verify",
                };
            }
        }
    }
    Err(Rejection::Invalid(reason))
}

/// `system:serviceaccount:NAMESPACE:NAME`.
fn subject(sub: Option<&str>) -> Result<ServiceAccount, Rejection> {
    let not_a_service_account = Rejection::Invalid("sub is not system:serviceaccount:NS:NAME");
    let rest = sub
        .and_then(|sub| sub.strip_prefix("system:serviceaccount:"))
        .ok_or_else(|| not_a_service_account.clone())?;
    match rest.split_once(':') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains(':') =>
        {
            Ok(ServiceAccount {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => Err(not_a_service_account),
    }
}

/// A key that signs service-account tokens, RS256 or ES256.
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    public: PKey<Public>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The claims of a minted token, as the Kubernetes API server writes them for a projected
/// volume.
#[derive(Debug, Serialize)]
struct MintedClaims<'a> {
    aud: [&'a str; 1],
    exp: i64,
    iat: i64,
    iss: &'a str,
    #[serde(rename = "kubernetes.io")]
    kubernetes: KubernetesClaims<'a>,
    nbf: i64,
    sub: String,
}

#[derive(Debug, Serialize)]
struct KubernetesClaims<'a> {
    namespace: &'a str,
    serviceaccount: NamedClaim<'a>,
}

#[derive(Debug, Serialize)]
struct NamedClaim<'a> {
    name: &'a str,
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// The service account.
    pub service_account: &'a str,
    /// The audience (EKS: `pods.eks.amazonaws.com`).
    pub audience: &'a str,
    /// `iss`.
    pub issuer: &'a str,
    /// `iat` and `nbf`, seconds since the epoch.
    pub issued_at: i64,
    /// Seconds until `exp`.
    pub lifetime: i64,
}

impl SigningKey {
    /// A PEM private key, RSA (RS256) or P-256 (ES256).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        let private = PKey::private_key_from_pem(pem)
            .map_err(|_| KeyError::Pem("no PEM private key".to_owned()))?;
        let pem_error = |error: openssl::error::ErrorStack| KeyError::Pem(error.to_string());
        let (algorithm, key) = match private.id() {
            Id::RSA => {
                let der = private
                    .rsa()
                    .and_then(|rsa| rsa.private_key_to_der())
                    .map_err(pem_error)?;
                (Algorithm::RS256, EncodingKey::from_rsa_der(&der))
            }
            Id::EC => {
                let ec = private.ec_key().map_err(pem_error)?;
                if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
                    return Err(KeyError::Pem(
                        "only the P-256 curve is supported".to_owned(),
                    ));
                }
                let der = private.private_key_to_pkcs8().map_err(pem_error)?;
                (Algorithm::ES256, EncodingKey::from_ec_der(&der))
            }
            _ => {
                return Err(KeyError::Pem(
                    "only RSA and P-256 keys are supported".to_owned(),
                ))
            }
        };
        let public = public_of(&private)?;
        Ok(SigningKey {
            kid: key_id(&public)?,
            algorithm,
            key,
            public,
        })
    }

    /// A new 2048-bit RSA key, as PKCS#8 PEM.
    pub fn generate_pem() -> Result<Vec<u8>, KeyError> {
        let pem_error = |error: openssl::error::ErrorStack| KeyError::Pem(error.to_string());
        let rsa = openssl::rsa::Rsa::generate(2048).map_err(pem_error)?;
        PKey::from_rsa(rsa)
            .and_then(|key| key.private_key_to_pem_pkcs8())
            .map_err(pem_error)
    }

    /// A signed token, `HEADER.CLAIMS.SIGNATURE`, no trailing newline.
    pub fn mint(&self, request: &TokenRequest<'_>) -> Result<String, KeyError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        header.typ = None;
        let claims = MintedClaims {
            aud: [request.audience],
            exp: request.issued_at + request.lifetime,
            iat: request.issued_at,
            iss: request.issuer,
            kubernetes: KubernetesClaims {
                namespace: request.namespace,
                serviceaccount: NamedClaim {
                    name: request.service_account,
                },
            },
            nbf: request.issued_at,
            sub: format!(
                "system:serviceaccount:{}:{}",
                request.namespace, request.service_account
            ),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|error| KeyError::Pem(error.to_string()))
    }

    /// The public key as a JWK Set, as an issuer's `/openid/v1/jwks` serves it.
    pub fn jwks(&self) -> Result<serde_json::Value, KeyError> {
        let pem_error = |error: openssl::error::ErrorStack| KeyError::Pem(error.to_string());
        let key = match self.algorithm {
            Algorithm::ES256 => {
                let ec = self.public.ec_key().map_err(pem_error)?;
                let (x, y) = affine(&ec).map_err(pem_error)?;
                serde_json::json!({
                    "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                })
            }
            _ => {
                let rsa = self.public.rsa().map_err(pem_error)?;
                serde_json::json!({
                    "use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
                    "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
                })
            }
        };
        Ok(serde_json::json!({ "keys": [key] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_pem() -> Vec<u8> {
        SigningKey::generate_pem().unwrap()
    }

    fn ec_pem() -> Vec<u8> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = openssl::ec::EcKey::generate(&group).unwrap();
        PKey::from_ec_key(key)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap()
    }

    fn request(issued_at: i64) -> TokenRequest<'static> {
        TokenRequest {
            namespace: "shop",
            service_account: "cart",
            audience: AUDIENCE,
            issuer: "https://oidc.example/id/1",
            issued_at,
            lifetime: 600,
        }
    }

    fn cart() -> ServiceAccount {
        ServiceAccount {
            namespace: "shop".to_owned(),
            name: "cart".to_owned(),
        }
    }

    #[test]
    fn minted_tokens_verify_against_their_jwks_and_pem() {
        for pem in [rsa_pem(), ec_pem()] {
            let signing = SigningKey::from_pem(&pem).unwrap();
            let token = signing.mint(&request(1_000)).unwrap();
            let jwks = serde_json::to_vec(&signing.jwks().unwrap()).unwrap();
            for keys in [
                TokenKeys::from_jwks(&jwks).unwrap(),
                TokenKeys::from_pem(&pem).unwrap(),
            ] {
                assert_eq!(check(&keys, &token, 1_000.0), Ok(cart()));
                assert_eq!(
                    check(&keys, &token, 1_600.0),
                    Err(Rejection::Claims("token is expired".to_owned()))
                );
                assert_eq!(
                    check(&keys, &token, 999.5),
                    Err(Rejection::Claims("token is not valid yet".to_owned()))
                );
            }
        }
    }

    #[test]
    fn other_keys_audiences_and_subjects_are_refused() {
        let signing = SigningKey::from_pem(&rsa_pem()).unwrap();
        let token = signing.mint(&request(1_000)).unwrap();
        let other = SigningKey::from_pem(&rsa_pem()).unwrap();
        let other_jwks =
            TokenKeys::from_jwks(&serde_json::to_vec(&other.jwks().unwrap()).unwrap()).unwrap();
        assert_eq!(
            check(&other_jwks, &token, 1_000.0),
            Err(Rejection::Invalid("no configured key has the token's kid"))
        );
        // A PEM key has no id: it is tried, and the signature does not verify.
        let other_pem = TokenKeys::from_pem(&rsa_pem()).unwrap();
        assert_eq!(
            check(&other_pem, &token, 1_000.0),
            Err(Rejection::Invalid("signature does not verify"))
        );
        let keys =
            TokenKeys::from_jwks(&serde_json::to_vec(&signing.jwks().unwrap()).unwrap()).unwrap();
        let wrong_audience = signing
            .mint(&TokenRequest {
                audience: "sts.amazonaws.com",
                ..request(1_000)
            })
            .unwrap();
        assert_eq!(
            check(&keys, &wrong_audience, 1_000.0),
            Err(Rejection::Invalid("audience is not pods.eks.amazonaws.com"))
        );
        let colon = signing
            .mint(&TokenRequest {
                service_account: "a:b",
                ..request(1_000)
            })
            .unwrap();
        assert_eq!(
            check(&keys, &colon, 1_000.0),
            Err(Rejection::Invalid(
                "sub is not system:serviceaccount:NS:NAME"
            ))
        );
    }

    #[test]
    fn malformed_tokens_get_golang_jwt_texts() {
        let keys = TokenKeys::from_pem(&rsa_pem()).unwrap();
        let token = SigningKey::from_pem(&rsa_pem())
            .unwrap()
            .mint(&request(1_000))
            .unwrap();
        assert_eq!(check(&keys, "", 1_000.0), Err(Rejection::Empty));
        assert_eq!(
            check(&keys, "abc", 1_000.0),
            Err(Rejection::Malformed(
                "token is malformed: token contains an invalid number of segments".to_owned()
            ))
        );
        // A token sent with the `Bearer ` prefix, as seen from the real agent.
        assert_eq!(
            check(&keys, &format!("Bearer {token}"), 1_000.0),
            Err(Rejection::Malformed(
                "token is malformed: could not base64 decode header: illegal base64 data at input byte 6"
                    .to_owned()
            ))
        );
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"exp":"tomorrow"}"#);
        let Err(Rejection::Malformed(text)) = check(&keys, &format!("{header}.{claims}.x"), 0.0)
        else {
            panic!("a string exp parsed");
        };
        assert!(
            text.starts_with("token is malformed: could not JSON decode claim: "),
            "{text}"
        );
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"XY1"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{}"#);
        assert_eq!(
            check(&keys, &format!("{header}.{claims}.x"), 0.0),
            Err(Rejection::Malformed(
                "token is unverifiable: signing method (alg) is unavailable".to_owned()
            ))
        );
        let both = URL_SAFE_NO_PAD.encode(br#"{"exp":10,"nbf":20}"#);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        assert_eq!(
            check(&keys, &format!("{header}.{both}.x"), 15.0),
            Err(Rejection::Claims(
                "token is expired, token is not valid yet".to_owned()
            ))
        );
    }

    #[test]
    fn jwks_keys_must_be_rsa_or_p256() {
        assert!(matches!(
            TokenKeys::from_jwks(br#"{"keys":[]}"#),
            Err(KeyError::NoKeys)
        ));
        assert!(matches!(
            TokenKeys::from_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
            Err(KeyError::UnusableJwk { index: 0, .. })
        ));
        assert!(TokenKeys::from_jwks(b"[]").is_err());
        assert!(matches!(
            TokenKeys::from_pem(b"nope"),
            Err(KeyError::Pem(_))
        ));
    }
}
