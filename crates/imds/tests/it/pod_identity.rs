//! The EKS Pod Identity endpoint over real sockets (issue #12): service-account tokens signed
//! here with openssl (independently of the server's code), checked against a JWK Set or a PEM
//! key; every refusal's status and text; the Host check; the rate limit; botocore reading it as
//! a pod does, with a token file.

use std::{net::SocketAddr, path::Path, process::Command};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use openssl::{
    hash::MessageDigest,
    pkey::{PKey, Private},
    rsa::Rsa,
    sign::Signer,
};
use serde_json::{json, Value};

use crate::support::{send_raw, server, Response, Server};

const ACCOUNT: &str = "123456789012";

fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

/// The key's JWK Set with key id `kid`.
fn jwks(key: &PKey<Private>, kid: &str) -> String {
    let rsa = key.rsa().unwrap();
    json!({"keys": [{
        "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
        "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
    }]})
    .to_string()
}

/// An RS256 JWT of `claims`, signed with `key`.
fn jwt(key: &PKey<Private>, kid: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
    signer.update(input.as_bytes()).unwrap();
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(signer.sign_to_vec().unwrap())
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A Kubernetes bound token's claims for `namespace`/`name`, valid for a day.
fn claims(namespace: &str, name: &str) -> Value {
    let now = now();
    json!({
        "aud": ["pods.eks.amazonaws.com"],
        "exp": now + 86400,
        "iat": now,
        "nbf": now,
        "iss": "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF",
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": "6b1d"}},
    })
}

/// A server with `[pod-identity]` from `pod_identity` (keys relative to the state directory),
/// shop/cart and shop/pay associated with role `fixed`, shop/gen with `generated-role`.
pub fn pod_identity_server(directory: &Path, pod_identity: &str, audit: Option<&Path>) -> Server {
    let config = format!(
        "[instance]\naccount-id = \"{ACCOUNT}\"\n\
         [[roles]]\nname = \"fixed\"\nprovider = \"static\"\n\
         access-key-id = \"ASIAFIXEDFIXEDFIXED1\"\nsecret-access-key = \"fixed-secret\"\n\
         session-token = \"fixed-token\"\n\
         [pod-identity]\n{pod_identity}\n\
         [[pod-identity-associations]]\nnamespace = \"shop\"\nservice-account = \"cart\"\nrole = \"fixed\"\n\
         [[pod-identity-associations]]\nnamespace = \"shop\"\nservice-account = \"gen\"\nrole = \"generated-role\"\n\
         [[pod-identity-associations]]\nnamespace = \"other\"\nservice-account = \"gen\"\nrole = \"generated-role\"\n"
    );
    let mut builder = server()
        .state_dir(directory)
        .config(&config)
        .args(&["--pod-identity-listen", "127.0.0.1:0"]);
    if let Some(path) = audit {
        builder = builder.args(&["--audit-log", path.to_str().unwrap()]);
    }
    builder.start()
}

fn get(address: SocketAddr, path: &str, host: &str, authorization: Option<&str>) -> Response {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    send_raw(address, request.as_bytes())
}

/// A request as a pod makes it.
pub fn credentials(address: SocketAddr, token: &str) -> Response {
    get(address, "/v1/credentials", "169.254.170.23", Some(token))
}

/// A plain-text error as Go's `http.Error` writes it; its text without the newline.
#[track_caller]
pub fn plain(response: &Response, status: u16) -> String {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("X-Content-Type-Options"), Some("nosniff"));
    let text = response.text();
    text.strip_suffix('\n').expect("a final newline").to_owned()
}

/// An EKS Auth error passed on: `[REQUEST ID]: (CODE): MESSAGE, fault: FAULT`.
#[track_caller]
pub fn eks_auth(response: &Response, status: u16, code: &str, fault: &str) {
    let text = plain(response, status);
    let (id, rest) = text
        .strip_prefix('[')
        .and_then(|text| text.split_once("]: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(id.len(), 36, "{text}");
    assert!(rest.starts_with(&format!("({code}): ")), "{text}");
    assert!(rest.ends_with(&format!(", fault: {fault}")), "{text}");
}

#[test]
fn tokens_get_their_associations_role_in_the_agents_document() {
    let directory = tempfile::tempdir().unwrap();
    let key = rsa_key();
    std::fs::write(directory.path().join("jwks.json"), jwks(&key, "k1")).unwrap();
    let audit = directory.path().join("audit.jsonl");
    let imds = pod_identity_server(directory.path(), "jwks-file = \"jwks.json\"", Some(&audit));
    let address = imds.pod_identity_addresses[0];

    let cart = jwt(&key, "k1", &claims("shop", "cart"));
    let response = credentials(address, &cart);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let keys = crate::containers::keys_in_order(&response.body);
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "SecretAccessKey",
            "Token",
            "AccountId",
            "Expiration"
        ]
    );
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["AccessKeyId"], "ASIAFIXEDFIXEDFIXED1");
    assert_eq!(body["Token"], "fixed-token");
    assert_eq!(body["AccountId"], ACCOUNT);
    assert!(body["Expiration"].as_str().unwrap().ends_with('Z'));
    assert!(!response.text().ends_with('\n'));

    // A generated role has one set, whoever asks (as for instances); per-instance providers
    // (sts) make one per service account.
    let key_of = |namespace: &str| {
        let token = jwt(&key, "k1", &claims(namespace, "gen"));
        let response = credentials(address, &token);
        assert_eq!(response.status, 200, "{}", response.text());
        serde_json::from_slice::<Value>(&response.body).unwrap()["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let shop = key_of("shop");
    assert!(
        shop.starts_with("ASIA") && shop != "ASIAFIXEDFIXEDFIXED1",
        "{shop}"
    );
    assert_eq!(shop, key_of("other"));

    // Any method, as the agent's ServeMux route; the path must be exact.
    let post = send_raw(
        address,
        format!(
            "POST /v1/credentials HTTP/1.1\r\nHost: 169.254.170.23\r\nAuthorization: {cart}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(post.status, 200, "{}", post.text());
    for path in ["/v1/credentials/", "/v2/credentials/x", "/"] {
        let response = get(address, path, "169.254.170.23", Some(&cart));
        assert_eq!(plain(&response, 404), "404 page not found");
    }

    let log = imds.stop();
    assert!(!log
        .iter()
        .any(|line| line.contains(&cart) || line.contains("fixed-secret")));
    let records: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let cart_records: Vec<&Value> = records
        .iter()
        .filter(|record| record["service_account"] == "cart")
        .collect();
    assert_eq!(cart_records.len(), 2, "{records:#?}");
    for record in cart_records {
        assert_eq!(record["event"], "credentials-issued");
        assert_eq!(record["endpoint"], "pod-identity");
        assert_eq!(record["namespace"], "shop");
        assert_eq!(record["role"], "fixed");
        assert_eq!(record["access_key_id"], "ASIAFIXEDFIXEDFIXED1");
    }
}

#[test]
fn refused_tokens_get_the_agents_and_eks_auths_answers() {
    let directory = tempfile::tempdir().unwrap();
    let key = rsa_key();
    std::fs::write(
        directory.path().join("key.pem"),
        key.public_key_to_pem().unwrap(),
    )
    .unwrap();
    let imds = pod_identity_server(directory.path(), "key-file = \"key.pem\"", None);
    let address = imds.pod_identity_addresses[0];
    let good = claims("shop", "cart");
    // A PEM key has no id in the file: a token naming any id is tried with it.
    let valid = jwt(&key, "any-kid", &good);
    assert_eq!(credentials(address, &valid).status, 200);

    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        jwt(&key, "any-kid", &claims)
    };
    let now = now();
    let expired = with(&|claims| claims["exp"] = json!(now - 10));
    assert_eq!(
        plain(&credentials(address, &expired), 400),
        "Service account token failed basic claim validations: token is expired"
    );
    let early = with(&|claims| claims["nbf"] = json!(now + 3600));
    assert_eq!(
        plain(&credentials(address, &early), 400),
        "Service account token failed basic claim validations: token is not valid yet"
    );
    assert_eq!(
        plain(&credentials(address, ""), 400),
        "Service account token cannot be empty"
    );
    assert_eq!(
        plain(
            &get(address, "/v1/credentials", "169.254.170.23", None),
            400
        ),
        "Service account token cannot be empty"
    );
    assert_eq!(
        plain(&credentials(address, "not.a-jwt"), 400),
        "Service account token cannot be parsed: token is malformed: token contains an invalid number of segments"
    );
    assert_eq!(
        plain(&credentials(address, &format!("Bearer {valid}")), 400),
        "Service account token cannot be parsed: token is malformed: could not base64 decode header: illegal base64 data at input byte 6"
    );

    // What EKS Auth decides.
    let wrong_audience = with(&|claims| claims["aud"] = json!(["sts.amazonaws.com"]));
    eks_auth(
        &credentials(address, &wrong_audience),
        400,
        "InvalidTokenException",
        "client",
    );
    let other_key = jwt(&rsa_key(), "any-kid", &good);
    eks_auth(
        &credentials(address, &other_key),
        400,
        "InvalidTokenException",
        "client",
    );
    // One character of the signature changed (not the last, whose low bits are padding).
    let mut tampered = valid.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    eks_auth(
        &credentials(address, &tampered),
        400,
        "InvalidTokenException",
        "client",
    );
    let not_a_service_account = with(&|claims| claims["sub"] = json!("system:node:n1"));
    eks_auth(
        &credentials(address, &not_a_service_account),
        400,
        "InvalidTokenException",
        "client",
    );
    let unknown = jwt(&key, "any-kid", &claims("shop", "nobody"));
    eks_auth(
        &credentials(address, &unknown),
        404,
        "ResourceNotFoundException",
        "client",
    );

    // The agent's Host check: its addresses or loopback only.
    let response = get(address, "/v1/credentials", "169.254.170.2", Some(&valid));
    assert_eq!(
        plain(&response, 403),
        "Access Denied. Called agent through invalid address, please use either [169.254.170.23 fd00:ec2::23] address not 169.254.170.2"
    );
    for host in [
        "[fd00:ec2::23]",
        "169.254.170.23:80",
        "127.0.0.1",
        "localhost:2703",
    ] {
        assert_eq!(
            get(address, "/v1/credentials", host, Some(&valid)).status,
            200,
            "{host}"
        );
    }

    let log = imds.stop();
    for token in [&valid, &expired, &wrong_audience, &other_key, &unknown] {
        assert!(!log.iter().any(|line| line.contains(token.as_str())));
    }
    for reason in [
        "reason=signature does not verify",
        "reason=audience is not pods.eks.amazonaws.com",
        "reason=expired or not yet valid",
        "reason=malformed",
        "reason=empty",
    ] {
        assert!(
            log.iter().any(|line| line.contains(reason)),
            "{reason}: {log:#?}"
        );
    }
}

#[test]
fn the_host_check_can_be_off_and_the_rate_limit_answers_429() {
    let directory = tempfile::tempdir().unwrap();
    let key = rsa_key();
    std::fs::write(directory.path().join("jwks.json"), jwks(&key, "k1")).unwrap();
    let imds = pod_identity_server(
        directory.path(),
        "jwks-file = \"jwks.json\"\ncheck-host = false\nrequests-per-second = 1\nburst = 1",
        None,
    );
    let address = imds.pod_identity_addresses[0];
    let token = jwt(&key, "k1", &claims("shop", "cart"));
    // One request a second: of ten in a row, the first is answered and later ones refused.
    let statuses: Vec<u16> = (0..10)
        .map(|_| get(address, "/v1/credentials", "imds.internal", Some(&token)))
        .map(|response| {
            if response.status == 429 {
                assert_eq!(plain(&response, 429), "Too Many Requests");
            }
            response.status
        })
        .collect();
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().all(|status| [200, 429].contains(status)));
}

fn imds(args: &[&str], state_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imds"))
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .unwrap()
}

/// Without a key in `[pod-identity]`, the server and `imds pod-identity` share the state
/// directory's key; its JWKS verifies the same tokens in another server.
#[test]
fn minted_tokens_are_accepted_with_the_state_directorys_key_and_its_jwks() {
    use std::os::unix::fs::PermissionsExt;
    let directory = tempfile::tempdir().unwrap();
    let token_file = directory.path().join("token");
    let mint = imds(
        &[
            "pod-identity",
            "mint-token",
            "--namespace",
            "shop",
            "--service-account",
            "cart",
            "--output",
            token_file.to_str().unwrap(),
        ],
        directory.path(),
    );
    assert!(
        mint.status.success(),
        "{}",
        String::from_utf8_lossy(&mint.stderr)
    );
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert!(!token.ends_with('\n'));
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], json!(["pods.eks.amazonaws.com"]));
    assert_eq!(claims["sub"], "system:serviceaccount:shop:cart");
    assert_eq!(claims["kubernetes.io"]["namespace"], "shop");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        86400
    );

    let imds_server = pod_identity_server(directory.path(), "", None);
    let response = credentials(imds_server.pod_identity_addresses[0], &token);
    assert_eq!(response.status, 200, "{}", response.text());
    drop(imds_server);

    let jwks = imds(&["pod-identity", "jwks"], directory.path());
    assert!(jwks.status.success());
    let set: Value = serde_json::from_slice(&jwks.stdout).unwrap();
    assert_eq!(set["keys"][0]["kty"], "RSA");
    assert_eq!(set["keys"][0]["alg"], "RS256");
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("jwks.json"), &jwks.stdout).unwrap();
    let verifier = pod_identity_server(other.path(), "jwks-file = \"jwks.json\"", None);
    let response = credentials(verifier.pod_identity_addresses[0], &token);
    assert_eq!(response.status, 200, "{}", response.text());
    // Another state directory's key does not verify it.
    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = pod_identity_server(elsewhere.path(), "", None);
    eks_auth(
        &credentials(stranger.pod_identity_addresses[0], &token),
        400,
        "InvalidTokenException",
        "client",
    );

    let bad = imds(
        &[
            "pod-identity",
            "jwks",
            "--key-file",
            token_file.to_str().unwrap(),
        ],
        directory.path(),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no RSA or P-256 private key"));
}

/// botocore as in a pod: `AWS_CONTAINER_CREDENTIALS_FULL_URI` and the token in
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, written without a trailing newline as the kubelet
/// writes projected tokens.
#[test]
fn botocore_reads_pod_identity_with_a_token_file() {
    let directory = tempfile::tempdir().unwrap();
    let key = rsa_key();
    std::fs::write(directory.path().join("jwks.json"), jwks(&key, "k1")).unwrap();
    let imds = pod_identity_server(directory.path(), "jwks-file = \"jwks.json\"", None);
    let address = imds.pod_identity_addresses[0];
    let token_file = directory.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, jwt(&key, "k1", &claims("shop", "cart"))).unwrap();
    assert_eq!(
        crate::containers::botocore_container_credentials(
            &format!("http://{address}/v1/credentials"),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.as_os_str()
            ),
        ),
        "container-role ASIAFIXEDFIXEDFIXED1 fixed-token"
    );
}

/// `imds container-env`: `docker run --env-file` lines for each style; with `--pod-identity` the
/// token file it names is minted, and the server with the same state directory accepts it.
#[test]
fn container_env_prints_env_files_and_mints_the_pod_identity_token() {
    let directory = tempfile::tempdir().unwrap();
    let relative = Command::new(env!("CARGO_BIN_EXE_imds"))
        .args(["container-env", "--relative-uri", "/v2/credentials/4f1c"])
        .args(["--region", "eu-west-1"])
        .args(["--metadata-uri", "http://169.254.170.2/v4/0a1b"])
        .output()
        .unwrap();
    assert!(
        relative.status.success(),
        "{}",
        String::from_utf8_lossy(&relative.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&relative.stdout),
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/4f1c\n\
         ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/0a1b\n\
         AWS_REGION=eu-west-1\n"
    );

    let token_file = directory.path().join("eks-pod-identity-token");
    let eks = imds(
        &[
            "container-env",
            "--pod-identity",
            "--namespace",
            "shop",
            "--service-account",
            "cart",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        directory.path(),
    );
    assert!(
        eks.status.success(),
        "{}",
        String::from_utf8_lossy(&eks.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&eks.stdout),
        format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials\n\
             AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={}\n",
            token_file.display()
        )
    );
    let token = std::fs::read_to_string(&token_file).unwrap();
    let imds_server = pod_identity_server(directory.path(), "", None);
    let response = credentials(imds_server.pod_identity_addresses[0], &token);
    assert_eq!(response.status, 200, "{}", response.text());

    for bad in [
        &["container-env"][..],
        &["container-env", "--relative-uri", "v2/credentials/x"],
        &[
            "container-env",
            "--relative-uri",
            "/a",
            "--full-uri",
            "http://127.0.0.1/a",
        ],
        &["container-env", "--pod-identity", "--namespace", "shop"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_imds"))
            .args(bad)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bad:?}");
        assert!(output.stdout.is_empty(), "{bad:?}");
        assert!(!output.stderr.is_empty(), "{bad:?}");
    }
}

/// The claims of `token`, decoded without checking it.
fn token_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// `imds ctl mint-service-account-token` asks the server for a token signed with the key its
/// Pod Identity endpoint checks: accepted there with the association's role, written to a
/// token file as the kubelet writes one; refused with a clear message where the server has no
/// private key, and for names Kubernetes would refuse.
#[test]
fn ctl_mints_tokens_the_endpoint_accepts_with_the_servers_own_key() {
    use std::os::unix::fs::PermissionsExt;
    let directory = tempfile::tempdir().unwrap();
    let imds = pod_identity_server(directory.path(), "", None);
    let address = imds.pod_identity_addresses[0];

    let token_file = directory.path().join("pod-token");
    let written = imds.ctl_ok(&[
        "mint-service-account-token",
        "--namespace",
        "shop",
        "--service-account",
        "cart",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(written.contains("token written to"), "{written}");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(!token.ends_with('\n'));
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let claims = token_claims(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:shop:cart");
    assert_eq!(claims["aud"], json!(["pods.eks.amazonaws.com"]));
    let response = credentials(address, &token);
    assert_eq!(response.status, 200, "{}", response.text());
    let document: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(document["AccessKeyId"], "ASIAFIXEDFIXEDFIXED1");

    // JSON output: the token and its expiry, here an hour away.
    let minted: Value = serde_json::from_str(&imds.ctl_ok(&[
        "--output",
        "json",
        "mint-service-account-token",
        "--namespace",
        "shop",
        "--service-account",
        "gen",
        "--lifetime",
        "3600",
    ]))
    .unwrap();
    let token = minted["Token"].as_str().unwrap();
    let claims = token_claims(token);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert!(minted["ExpirationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(credentials(address, token).status, 200);
    // A token for another audience is minted, and the endpoint refuses it as the agent does.
    let other = imds.ctl_ok(&[
        "mint-service-account-token",
        "--namespace",
        "shop",
        "--service-account",
        "cart",
        "--audience",
        "sts.amazonaws.com",
    ]);
    eks_auth(
        &credentials(address, other.trim_end()),
        400,
        "InvalidTokenException",
        "client",
    );

    mint_refused(&imds, "Shop", "Namespace");
    assert!(
        !imds.log().iter().any(|line| line.contains(token)),
        "a minted token was logged"
    );

    // A server whose endpoint checks tokens with a JWK Set has nothing to mint with.
    let verifier_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        verifier_dir.path().join("jwks.json"),
        jwks(&rsa_key(), "k1"),
    )
    .unwrap();
    let verifier = pod_identity_server(verifier_dir.path(), "jwks-file = \"jwks.json\"", None);
    mint_refused(&verifier, "shop", "no key to mint");
}

/// `imds ctl mint-service-account-token` for `namespace`/cart fails, saying `reason`.
#[track_caller]
fn mint_refused(server: &Server, namespace: &str, reason: &str) {
    let refused = server.ctl(&[
        "mint-service-account-token",
        "--namespace",
        namespace,
        "--service-account",
        "cart",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(reason), "{stderr}");
}

/// `imds ctl ... --output json` against `server`, parsed.
#[track_caller]
fn ctl_json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&server.ctl_ok(&all)).unwrap()
}

/// `imds ctl` fails against `server`; its standard error.
#[track_caller]
fn ctl_fails(server: &Server, args: &[&str]) -> String {
    let output = server.ctl(args);
    assert!(!output.status.success(), "imds ctl {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A token for `namespace`/`name` minted by `server`'s own key.
pub fn minted(server: &Server, namespace: &str, name: &str) -> String {
    server
        .ctl_ok(&[
            "mint-service-account-token",
            "--namespace",
            namespace,
            "--service-account",
            name,
        ])
        .trim_end()
        .to_owned()
}

/// The access key id the endpoint gives `token`.
#[track_caller]
fn access_key(address: SocketAddr, token: &str) -> String {
    let response = credentials(address, token);
    assert_eq!(response.status, 200, "{}", response.text());
    serde_json::from_slice::<Value>(&response.body).unwrap()["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn associations_made_through_ctl_are_served_at_once_kept_across_restarts_and_gone_when_deleted() {
    let directory = tempfile::tempdir().unwrap();
    let imds = pod_identity_server(directory.path(), "", None);
    let address = imds.pod_identity_addresses[0];

    // The file's associations are listed, from the config.
    let listed = ctl_json(&imds, &["list-pod-identity-associations"]);
    let associations = listed["Associations"].as_array().unwrap();
    let pairs: Vec<(&str, &str, &str)> = associations
        .iter()
        .map(|association| {
            assert_eq!(association["Origin"], "config");
            (
                association["Namespace"].as_str().unwrap(),
                association["ServiceAccount"].as_str().unwrap(),
                association["Role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("other", "gen", "generated-role"),
            ("shop", "cart", "fixed"),
            ("shop", "gen", "generated-role"),
        ]
    );

    // A service account without an association is refused as EKS Auth refuses it...
    let token = minted(&imds, "web", "front");
    eks_auth(
        &credentials(address, &token),
        404,
        "ResourceNotFoundException",
        "client",
    );
    // ...and served once one is created, without a restart.
    let created = ctl_json(
        &imds,
        &[
            "create-pod-identity-association",
            "--namespace",
            "web",
            "--service-account",
            "front",
            "--role",
            "fixed",
        ],
    );
    let association_id = created["AssociationId"].as_str().unwrap().to_owned();
    assert!(
        association_id.starts_with("a-") && association_id.len() == 19,
        "{association_id}"
    );
    assert_eq!(created["Origin"], "api");
    assert_eq!(access_key(address, &token), "ASIAFIXEDFIXEDFIXED1");

    // One association per service account; names are checked.
    let stderr = ctl_fails(
        &imds,
        &[
            "create-pod-identity-association",
            "--namespace",
            "web",
            "--service-account",
            "front",
            "--role",
            "generated-role",
        ],
    );
    assert!(stderr.contains("ResourceInUseException"), "{stderr}");
    assert!(stderr.contains("web/front"), "{stderr}");
    let stderr = ctl_fails(
        &imds,
        &[
            "create-pod-identity-association",
            "--namespace",
            "Web",
            "--service-account",
            "front",
            "--role",
            "fixed",
        ],
    );
    assert!(stderr.contains("Namespace"), "{stderr}");

    // Another role, served at once.
    let updated = ctl_json(
        &imds,
        &[
            "update-pod-identity-association",
            "--association-id",
            &association_id,
            "--role",
            "generated-role",
        ],
    );
    assert_eq!(updated["Role"], "generated-role");
    let generated = access_key(address, &token);
    assert!(
        generated.starts_with("ASIA") && generated != "ASIAFIXEDFIXEDFIXED1",
        "{generated}"
    );
    let text = imds.ctl_ok(&["list-pod-identity-associations"]);
    assert!(
        text.contains(&association_id) && text.contains("api"),
        "{text}"
    );
    imds.stop();

    // A restart serves it again, with the same id, beside the file's.
    let imds = pod_identity_server(directory.path(), "", None);
    let address = imds.pod_identity_addresses[0];
    let described = ctl_json(
        &imds,
        &[
            "list-pod-identity-associations",
            "--association-id",
            &association_id,
        ],
    );
    assert_eq!(described["Associations"][0]["Role"], "generated-role");
    assert_eq!(described["Associations"][0]["ServiceAccount"], "front");
    let token = minted(&imds, "web", "front");
    assert!(access_key(address, &token).starts_with("ASIA"));
    assert_eq!(
        ctl_json(&imds, &["list-pod-identity-associations"])["Associations"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Deleted: refused at once, and unknown to the control API.
    let deleted = imds.ctl_ok(&[
        "delete-pod-identity-association",
        "--association-id",
        &association_id,
    ]);
    assert!(deleted.contains("deleted"), "{deleted}");
    eks_auth(
        &credentials(address, &token),
        404,
        "ResourceNotFoundException",
        "client",
    );
    let stderr = ctl_fails(
        &imds,
        &[
            "delete-pod-identity-association",
            "--association-id",
            &association_id,
        ],
    );
    assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");
    imds.stop();

    // And it stays deleted.
    let imds = pod_identity_server(directory.path(), "", None);
    eks_auth(
        &credentials(imds.pod_identity_addresses[0], &token),
        404,
        "ResourceNotFoundException",
        "client",
    );
}
