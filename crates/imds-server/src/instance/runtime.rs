//! One task per served instance keeps its snapshot current: it publishes a new snapshot when
//! credentials come due, when a posted event becomes visible, and when the instance is changed
//! through the control API.

use std::{sync::Arc, time::Duration};

use imds_core::instance::Instance;
use imds_credentials::{until, CredentialRequest, CredentialsError};
use thiserror::Error;
use time::OffsetDateTime;
use tokio::{
    sync::{oneshot, Notify},
    task::JoinHandle,
};

use crate::{
    credentials::RenderedCredentials,
    identity::IdentityError,
    instance::{
        services::Services,
        slot::InstanceSlot,
        snapshot::{LazyIdentity, SignedIdentity, Source},
    },
};

/// How long to wait before asking a failing provider again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// A snapshot could not be prepared.
#[derive(Debug, Error)]
pub enum PrepareError {
    /// The credential provider failed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The instance's values do not fit in one metadata tree.
    #[error(transparent)]
    Tree(#[from] imds_core::metadata_tree::TreeError),
    /// The identity document could not be signed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// What the task keeps to make sources from.
#[derive(Debug)]
struct State {
    instance: Arc<Instance>,
    identity: Arc<LazyIdentity>,
    role: Option<Arc<RenderedCredentials>>,
    identity_credentials: Arc<RenderedCredentials>,
    generation: u64,
}

impl State {
    /// The next source; checks that it builds, so that request-time builds cannot fail.
    fn next_source(&mut self) -> Result<Source, PrepareError> {
        self.generation += 1;
        let source = Source {
            generation: self.generation,
            instance: self.instance.clone(),
            identity: self.identity.clone(),
            role_credentials: self.role.clone(),
            identity_credentials: self.identity_credentials.clone(),
        };
        source.check()?;
        Ok(source)
    }

    /// When the source must next be replaced.
    fn next_wake(&self, now: OffsetDateTime) -> OffsetDateTime {
        let credentials_due = match &self.role {
            Some(role) => role.refresh_at.min(self.identity_credentials.refresh_at),
            None => self.identity_credentials.refresh_at,
        };
        match self.instance.events.next_change_after(now) {
            Some(change) => change.min(credentials_due),
            None => credentials_due,
        }
    }
}

/// A change waiting for the task.
#[derive(Debug)]
struct Change {
    /// The instance to serve.
    instance: Arc<Instance>,
    /// Its revision, recorded as applied once served.
    revision: i64,
    /// Fetch the role's credentials again even if the role name is unchanged (its provider
    /// changed).
    renew_role: bool,
    /// Told once the change is served.
    applied: oneshot::Sender<()>,
}

/// Where the registry leaves a change for the task. One slot is enough: the registry applies
/// one change at a time and waits for it. (A channel would allocate a block of slots per
/// instance, which counts with thousands of instances.)
#[derive(Debug, Default)]
struct Mailbox {
    change: std::sync::Mutex<Option<Change>>,
    arrived: Notify,
}

/// A running instance: its slot (what requests read) and the task that keeps it current.
#[derive(Debug)]
pub struct RuntimeHandle {
    /// The instance's prepared answers and counters.
    pub slot: Arc<InstanceSlot>,
    mailbox: Arc<Mailbox>,
    task: JoinHandle<()>,
}

impl RuntimeHandle {
    /// Prepares the first snapshot of `instance` (so it answers from the first request) and
    /// starts its task.
    pub async fn start(
        instance: Arc<Instance>,
        revision: i64,
        services: Services,
    ) -> Result<RuntimeHandle, PrepareError> {
        let now = OffsetDateTime::now_utc();
        let identity = Arc::new(LazyIdentity::new(services.signer.clone()));
        let role = match &instance.iam {
            Some(profile) => Some(
                services
                    .roles
                    .get(role_request(&instance, &profile.role_name), now)
                    .await,
            ),
            None => None,
        };
        let identity_credentials = services
            .identity_credentials(&instance.instance_id, now)
            .await?;
        let mut state = State {
            instance,
            identity,
            role,
            identity_credentials,
            generation: 0,
        };
        let slot = Arc::new(InstanceSlot::new(state.next_source()?, revision));
        let mailbox = Arc::new(Mailbox::default());
        let task = tokio::spawn(keep_current(state, slot.clone(), services, mailbox.clone()));
        Ok(RuntimeHandle {
            slot,
            mailbox,
            task,
        })
    }

    /// Serves `instance` (the same id, changed) from now on; `revision` is recorded as applied
    /// once its snapshot is published. Waits up to `patience` for that, and says whether it
    /// happened (credentials for a new role may take longer; the change then stays pending).
    pub async fn replace(
        &self,
        instance: Arc<Instance>,
        revision: i64,
        patience: Duration,
    ) -> bool {
        let applied = self.post(instance, revision, false);
        matches!(tokio::time::timeout(patience, applied).await, Ok(Ok(())))
    }

    /// Fetches the credentials of the instance's role again (its provider changed), serving
    /// `instance` at `revision` (the newest the registry has); the receiver hears once the new
    /// credentials are served.
    pub fn renew_role(&self, instance: Arc<Instance>, revision: i64) -> oneshot::Receiver<()> {
        self.post(instance, revision, true)
    }

    fn post(
        &self,
        instance: Arc<Instance>,
        revision: i64,
        renew_role: bool,
    ) -> oneshot::Receiver<()> {
        let (applied, applied_receiver) = oneshot::channel();
        let mut waiting = self
            .mailbox
            .change
            .lock()
            .expect("the mailbox lock is never held across a panic");
        // A change still waiting is replaced by this newer one (its waiter sees it unapplied),
        // keeping its request to renew the role's credentials.
        let renew_role = renew_role || waiting.as_ref().is_some_and(|change| change.renew_role);
        *waiting = Some(Change {
            instance,
            revision,
            renew_role,
            applied,
        });
        drop(waiting);
        self.mailbox.arrived.notify_one();
        applied_receiver
    }

    /// Stops the task; requests already holding the slot finish with it.
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn keep_current(
    mut state: State,
    slot: Arc<InstanceSlot>,
    services: Services,
    mailbox: Arc<Mailbox>,
) {
    loop {
        let wait = until(
            OffsetDateTime::now_utc(),
            state.next_wake(OffsetDateTime::now_utc()),
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {
                let now = OffsetDateTime::now_utc();
                if let Err(error) = refresh_due_credentials(&mut state, &services, now).await {
                    tracing::warn!(
                        message = "Could not refresh credentials; keeping the current ones.",
                        instance_id = %state.instance.instance_id,
                        %error,
                    );
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
            () = mailbox.arrived.notified() => {
                let change = mailbox
                    .change
                    .lock()
                    .expect("the mailbox lock is never held across a panic")
                    .take();
                if let Some(Change { instance, revision, renew_role, applied }) = change {
                    if let Err(error) = replace(&mut state, instance, renew_role, &services).await {
                        tracing::warn!(
                            message = "Could not apply an instance change; serving the previous version.",
                            instance_id = %state.instance.instance_id,
                            %error,
                        );
                        continue;
                    }
                    publish(&mut state, &slot);
                    slot.mark_applied(revision);
                    let _ = applied.send(());
                }
                continue;
            }
        }
        publish(&mut state, &slot);
    }
}

fn role_request<'a>(instance: &'a Instance, role_name: &'a str) -> CredentialRequest<'a> {
    CredentialRequest {
        role_name,
        instance_id: &instance.instance_id,
    }
}

fn publish(state: &mut State, slot: &InstanceSlot) {
    match state.next_source() {
        Ok(source) => slot.replace_source(source),
        Err(error) => tracing::warn!(
            message = "Could not build a snapshot; serving the previous one.",
            instance_id = %state.instance.instance_id,
            %error,
        ),
    }
}

async fn refresh_due_credentials(
    state: &mut State,
    services: &Services,
    now: OffsetDateTime,
) -> Result<(), PrepareError> {
    if let (Some(profile), Some(role)) = (&state.instance.iam, &state.role) {
        if role.refresh_at <= now {
            let request = role_request(&state.instance, &profile.role_name);
            state.role = Some(services.roles.get(request, now).await);
        }
    }
    if state.identity_credentials.refresh_at <= now {
        state.identity_credentials = services
            .identity_credentials(&state.instance.instance_id, now)
            .await?;
    }
    Ok(())
}

async fn replace(
    state: &mut State,
    instance: Arc<Instance>,
    renew_role: bool,
    services: &Services,
) -> Result<(), PrepareError> {
    let now = OffsetDateTime::now_utc();
    if SignedIdentity::document(&instance) != SignedIdentity::document(&state.instance) {
        state.identity = Arc::new(LazyIdentity::new(services.signer.clone()));
    }
    let old_role = state
        .instance
        .iam
        .as_ref()
        .map(|profile| profile.role_name.as_str());
    let new_role = instance
        .iam
        .as_ref()
        .map(|profile| profile.role_name.as_str());
    if old_role != new_role || renew_role {
        state.role = match new_role {
            Some(role_name) => Some(
                services
                    .roles
                    .get(role_request(&instance, role_name), now)
                    .await,
            ),
            None => None,
        };
    }
    state.instance = instance;
    Ok(())
}
