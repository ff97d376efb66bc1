//! Keeps an instance's snapshot current: obtains role and identity credentials from the
//! provider, rebuilds the snapshot, and does it again before the credentials are due.

use std::{sync::Arc, time::Duration};

use imds_core::instance::Instance;
use imds_credentials::{until, CredentialProvider, Credentials, CredentialsError};
use thiserror::Error;
use time::OffsetDateTime;

use crate::{
    snapshot::{Live, SignedIdentity, Snapshot},
    state::InstanceSlot,
};

/// How long to wait before asking a failing provider again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// The role name under which the instance's own identity credentials are fetched.
const IDENTITY_ROLE: &str = "ec2-instance";

/// A snapshot could not be prepared.
#[derive(Debug, Error)]
pub enum PrepareError {
    /// The credential provider failed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The instance's values do not fit in one metadata tree.
    #[error(transparent)]
    Tree(#[from] imds_core::metadata_tree::TreeError),
}

/// One instance with what its snapshots are made from.
#[derive(Debug)]
pub struct InstanceRuntime {
    /// The instance.
    pub instance: Instance,
    /// Its signed identity document.
    pub identity: SignedIdentity,
    /// Where its credentials come from.
    pub provider: Arc<dyn CredentialProvider>,
}

/// The credentials behind a snapshot.
#[derive(Debug)]
pub struct Current {
    role: Option<Credentials>,
    identity: Credentials,
}

impl Current {
    /// When the next credentials are due.
    pub fn refresh_at(&self) -> OffsetDateTime {
        match &self.role {
            Some(role) => role.refresh_at.min(self.identity.refresh_at),
            None => self.identity.refresh_at,
        }
    }
}

impl InstanceRuntime {
    /// Fetches credentials and builds a snapshot at `now`.
    pub async fn prepare(&self, now: OffsetDateTime) -> Result<(Snapshot, Current), PrepareError> {
        let role = match &self.instance.iam {
            Some(profile) => Some(self.provider.fetch(&profile.role_name, now).await?),
            None => None,
        };
        let identity = self.provider.fetch(IDENTITY_ROLE, now).await?;
        let current = Current { role, identity };
        let snapshot = self.build(&current)?;
        Ok((snapshot, current))
    }

    fn build(&self, current: &Current) -> Result<Snapshot, PrepareError> {
        Ok(Snapshot::build(
            &self.instance,
            &self.identity,
            Live {
                role_credentials: current.role.as_ref(),
                identity_credentials: &current.identity,
            },
        )?)
    }

    /// Refreshes the slot's snapshot whenever its credentials are due, forever.
    pub async fn keep_current(self, slot: Arc<InstanceSlot>, mut current: Current) {
        loop {
            let wait = until(OffsetDateTime::now_utc(), current.refresh_at());
            tokio::time::sleep(wait).await;
            match self.prepare(OffsetDateTime::now_utc()).await {
                Ok((snapshot, next)) => {
                    tracing::info!(
                        message = "Credentials rotated.",
                        instance_id = %self.instance.instance_id,
                        access_key_id = next.role.as_ref().map(|role| role.access_key_id.as_str()).unwrap_or("-"),
                    );
                    slot.publish(snapshot);
                    current = next;
                }
                Err(error) => {
                    tracing::warn!(
                        message = "Could not refresh credentials; keeping the current ones.",
                        instance_id = %self.instance.instance_id,
                        %error,
                    );
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
        }
    }
}
