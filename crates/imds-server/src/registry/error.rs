//! What can go wrong with a change, in terms the control API answers with.

use imds_store::StoreError;
use thiserror::Error;

/// A change could not be made.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// No such instance.
    #[error("instance {0} is not registered")]
    NotFound(String),
    /// No such role (it has no provider of its own).
    #[error("role {0} has no provider of its own")]
    RoleNotFound(String),
    /// The change conflicts with what is registered (id or address taken, stale revision).
    #[error("{0}")]
    Conflict(String),
    /// The description is not valid; the message names the key.
    #[error("{0}")]
    Invalid(String),
    /// The store failed or is unreachable; nothing was changed, and trying again may succeed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store failed in a way that trying again will not mend (its configuration, or data
    /// this build cannot read); the message is for the log.
    #[error("the store failed: {0}")]
    Store(String),
}

impl From<StoreError> for RegistryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => RegistryError::NotFound(id),
            StoreError::RoleNotFound(name) => RegistryError::RoleNotFound(name),
            // Tasks and associations are written by their own tables, not through instance
            // changes.
            StoreError::TaskNotFound(id) => {
                RegistryError::Store(format!("task {id} is not registered"))
            }
            StoreError::AssociationNotFound(id) => {
                RegistryError::Store(format!("pod identity association {id} does not exist"))
            }
            StoreError::Conflict(message) => RegistryError::Conflict(message),
            StoreError::Unavailable(message) => RegistryError::Unavailable(message),
            StoreError::Config(message) => RegistryError::Store(message),
            StoreError::Other(error) => RegistryError::Store(error.to_string()),
        }
    }
}
