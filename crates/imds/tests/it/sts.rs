//! Role credentials from a real STS-compatible server: moto in server mode, installed into the
//! workspace's `.venv` by `scripts/install-deps` (or the virtualenv `IMDS_TEST_VENV` names).
//!
//! Each test starts its own `moto_server` on a free loopback port and counts the STS calls in
//! its request log, then checks what `imds` serves with raw HTTP and what boto3 makes of it.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::support::{server, Server};

const INSTANCE_ID: &str = "i-0123456789abcdef0";
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/app";
const ASSUMED_ARN: &str = "arn:aws:sts::123456789012:assumed-role/app/i-0123456789abcdef0";
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/app";

pub fn venv() -> PathBuf {
    match std::env::var_os("IMDS_TEST_VENV") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
    }
}

/// A running moto server (`moto_recording.py`: moto as `moto_server` runs it, printing each STS
/// call's form body); counts the STS calls (`POST /`) it logs and keeps their bodies.
pub struct Moto {
    child: Child,
    port: u16,
    sts_calls: Arc<AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Moto::start_on(port, Arc::new(AtomicUsize::new(0)))
    }

    fn start_on(port: u16, sts_calls: Arc<AtomicUsize>) -> Moto {
        let python = venv().join("bin/python");
        assert!(
            venv().join("bin/moto_server").exists(),
            "moto is missing from {}: run scripts/install-deps",
            venv().display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/moto_recording.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["127.0.0.1", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let stderr = child.stderr.take().unwrap();
        let (ready_sender, ready) = mpsc::channel();
        let counter = sts_calls.clone();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let bodies = requests.clone();
        std::thread::spawn(move || {
            let mut ready_sender = Some(ready_sender);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Running on") {
                    if let Some(sender) = ready_sender.take() {
                        let _ = sender.send(());
                    }
                }
                if line.contains("\"POST / HTTP/1.1\"") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(body) = line.strip_prefix("STS-REQUEST ") {
                    bodies.lock().unwrap().push(body.to_owned());
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(60))
            .expect("moto_server did not start");
        Moto {
            child,
            port,
            sts_calls,
            requests,
        }
    }

    /// The form bodies of the `AssumeRole` calls received, decoded into name-value pairs.
    pub fn assume_role_requests(&self) -> Vec<Vec<(String, String)>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|body| {
                form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect::<Vec<_>>()
            })
            .filter(|pairs| {
                pairs
                    .iter()
                    .any(|(name, value)| name == "Action" && value == "AssumeRole")
            })
            .collect()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The role sessions moto has issued, from its model dump (`/moto-api/data.json`).
    pub fn assumed_roles(&self) -> Vec<serde_json::Value> {
        let address: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let response = crate::support::send_raw(
            address,
            b"GET /moto-api/data.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(response.status, 200);
        let data: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        data["sts"]["AssumedRole"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn calls(&self) -> usize {
        self.sts_calls.load(Ordering::SeqCst)
    }

    /// Stops the server; `restart` brings it back on the same port with the same counter.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        // The old value is dropped here: stopping a stopped server does nothing.
        let requests = self.requests.clone();
        *self = Moto::start_on(self.port, self.sts_calls.clone());
        self.requests = requests;
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn imds_with_sts(moto: &Moto, duration_seconds: u32) -> Server {
    let imds = server()
        .config(&format!(
            "[instance]\ninstance-id = \"{INSTANCE_ID}\"\n[instance.iam]\nrole-name = \"app\"\n\
             [[roles]]\nname = \"app\"\nprovider = \"sts\"\nrole-arn = \"{ROLE_ARN}\"\n\
             endpoint-url = \"{}\"\nregion = \"us-east-1\"\nduration-seconds = {duration_seconds}\n\
             external-id = \"ext-1234\"\npolicy = '{POLICY}'\n\
             [[container-credentials]]\npath = \"/v1/credentials/app\"\nrole = \"app\"\n\
             authorization-token = \"Bearer container-secret\"\n",
            moto.endpoint()
        ))
        // Tokens required: one role session per instance (with tokens optional there is a second,
        // for IMDSv1 callers: `sts_makes_a_session_per_delivery_tagged_where_the_operator_opts_in`).
        .args(&[
            "--container-listen",
            "127.0.0.1:0",
            "--http-tokens",
            "required",
        ])
        // The host's source credentials, found by the standard chain.
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTSOURCEKEY000")
        .env("AWS_SECRET_ACCESS_KEY", "host-secret")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .start();
    // Start-up serves before STS answered; the tests start once it has.
    imds.wait_until_applied();
    imds
}

/// The served credential document, as a client with a token gets it (the IMDSv2 set).
struct Served {
    body: String,
    json: serde_json::Value,
}

impl Served {
    fn get(imds: &Server) -> Served {
        let response = imds.get_with_token(CREDENTIALS_PATH, &imds.token(600));
        assert_eq!(response.status, 200);
        let body = response.text();
        let json = serde_json::from_str(&body).expect("the credential document is JSON");
        Served { body, json }
    }

    fn field(&self, name: &str) -> &str {
        self.json[name].as_str().unwrap_or_default()
    }

    fn is_success(&self) -> bool {
        self.field("Code") == "Success"
    }

    fn expiration(&self) -> OffsetDateTime {
        OffsetDateTime::parse(self.field("Expiration"), &Rfc3339).unwrap()
    }
}

/// Runs a boto3 script in the virtualenv with `env`, returning its standard output.
fn python(script: &str, env: &[(&str, &str)]) -> String {
    let output = Command::new(venv().join("bin/python"))
        .args(["-c", script])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .envs(env.iter().copied())
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The ARN STS says the credentials belong to (`GetCallerIdentity`, signed with them).
fn caller_arn(moto: &Moto, served: &Served) -> String {
    python(
        "import boto3, os\n\
         sts = boto3.client('sts', endpoint_url=os.environ['STS'], region_name='us-east-1',\n\
             aws_access_key_id=os.environ['KEY'], aws_secret_access_key=os.environ['SECRET'],\n\
             aws_session_token=os.environ['TOKEN'])\n\
         print(sts.get_caller_identity()['Arn'])\n",
        &[
            ("STS", &moto.endpoint()),
            ("KEY", served.field("AccessKeyId")),
            ("SECRET", served.field("SecretAccessKey")),
            ("TOKEN", served.field("Token")),
        ],
    )
}

/// The access key id aws-config's IMDS credentials provider obtains from `imds`, and the ARN
/// `GetCallerIdentity` (aws-sdk-sts, signed with those credentials) returns.
fn rust_sdk_through_imds(imds: &Server, moto: &Moto) -> (String, String) {
    use aws_config::{
        imds::{credentials::ImdsCredentialsProvider, Client},
        provider_config::ProviderConfig,
        BehaviorVersion, Region,
    };
    use aws_sdk_sts::config::ProvideCredentials;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http_client = aws_smithy_http_client::Builder::new().build_http();
        let provider_config =
            ProviderConfig::without_region().with_http_client(http_client.clone());
        let imds_client = Client::builder()
            .configure(&provider_config)
            .endpoint(format!("http://{}/", imds.address()))
            .unwrap()
            .build();
        let credentials_provider = ImdsCredentialsProvider::builder()
            .configure(&provider_config)
            .imds_client(imds_client)
            .build();
        let sdk_config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .credentials_provider(credentials_provider)
            .region(Region::from_static("us-east-1"))
            .endpoint_url(moto.endpoint())
            .load()
            .await;
        let access_key_id = {
            let provider = sdk_config.credentials_provider().expect("set above");
            provider
                .provide_credentials()
                .await
                .expect("credentials through IMDS")
                .access_key_id()
                .to_owned()
        };
        let identity = aws_sdk_sts::Client::new(&sdk_config)
            .get_caller_identity()
            .send()
            .await
            .expect("GetCallerIdentity with the served credentials");
        (access_key_id, identity.arn().unwrap_or_default().to_owned())
    })
}

/// Polls the credential document until `done` holds, at most `limit`.
fn wait_for(imds: &Server, limit: Duration, mut done: impl FnMut(&Served) -> bool) -> Served {
    let deadline = Instant::now() + limit;
    loop {
        let served = Served::get(imds);
        if done(&served) {
            return served;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting; last answer: {}",
            served.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sts_credentials_are_served_once_for_many_requests_and_work() {
    let moto = Moto::start();
    let imds = imds_with_sts(&moto, 3600);
    // Prefetched at registration: the server was ready only once the role had credentials.
    let first = Served::get(&imds);
    assert!(first.is_success(), "{}", first.body);
    assert!(first.field("AccessKeyId").starts_with("ASIA"));
    assert_eq!(first.field("Type"), "AWS-HMAC");
    let lifetime = first.expiration() - OffsetDateTime::now_utc();
    assert!(
        lifetime > time::Duration::minutes(55) && lifetime <= time::Duration::minutes(60),
        "STS's expiration is served: {lifetime}"
    );

    let address: SocketAddr = imds.address();
    let token = imds.token(600);
    let askers: Vec<_> = (0..64)
        .map(|_| {
            let token = token.clone();
            std::thread::spawn(move || {
                crate::support::send_raw(
                    address,
                    format!(
                        "GET {CREDENTIALS_PATH} HTTP/1.1\r\nHost: x\r\n\
                         X-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
            })
        })
        .collect();
    for asker in askers {
        assert_eq!(asker.join().unwrap().body, first.body.as_bytes());
    }
    assert_eq!(moto.calls(), 1, "one AssumeRole for every request");

    // The served set is exactly the one STS issued, for the session and with the options given.
    let issued = moto.assumed_roles();
    assert_eq!(issued.len(), 1);
    let session = &issued[0];
    assert_eq!(session["access_key_id"], first.field("AccessKeyId"));
    assert_eq!(session["secret_access_key"], first.field("SecretAccessKey"));
    assert_eq!(session["session_token"], first.field("Token"));
    assert_eq!(session["session_name"], INSTANCE_ID);
    assert_eq!(session["role_arn"], ROLE_ARN);
    assert_eq!(session["external_id"], "ext-1234");
    assert_eq!(session["policy"], POLICY);

    // The served keys are STS's: it knows whom they belong to.
    assert_eq!(caller_arn(&moto, &first), ASSUMED_ARN);

    // boto3's default chain finds them through IMDS and makes a signed call with them.
    let through_imds = python(
        "import boto3, os\n\
         session = boto3.Session(region_name='us-east-1')\n\
         print(session.get_credentials().get_frozen_credentials().access_key)\n\
         print(session.client('sts', endpoint_url=os.environ['STS']).get_caller_identity()['Arn'])\n",
        &[
            ("STS", &moto.endpoint()),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                &format!("http://{}/", imds.address()),
            ),
        ],
    );
    assert_eq!(
        through_imds,
        format!("{}\n{ASSUMED_ARN}", first.field("AccessKeyId"))
    );

    // The Rust SDK's IMDS credentials provider gets the same set, and STS accepts it.
    assert_eq!(
        rust_sdk_through_imds(&imds, &moto),
        (
            first.field("AccessKeyId").to_owned(),
            ASSUMED_ARN.to_owned()
        )
    );

    // The container endpoint serves the same set (same role, same instance, same cache).
    let container = imds
        .container_address
        .expect("the container endpoint listens");
    let full_uri = format!("http://{container}/v1/credentials/app");
    let through_container = python(
        "import boto3, os\n\
         session = boto3.Session(region_name='us-east-1')\n\
         print(session.get_credentials().method)\n\
         print(session.get_credentials().get_frozen_credentials().access_key)\n\
         print(session.client('sts', endpoint_url=os.environ['STS']).get_caller_identity()['Arn'])\n",
        &[
            ("STS", &moto.endpoint()),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer container-secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    assert_eq!(
        through_container,
        format!(
            "container-role\n{}\n{ASSUMED_ARN}",
            first.field("AccessKeyId")
        )
    );
    assert_eq!(
        moto.calls(),
        5,
        "one AssumeRole, then the four GetCallerIdentity calls of this test"
    );

    // Without the token: 403, and no credentials in the body.
    let refused = crate::support::send_raw(
        container,
        b"GET /v1/credentials/app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(refused.status, 403);
    assert!(!refused.text().contains("AccessKeyId"));
}

#[test]
fn sts_outage_keeps_the_last_good_credentials_until_they_expire_then_recovers() {
    let mut moto = Moto::start();
    // Eight seconds: new credentials come after three to four, so the test waits seconds.
    let imds = imds_with_sts(&moto, 8);
    let first = Served::get(&imds);
    assert!(first.is_success(), "{}", first.body);

    // Refreshed ahead of expiry.
    let second = wait_for(&imds, Duration::from_secs(10), |served| {
        served.field("AccessKeyId") != first.field("AccessKeyId")
    });
    assert!(second.is_success());
    assert!(
        OffsetDateTime::now_utc() < first.expiration(),
        "new credentials came before the old ones expired"
    );
    assert_eq!(moto.calls(), 2);

    // STS goes away: the last good credentials stay until they expire, then the error document.
    moto.stop();
    let failed = wait_for(&imds, Duration::from_secs(20), |served| {
        if served.is_success() {
            assert_eq!(served.field("AccessKeyId"), second.field("AccessKeyId"));
            // Never expired credentials (one second of slack for the polling).
            assert!(served.expiration() + time::Duration::seconds(1) > OffsetDateTime::now_utc());
        }
        !served.is_success()
    });
    assert!(OffsetDateTime::now_utc() >= second.expiration());
    assert_eq!(failed.field("Code"), "AssumeRoleUnauthorizedAccess");
    assert_eq!(
        failed.field("Message"),
        "EC2 cannot assume the role app.  Please see documentation at \
         http://docs.amazonwebservices.com/IAM/latest/UserGuide/RolesTroubleshooting.html."
    );
    assert!(failed.json.get("AccessKeyId").is_none());
    assert!(!failed.body.contains("Connection refused") && !failed.body.contains("dispatch"));

    // STS is back: new credentials by themselves, and they work.
    moto.restart();
    let recovered = wait_for(&imds, Duration::from_secs(40), Served::is_success);
    assert_ne!(recovered.field("AccessKeyId"), second.field("AccessKeyId"));
    assert_eq!(caller_arn(&moto, &recovered), ASSUMED_ARN);

    let log = imds.stop().join("\n");
    assert!(
        log.contains("serving the last good ones until they expire"),
        "{log}"
    );
    assert!(!log.contains(second.field("SecretAccessKey")));
}

/// Set in the child process of the container-endpoint test, which then plays the SDK user.
const CHILD_MARKER: &str = "IMDS_TEST_RUST_SDK_CHILD";

/// The Rust SDK reads the container endpoint from the process environment only, so this test
/// runs itself again as a child process with `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN` set (never `set_var` in the test process).
#[test]
fn rust_sdk_gets_the_sts_set_through_the_container_endpoint() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        rust_sdk_child();
        return;
    }
    let moto = Moto::start();
    let imds = imds_with_sts(&moto, 3600);
    let served = Served::get(&imds);
    let container = imds
        .container_address
        .expect("the container endpoint listens");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "sts::rust_sdk_gets_the_sts_set_through_the_container_endpoint",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MARKER, "1")
        .env("IMDS_TEST_STS", moto.endpoint())
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{container}/v1/credentials/app"),
        )
        .env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "Bearer container-secret",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expect = format!("RUST-SDK {} {ASSUMED_ARN}", served.field("AccessKeyId"));
    // The harness prints the test's name on the same line before the child's output.
    assert!(
        stdout.contains(&format!("{expect}\n")),
        "{expect:?} not in {stdout}"
    );
    assert_eq!(moto.calls(), 2, "one AssumeRole, one GetCallerIdentity");
}

/// EKS Pod Identity with an `sts` role: each service account gets its own role session
/// (`NAMESPACE@NAME`), and the Rust SDK's container provider reads it as a pod does, with
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read on every call), then signs
/// `GetCallerIdentity` with it.
#[test]
fn rust_sdk_gets_a_role_session_per_service_account_from_pod_identity() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        rust_sdk_child();
        return;
    }
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let mint = |name: &str| {
        let path = state.path().join(format!("{name}.token"));
        let output = Command::new(env!("CARGO_BIN_EXE_imds"))
            .args(["pod-identity", "mint-token", "--namespace", "shop"])
            .args(["--service-account", name, "--state-dir"])
            .arg(state.path())
            .arg("--output")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        path
    };
    let (cart, pay) = (mint("cart"), mint("pay"));
    let imds = server()
        .state_dir(state.path())
        .config(&format!(
            "[instance]\ninstance-id = \"{INSTANCE_ID}\"\n\
             [[roles]]\nname = \"app\"\nprovider = \"sts\"\nrole-arn = \"{ROLE_ARN}\"\n\
             endpoint-url = \"{}\"\nregion = \"us-east-1\"\n\
             [[pod-identity-associations]]\nnamespace = \"shop\"\nservice-account = \"cart\"\nrole = \"app\"\n\
             [[pod-identity-associations]]\nnamespace = \"shop\"\nservice-account = \"pay\"\nrole = \"app\"\n",
            moto.endpoint()
        ))
        .args(&["--pod-identity-listen", "127.0.0.1:0"])
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTSOURCEKEY000")
        .env("AWS_SECRET_ACCESS_KEY", "host-secret")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .start();
    let address = imds.pod_identity_addresses[0];
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "sts::rust_sdk_gets_a_role_session_per_service_account_from_pod_identity",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MARKER, "1")
        .env("IMDS_TEST_STS", moto.endpoint())
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{address}/v1/credentials"),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &cart)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(" arn:aws:sts::123456789012:assumed-role/app/shop@cart\n"),
        "{stdout}"
    );
    let document = |token_file: &std::path::Path| {
        let token = std::fs::read_to_string(token_file).unwrap();
        let response = crate::support::send_raw(
            address,
            format!(
                "GET /v1/credentials HTTP/1.1\r\nHost: 169.254.170.23\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(response.status, 200, "{}", response.text());
        serde_json::from_slice::<serde_json::Value>(&response.body).unwrap()
    };
    let (cart_set, pay_set) = (document(&cart), document(&pay));
    assert_eq!(cart_set["AccountId"], "123456789012");
    assert!(stdout.contains(&format!(
        "RUST-SDK {} ",
        cart_set["AccessKeyId"].as_str().unwrap()
    )));
    assert_ne!(cart_set["AccessKeyId"], pay_set["AccessKeyId"]);
    let mut sessions: Vec<String> = moto
        .assumed_roles()
        .iter()
        .map(|session| session["session_name"].as_str().unwrap().to_owned())
        .collect();
    sessions.sort();
    assert_eq!(sessions, ["shop@cart", "shop@pay"]);
}

/// The child: aws-config's default chain finds the container endpoint; aws-sdk-sts signs
/// `GetCallerIdentity` with what it served.
fn rust_sdk_child() {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_sts::config::ProvideCredentials;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sdk_config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .region(Region::from_static("us-east-1"))
            .endpoint_url(std::env::var("IMDS_TEST_STS").unwrap())
            .load()
            .await;
        let credentials = sdk_config
            .credentials_provider()
            .expect("the default chain")
            .provide_credentials()
            .await
            .expect("credentials from the container endpoint");
        let identity = aws_sdk_sts::Client::new(&sdk_config)
            .get_caller_identity()
            .send()
            .await
            .expect("GetCallerIdentity with the served credentials");
        println!(
            "RUST-SDK {} {}",
            credentials.access_key_id(),
            identity.arn().unwrap_or_default()
        );
    });
}

/// A role that starts on the default (generated) provider is switched to `sts` through the
/// control API: the instance's next request gets the set STS issued, which STS accepts; switched
/// back, the STS set is no longer served.
#[test]
fn a_role_switched_to_sts_at_run_time_serves_the_sts_set() {
    let moto = Moto::start();
    let imds = server()
        .config(&format!(
            "[instance]\ninstance-id = \"{INSTANCE_ID}\"\n[instance.iam]\nrole-name = \"app\"\n"
        ))
        .args(&["--http-tokens", "required"])
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTSOURCEKEY000")
        .env("AWS_SECRET_ACCESS_KEY", "host-secret")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .start();
    let generated = Served::get(&imds);
    assert!(generated.is_success());
    assert_eq!(moto.calls(), 0);

    let endpoint = moto.endpoint();
    imds.ctl_ok(&[
        "put-role",
        "--role-name",
        "app",
        "--provider",
        "sts",
        "--role-arn",
        ROLE_ARN,
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
        "--external-id",
        "ext-5678",
        "--session-tag",
        "team=payments",
    ]);
    // Served at once: the control API answered after the instance had the new set.
    let assumed = Served::get(&imds);
    assert!(assumed.is_success(), "{}", assumed.body);
    assert_ne!(assumed.field("AccessKeyId"), generated.field("AccessKeyId"));
    let issued = moto.assumed_roles();
    assert_eq!(issued.len(), 1, "one AssumeRole for the switch");
    assert_eq!(issued[0]["access_key_id"], assumed.field("AccessKeyId"));
    assert_eq!(
        issued[0]["secret_access_key"],
        assumed.field("SecretAccessKey")
    );
    assert_eq!(issued[0]["external_id"], "ext-5678");
    // What went over the wire to STS, including the session tags moto's model does not keep.
    let sent = moto.assume_role_requests();
    assert_eq!(sent.len(), 1);
    let field = |name: &str| {
        sent[0]
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(field("RoleArn").as_deref(), Some(ROLE_ARN));
    assert_eq!(field("RoleSessionName").as_deref(), Some(INSTANCE_ID));
    assert_eq!(field("Tags.member.1.Key").as_deref(), Some("team"));
    assert_eq!(field("Tags.member.1.Value").as_deref(), Some("payments"));
    assert_eq!(field("ExternalId").as_deref(), Some("ext-5678"));
    assert_eq!(caller_arn(&moto, &assumed), ASSUMED_ARN);

    imds.ctl_ok(&["delete-role", "--role-name", "app"]);
    let back = Served::get(&imds);
    assert!(back.is_success());
    assert_ne!(back.field("AccessKeyId"), assumed.field("AccessKeyId"));
    assert_eq!(
        moto.assumed_roles().len(),
        1,
        "no AssumeRole after the switch back"
    );
}

/// The `sts` provider makes one role session per delivery while tokens are optional, both named
/// after the instance; where the operator opts in (the trust policy must then allow
/// `sts:TagSession` and `sts:SetSourceIdentity`) each carries its delivery as the session tag
/// `RoleDelivery` and as its `SourceIdentity`, as sent on the wire (moto drops both). With tokens
/// required there is no IMDSv1 session at all.
#[test]
fn sts_makes_a_session_per_delivery_tagged_where_the_operator_opts_in() {
    let moto = Moto::start();
    let start = |tokens: &str, opt_in: bool| {
        let imds = server()
            .config(&format!(
                "[instance]\ninstance-id = \"{INSTANCE_ID}\"\n[instance.iam]\nrole-name = \"app\"\n\
                 [[roles]]\nname = \"app\"\nprovider = \"sts\"\nrole-arn = \"{ROLE_ARN}\"\n\
                 endpoint-url = \"{}\"\nregion = \"us-east-1\"\n\
                 delivery-session-tag = {opt_in}\ndelivery-source-identity = {opt_in}\n",
                moto.endpoint()
            ))
            .args(&["--http-tokens", tokens])
            .env("AWS_ACCESS_KEY_ID", "AKIAHOSTSOURCEKEY000")
            .env("AWS_SECRET_ACCESS_KEY", "host-secret")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .start();
        imds.wait_until_applied();
        imds
    };
    let field = |sent: &[(String, String)], name: &str| {
        sent.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };

    let imds = start("optional", true);
    let token = imds.token(600);
    let v1: serde_json::Value = serde_json::from_slice(&imds.get(CREDENTIALS_PATH).body).unwrap();
    let v2: serde_json::Value =
        serde_json::from_slice(&imds.get_with_token(CREDENTIALS_PATH, &token).body).unwrap();
    assert_eq!(v1["Code"], "Success", "{v1}");
    assert_eq!(v2["Code"], "Success", "{v2}");
    assert_ne!(v1["AccessKeyId"], v2["AccessKeyId"]);
    let issued: Vec<String> = moto
        .assumed_roles()
        .iter()
        .map(|session| {
            assert_eq!(session["session_name"], INSTANCE_ID);
            session["access_key_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(issued.len(), 2, "one session per delivery");
    assert!(issued.iter().any(|key| *key == v1["AccessKeyId"]));
    assert!(issued.iter().any(|key| *key == v2["AccessKeyId"]));
    let mut deliveries: Vec<(Option<String>, Option<String>)> = moto
        .assume_role_requests()
        .iter()
        .map(|sent| {
            assert_eq!(field(sent, "RoleSessionName").as_deref(), Some(INSTANCE_ID));
            assert_eq!(
                field(sent, "Tags.member.1.Key").as_deref(),
                Some("RoleDelivery")
            );
            (
                field(sent, "Tags.member.1.Value"),
                field(sent, "SourceIdentity"),
            )
        })
        .collect();
    deliveries.sort();
    assert_eq!(
        deliveries,
        [
            (Some("1.0".to_owned()), Some("RoleDelivery-1.0".to_owned())),
            (Some("2.0".to_owned()), Some("RoleDelivery-2.0".to_owned())),
        ]
    );
    drop(imds);

    // Not opted in: the sessions carry neither.
    let before = moto.assume_role_requests().len();
    let imds = start("optional", false);
    assert!(Served::get(&imds).is_success());
    let sent = moto.assume_role_requests();
    assert_eq!(sent.len(), before + 2);
    for sent in &sent[before..] {
        assert_eq!(field(sent, "Tags.member.1.Key"), None);
        assert_eq!(field(sent, "SourceIdentity"), None);
    }
    drop(imds);

    // Tokens required: one session, the IMDSv2 one.
    let before = moto.assume_role_requests().len();
    let imds = start("required", true);
    let token = imds.token(600);
    assert_eq!(imds.get_with_token(CREDENTIALS_PATH, &token).status, 200);
    let sent = moto.assume_role_requests();
    assert_eq!(sent.len(), before + 1);
    assert_eq!(
        field(&sent[before], "Tags.member.1.Value").as_deref(),
        Some("2.0")
    );
}
