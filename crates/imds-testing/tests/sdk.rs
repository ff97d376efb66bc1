//! The Rust SDK (aws-config's IMDS client and its credentials and region providers) against an
//! in-process imds: it gets the role's credentials and the region, retries injected 500s and
//! succeeds, and refuses a token answer without the TTL header as it does on EC2. Stopping frees
//! the ports; bad input to the builder is a typed error.

use aws_config::{
    imds::{credentials::ImdsCredentialsProvider, region::ImdsRegionProvider},
    meta::credentials::CredentialsProviderChain,
    provider_config::ProviderConfig,
};
use aws_credential_types::provider::ProvideCredentials;
use imds_testing::{
    model::{FaultKind, InjectFault},
    Error, IamSpec, Imds, InstanceSpec, PlacementSpec, RoleSpec,
};

const INSTANCE: &str = "i-0123456789abcdef0";
const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";

/// An instance with role `app` in `eu-west-3`, the role's credentials static ones.
async fn start() -> Imds {
    Imds::builder()
        .instance(InstanceSpec {
            instance_id: Some(INSTANCE.into()),
            iam: Some(IamSpec {
                role_name: Some("app".into()),
                ..IamSpec::default()
            }),
            placement: Some(PlacementSpec {
                region: Some("eu-west-3".into()),
                ..PlacementSpec::default()
            }),
            ..InstanceSpec::default()
        })
        .role(
            "app",
            RoleSpec {
                provider: Some("static".into()),
                access_key_id: Some(ACCESS_KEY_ID.into()),
                secret_access_key: Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
                session_token: Some("session-token".into()),
                ..RoleSpec::default()
            },
        )
        .start()
        .await
        .expect("imds starts")
}

/// The SDK's IMDS client pointed at `imds`, and the provider config it was made with.
fn sdk_client(imds: &Imds) -> (aws_config::imds::Client, ProviderConfig) {
    let provider_config = ProviderConfig::without_region()
        .with_http_client(aws_smithy_http_client::Builder::new().build_http());
    let client = aws_config::imds::Client::builder()
        .configure(&provider_config)
        .endpoint(imds.endpoint())
        .expect("the endpoint is a URI")
        .build();
    (client, provider_config)
}

/// The access key id the SDK's IMDS credentials provider gets from `imds`.
async fn sdk_access_key_id(imds: &Imds) -> String {
    let (client, provider_config) = sdk_client(imds);
    let provider = ImdsCredentialsProvider::builder()
        .configure(&provider_config)
        .imds_client(client)
        .build();
    // Through a chain as an application's default chain would hold it.
    CredentialsProviderChain::first_try("imds", provider)
        .provide_credentials()
        .await
        .expect("credentials")
        .access_key_id()
        .to_owned()
}

#[tokio::test]
async fn the_rust_sdk_gets_the_roles_credentials_and_the_region() {
    let imds = start().await;
    assert_eq!(sdk_access_key_id(&imds).await, ACCESS_KEY_ID);
    let (client, _) = sdk_client(&imds);
    let region = ImdsRegionProvider::builder()
        .imds_client(client)
        .build()
        .region()
        .await;
    assert_eq!(
        region.as_ref().map(|region| region.as_ref()),
        Some("eu-west-3")
    );
    imds.stop().await.unwrap();
}

#[tokio::test]
async fn the_rust_sdk_retries_two_injected_500s_and_gets_the_credentials() {
    let imds = start().await;
    let mut fault = InjectFault::new(FaultKind::Status);
    fault.status = Some(500);
    fault.path = Some("meta-data/iam/security-credentials/app".into());
    fault.count = Some(2);
    let fault = imds
        .control()
        .inject_fault(imds.instance_id(), &fault)
        .await
        .unwrap();
    assert_eq!(sdk_access_key_id(&imds).await, ACCESS_KEY_ID);
    let listed = imds
        .control()
        .describe_faults(imds.instance_id())
        .await
        .unwrap();
    let served = listed
        .faults
        .iter()
        .find(|listed| listed.fault_id == fault.fault_id)
        .expect("the fault is listed");
    assert_eq!(
        served.injected, 2,
        "both 500s were served before the answer"
    );
    imds.stop().await.unwrap();
}

#[tokio::test]
async fn the_rust_sdk_refuses_a_token_answer_without_the_ttl_header() {
    let imds = start().await;
    let (client, _) = sdk_client(&imds);
    // Before the fault the same client reads the path.
    let id = client.get("/latest/meta-data/instance-id").await.unwrap();
    assert_eq!(id.as_ref(), INSTANCE);

    let mut fault = InjectFault::new(FaultKind::OmitTokenTtl);
    fault.path = Some("api/token".into());
    imds.control()
        .inject_fault(imds.instance_id(), &fault)
        .await
        .unwrap();
    let (client, _) = sdk_client(&imds);
    let error = client
        .get("/latest/meta-data/instance-id")
        .await
        .expect_err("no TTL, no token, no answer");
    assert!(format!("{error:?}").contains("NoTtl"), "{error:?}");

    let cleared = imds
        .control()
        .clear_faults(imds.instance_id())
        .await
        .unwrap();
    assert_eq!(cleared.removed, 1);
    let id = client.get("/latest/meta-data/instance-id").await.unwrap();
    assert_eq!(id.as_ref(), INSTANCE);
    imds.stop().await.unwrap();
}

#[tokio::test]
async fn stop_closes_both_ports() {
    let imds = start().await;
    let guest = imds.address();
    let control: std::net::SocketAddr = imds
        .control()
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(guest).await.is_ok());
    imds.stop().await.unwrap();
    for address in [guest, control] {
        let error = tokio::net::TcpStream::connect(address).await.unwrap_err();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{address}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let error = Imds::builder()
        .role(
            "app",
            RoleSpec {
                provider: Some("static".into()),
                access_key_id: Some(ACCESS_KEY_ID.into()),
                ..RoleSpec::default()
            },
        )
        .start()
        .await
        .unwrap_err();
    let Error::Role { name, source } = &error else {
        panic!("not a role error: {error}");
    };
    assert_eq!(name, "app");
    assert!(source.is_refusal(), "{source}");
    assert!(
        error.to_string().contains("secret-access-key"),
        "the message names the field: {error}"
    );

    let error = Imds::builder()
        .instance(InstanceSpec {
            instance_id: Some("not-an-instance-id".into()),
            ..InstanceSpec::default()
        })
        .start()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Instance(_)), "{error:?}");
    assert!(error.to_string().contains("instance-id"), "{error}");
}
