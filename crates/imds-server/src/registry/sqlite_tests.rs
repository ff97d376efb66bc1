//! The registry in-process on a temporary SQLite store, with a credential provider the test
//! controls (it counts its calls, and answers, fails or waits until released as told): writes
//! reach the directory guests are answered from, a write waits for its credentials up to the
//! apply patience and answers pending past it, and role changes reach the instances with the role.
//! The instances' tokens are optional, so each fetch of a role's credentials asks the provider
//! twice: once for the IMDSv1 set and once for the IMDSv2 set.

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use imds_core::spec::InstanceSpec;
use imds_credentials::{
    by_role::ByRole, generated::GeneratedProvider, spec::RoleSpec, BoxFuture, CredentialProvider,
    CredentialRequest, Credentials, CredentialsError,
};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{Registry, RegistryError, Settings};
use crate::{identity::IdentitySigner, instance::services::Services, sealing::RoleCodec};

/// Long enough never to run out on a loaded machine: writes that can apply return as soon as they
/// have, so no test waits this long.
const PATIENT: Duration = Duration::from_secs(120);
/// A write whose credentials never come answers pending after this.
const IMPATIENT: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Answer,
    Fail,
    /// Wait until `release`, then answer.
    Hang,
}

/// The provider of every role without one of its own.
#[derive(Debug)]
struct TestProvider {
    calls: AtomicUsize,
    mode: Mutex<Mode>,
    released: watch::Sender<bool>,
}

impl TestProvider {
    fn new(mode: Mode) -> Arc<TestProvider> {
        Arc::new(TestProvider {
            calls: AtomicUsize::new(0),
            mode: Mutex::new(mode),
            released: watch::channel(false).0,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn release(&self) {
        self.released.send_replace(true);
    }
}

impl CredentialProvider for TestProvider {
    fn fetch<'a>(
        &'a self,
        _request: CredentialRequest<'a>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Credentials, CredentialsError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        let mut released = self.released.subscribe();
        Box::pin(async move {
            match mode {
                Mode::Answer => {}
                Mode::Fail => return Err(CredentialsError::Upstream("told to fail".to_owned())),
                Mode::Hang => {
                    released.wait_for(|released| *released).await.unwrap();
                }
            }
            Ok(GeneratedProvider::default().generate(now))
        })
    }
}

async fn registry(
    provider: &Arc<TestProvider>,
    apply_patience: Duration,
) -> (Registry, tempfile::TempDir) {
    let settings = Settings {
        apply_patience,
        ..Settings::default()
    };
    on_sqlite(provider.clone(), settings).await
}

/// A registry on a new SQLite store in a temporary directory (kept while the directory lives),
/// its roles' credentials from `provider`.
pub(crate) async fn on_sqlite(
    provider: Arc<dyn imds_credentials::CredentialProvider>,
    settings: Settings,
) -> (Registry, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let store = imds_store::open(&format!(
        "sqlite:{}",
        directory.path().join("imds.db").display()
    ))
    .await
    .unwrap();
    let services = Services::new(
        Arc::new(IdentitySigner::generate().unwrap()),
        Arc::new(ByRole::new(provider, Default::default())),
        Duration::from_secs(3600),
    );
    let registry = Registry::load(store, services, RoleCodec::default(), settings)
        .await
        .unwrap();
    (registry, directory)
}

fn spec(description: serde_json::Value) -> InstanceSpec {
    serde_json::from_value(description).unwrap()
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The instance id the directory answers `caller` as.
fn served_as(registry: &Registry, caller: &str) -> Option<String> {
    registry
        .directory()
        .resolve(address(caller))
        .map(|slot| slot.source().instance.instance_id.to_string())
}

/// The `AccessKeyId` `instance_id` serves for its role, if it serves any.
fn role_key(registry: &Registry, instance_id: &str) -> Option<String> {
    let slot = registry.slot(instance_id)?;
    let source = slot.source();
    source
        .role_credentials
        .as_ref()
        .map(|credentials| credentials.v2.access_key_id.clone())
}

/// Polls until `instance_id` serves its latest revision (bounded: a write that never applies
/// fails the test rather than hanging it).
async fn until_applied(registry: &Registry, instance_id: &str) {
    let deadline = tokio::time::Instant::now() + PATIENT;
    while !registry.describe(instance_id).await.unwrap().applied {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{instance_id} never applied"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn register_update_and_deregister_reach_the_directory() {
    let provider = TestProvider::new(Mode::Answer);
    let (registry, _dir) = registry(&provider, PATIENT).await;
    let view = registry
        .register(spec(json!({
            "instance-id": "i-0000000000000000a",
            "addresses": ["10.0.0.5"],
        })))
        .await
        .unwrap();
    assert!(view.applied);
    assert_eq!(
        served_as(&registry, "10.0.0.5").as_deref(),
        Some("i-0000000000000000a")
    );
    assert_eq!(served_as(&registry, "10.0.0.6"), None);

    let updated = registry
        .update(
            "i-0000000000000000a",
            &json!({ "addresses": ["10.0.0.6"], "ami-id": "ami-0000000000000000b" }),
            Some(view.record.revision),
        )
        .await
        .unwrap();
    assert!(updated.applied);
    assert!(updated.record.revision > view.record.revision);
    assert_eq!(served_as(&registry, "10.0.0.5"), None);
    assert_eq!(
        served_as(&registry, "10.0.0.6").as_deref(),
        Some("i-0000000000000000a")
    );
    let slot = registry.slot("i-0000000000000000a").unwrap();
    assert_eq!(
        slot.source().instance.instance().unwrap().ami_id,
        "ami-0000000000000000b"
    );

    // A stale revision is refused, and changes nothing.
    let stale = registry
        .update(
            "i-0000000000000000a",
            &json!({ "ami-id": "ami-0000000000000000c" }),
            Some(view.record.revision),
        )
        .await;
    assert!(
        matches!(stale, Err(RegistryError::Conflict(_))),
        "{stale:?}"
    );
    assert_eq!(
        slot.source().instance.instance().unwrap().ami_id,
        "ami-0000000000000000b"
    );

    registry.deregister("i-0000000000000000a").await.unwrap();
    assert_eq!(served_as(&registry, "10.0.0.6"), None);
    assert!(matches!(
        registry.describe("i-0000000000000000a").await,
        Err(RegistryError::NotFound(_))
    ));
    // The instance has the default role (`imds-instance-role`) and optional tokens: its IMDSv1
    // and IMDSv2 sets were fetched once each, and the update and the stale write asked for none.
    assert_eq!(provider.calls(), 2);
}

#[tokio::test]
async fn a_write_waiting_for_credentials_answers_pending_and_applies_when_they_come() {
    let provider = TestProvider::new(Mode::Hang);
    let (registry, _dir) = registry(&provider, IMPATIENT).await;
    let view = registry
        .register(spec(json!({
            "instance-id": "i-0000000000000000a",
            "addresses": ["10.0.0.5"],
            "iam": { "role-name": "app" },
        })))
        .await
        .unwrap();
    assert!(!view.applied);
    assert_eq!(provider.calls(), 2);
    assert!(
        !registry
            .describe("i-0000000000000000a")
            .await
            .unwrap()
            .applied
    );

    provider.release();
    until_applied(&registry, "i-0000000000000000a").await;
    assert!(role_key(&registry, "i-0000000000000000a").is_some_and(|key| key.starts_with("ASIA")));
    assert_eq!(provider.calls(), 2);
}

#[tokio::test]
async fn a_write_with_credentials_at_hand_is_applied_when_it_answers() {
    let provider = TestProvider::new(Mode::Answer);
    let (registry, _dir) = registry(&provider, PATIENT).await;
    let view = registry
        .register(spec(json!({
            "instance-id": "i-0000000000000000a",
            "addresses": ["10.0.0.5"],
            "iam": { "role-name": "app" },
        })))
        .await
        .unwrap();
    assert!(view.applied);
    assert!(role_key(&registry, "i-0000000000000000a").is_some());
    // A second instance of the role is served the role's cached set: no second call.
    registry
        .register(spec(json!({
            "instance-id": "i-0000000000000000b",
            "addresses": ["10.0.0.6"],
            "iam": { "role-name": "app" },
        })))
        .await
        .unwrap();
    assert_eq!(provider.calls(), 2);
    assert_eq!(
        role_key(&registry, "i-0000000000000000a"),
        role_key(&registry, "i-0000000000000000b")
    );
}

#[tokio::test]
async fn a_failing_provider_leaves_the_instance_served_without_role_credentials() {
    let provider = TestProvider::new(Mode::Fail);
    let (registry, _dir) = registry(&provider, PATIENT).await;
    let view = registry
        .register(spec(json!({
            "instance-id": "i-0000000000000000a",
            "addresses": ["10.0.0.5"],
            "iam": { "role-name": "app" },
        })))
        .await
        .unwrap();
    assert!(provider.calls() >= 1);
    // The instance is served (its other metadata answers) whatever became of the credentials.
    assert_eq!(
        served_as(&registry, "10.0.0.5").as_deref(),
        Some("i-0000000000000000a")
    );
    // What it serves for the role is never a set of keys the provider did not give.
    let key = role_key(&registry, "i-0000000000000000a");
    assert!(
        key.as_deref().is_none_or(str::is_empty),
        "{key:?} (applied: {})",
        view.applied
    );
}

#[tokio::test]
async fn a_role_put_and_delete_reach_the_instances_with_the_role() {
    let provider = TestProvider::new(Mode::Answer);
    let (registry, _dir) = registry(&provider, PATIENT).await;
    for (id, caller, role) in [
        ("i-0000000000000000a", "10.0.0.5", "app"),
        ("i-0000000000000000b", "10.0.0.6", "other"),
    ] {
        registry
            .register(spec(json!({
                "instance-id": id,
                "addresses": [caller],
                "iam": { "role-name": role },
            })))
            .await
            .unwrap();
    }
    assert_eq!(provider.calls(), 4);
    let other_key = role_key(&registry, "i-0000000000000000b");

    let role: RoleSpec = serde_json::from_value(json!({
        "provider": "static",
        "access-key-id": "AKIAEXAMPLESTATIC001",
        "secret-access-key": "secret",
        "session-token": "token",
    }))
    .unwrap();
    registry.put_role("app", role).await.unwrap();
    until_applied(&registry, "i-0000000000000000a").await;
    assert_eq!(
        role_key(&registry, "i-0000000000000000a").as_deref(),
        Some("AKIAEXAMPLESTATIC001")
    );
    // The other role's instances keep what they had, and the test provider was not asked again.
    assert_eq!(role_key(&registry, "i-0000000000000000b"), other_key);
    assert_eq!(provider.calls(), 4);

    registry.delete_role("app").await.unwrap();
    until_applied(&registry, "i-0000000000000000a").await;
    let key = role_key(&registry, "i-0000000000000000a");
    assert!(
        key.as_deref().is_some_and(|key| key.starts_with("ASIA")),
        "{key:?}"
    );
    assert_eq!(provider.calls(), 6);
    assert!(matches!(
        registry.delete_role("app").await,
        Err(RegistryError::RoleNotFound(_))
    ));
}
