//! The EKS Pod Identity associations the endpoint serves (`Associations`): which role the pods
//! of a service account get, from the config file's `[[pod-identity-associations]]` and the
//! control API, kept in the store and shared by every host of a fleet (a fleet is one cluster,
//! as an EKS cluster's associations are seen by the agent on every node).
//!
//! At start the file's associations are written to the store (`load`): one whose service
//! account has a stored association keeps that association's id, so a file entry takes over an
//! association made through the control API for the same service account; associations an
//! earlier start of this host wrote from its file, and that the file no longer names, are
//! removed. Associations created through the control API stay until deleted.
//!
//! The list in force is behind an `ArcSwap`: the endpoint loads it without a lock. A write
//! changes the store first and then reads the store's list again, so the list served is the
//! store's, other hosts' writes included; in fleet mode the change feed brings other hosts'
//! writes (`reload`).

use std::sync::Arc;

use arc_swap::ArcSwap;
use imds_store::{AssociationRecord, AssociationWrite, Store, StoreError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::container_api::pod_identity::Association;

/// Where an association came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssociationOrigin {
    /// A config file's `[[pod-identity-associations]]`.
    Config,
    /// The control API.
    Api,
}

/// One association as served: its id, the service account and role, and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The association id: `a-` and 17 lowercase letters and digits, as EKS gives.
    pub association_id: String,
    /// The service account and its role.
    pub association: Association,
    /// Where it came from.
    pub origin: AssociationOrigin,
    /// Bumped by every write.
    pub revision: i64,
}

/// The stored `spec` of an association: what is not a column of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct StoredSpec {
    role: String,
    origin: AssociationOrigin,
    /// The host whose config file gave it (fleet mode); absent in host mode and for the
    /// control API's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_host: Option<String>,
}

/// Why the associations could not be loaded.
#[derive(Debug, Error)]
pub enum AssociationLoadError {
    /// A configured association is not valid or cannot be stored; the message names the
    /// entry (`pod-identity-associations[0].role: ...`).
    #[error("{0}")]
    Config(String),
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

/// Why an association write was refused.
#[derive(Debug, Error)]
pub enum AssociationWriteError {
    /// A name is not valid; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// No such association.
    #[error("the pod identity association {0} does not exist")]
    NotFound(String),
    /// The service account has an association already.
    #[error("{0}")]
    Conflict(String),
    /// The store failed or is unavailable; nothing was changed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AssociationWriteError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => AssociationWriteError::Conflict(message),
            StoreError::AssociationNotFound(id) => AssociationWriteError::NotFound(id),
            other => AssociationWriteError::Store(other),
        }
    }
}

/// Checks an association's names: Kubernetes names and an IAM role name; the message names the
/// field (`namespace`, `service-account`, `role`).
pub fn check(association: &Association) -> Result<(), String> {
    imds_core::kubernetes_name::check_namespace(&association.namespace)
        .map_err(|error| format!("namespace: {error}"))?;
    imds_core::kubernetes_name::check_service_account(&association.service_account)
        .map_err(|error| format!("service-account: {error}"))?;
    imds_core::role_name::check_role_name(&association.role_name)
        .map_err(|error| format!("role: {error}"))
}

/// A new association id: `a-` and 17 lowercase letters and digits (EKS's form).
fn new_association_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..17)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("a-{tail}")
}

/// The associations in force, and how they are changed. Clones share the list.
#[derive(Clone)]
pub struct Associations {
    inner: Arc<Inner>,
}

struct Inner {
    list: ArcSwap<Vec<Registered>>,
    /// Where they are kept; `None`: a list that cannot be changed.
    store: Option<Arc<dyn Store>>,
    /// Held by each write, from its store write to its swap, so that an older list never
    /// replaces a newer one.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Associations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Associations")
            .field("associations", &self.inner.list.load().len())
            .finish_non_exhaustive()
    }
}

impl Associations {
    /// `associations`, which cannot be changed (ids are made up).
    pub fn fixed(associations: Vec<Association>) -> Associations {
        let list = associations
            .into_iter()
            .map(|association| Registered {
                association_id: new_association_id(),
                association,
                origin: AssociationOrigin::Config,
                revision: 1,
            })
            .collect();
        Associations::with(list, None)
    }

    /// None yet, changed through `store`; `reload` reads what it holds.
    pub fn empty(store: Arc<dyn Store>) -> Associations {
        Associations::with(Vec::new(), Some(store))
    }

    fn with(list: Vec<Registered>, store: Option<Arc<dyn Store>>) -> Associations {
        Associations {
            inner: Arc::new(Inner {
                list: ArcSwap::from_pointee(list),
                store,
                writing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Writes the configured `associations` to `store` (`host_id`: this host, in fleet mode)
    /// and serves the store's list: see the module's documentation. An error names the
    /// `pod-identity-associations[INDEX]` entry at fault.
    pub async fn load(
        store: Arc<dyn Store>,
        host_id: Option<&str>,
        configured: &[Association],
    ) -> Result<Associations, AssociationLoadError> {
        let associations = Associations::empty(store);
        associations.apply_configured(host_id, configured).await?;
        Ok(associations)
    }

    /// Makes the store's associations of the config file `configured` (a reload's, or the
    /// start's; `host_id`: this host, in fleet mode) and serves the store's list. Entries are
    /// checked before anything is written; a store failure part-way leaves what came before
    /// it written.
    pub async fn apply_configured(
        &self,
        host_id: Option<&str>,
        configured: &[Association],
    ) -> Result<(), AssociationLoadError> {
        for (index, association) in configured.iter().enumerate() {
            check(association).map_err(|error| {
                AssociationLoadError::Config(format!("pod-identity-associations[{index}].{error}"))
            })?;
        }
        let Some(store) = &self.inner.store else {
            return Err(AssociationLoadError::Config(
                "this server's pod identity associations cannot be changed".to_owned(),
            ));
        };
        let records = store.list_associations().await?;
        let stored: Vec<(AssociationRecord, Option<StoredSpec>)> = records
            .into_iter()
            .map(|record| {
                let spec = serde_json::from_str::<StoredSpec>(&record.spec).ok();
                (record, spec)
            })
            .collect();
        for (index, association) in configured.iter().enumerate() {
            let key = format!("pod-identity-associations[{index}]");
            let spec = StoredSpec {
                role: association.role_name.clone(),
                origin: AssociationOrigin::Config,
                config_host: host_id.map(str::to_owned),
            };
            let previous = stored.iter().find(|(record, _)| {
                record.namespace == association.namespace
                    && record.service_account == association.service_account
            });
            if previous.is_some_and(|(_, stored_spec)| stored_spec.as_ref() == Some(&spec)) {
                continue;
            }
            let write = AssociationWrite {
                association_id: previous.map_or_else(new_association_id, |(record, _)| {
                    record.association_id.clone()
                }),
                namespace: association.namespace.clone(),
                service_account: association.service_account.clone(),
                spec: serde_json::to_string(&spec).expect("an association always serialises"),
            };
            let written = match store.put_association(write.clone()).await {
                // Another host of a fleet wrote an association for this service account since
                // the listing (its config file names it too): take that one over.
                Err(StoreError::Conflict(_)) => {
                    let taken = store.list_associations().await?.into_iter().find(|record| {
                        record.namespace == write.namespace
                            && record.service_account == write.service_account
                    });
                    match taken {
                        Some(record) => {
                            store
                                .put_association(AssociationWrite {
                                    association_id: record.association_id,
                                    ..write
                                })
                                .await
                        }
                        None => store.put_association(write).await,
                    }
                }
                other => other,
            };
            written.map_err(|error| match error {
                StoreError::Conflict(message) => {
                    AssociationLoadError::Config(format!("{key}: {message}"))
                }
                other => AssociationLoadError::Store(other),
            })?;
        }
        for (record, spec) in &stored {
            let from_this_file = spec.as_ref().is_some_and(|spec| {
                spec.origin == AssociationOrigin::Config && spec.config_host.as_deref() == host_id
            });
            let still_named = configured.iter().any(|association| {
                association.namespace == record.namespace
                    && association.service_account == record.service_account
            });
            if from_this_file && !still_named {
                match store.delete_association(&record.association_id).await {
                    Ok(()) | Err(StoreError::AssociationNotFound(_)) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        self.reload().await?;
        Ok(())
    }

    /// Every association, ordered by namespace and service account; lock-free.
    pub fn list(&self) -> Arc<Vec<Registered>> {
        self.inner.list.load_full()
    }

    /// The role of the service account `name` in `namespace`, if it has an association.
    pub fn role_of(&self, namespace: &str, name: &str) -> Option<Association> {
        self.inner
            .list
            .load()
            .iter()
            .find(|registered| {
                registered.association.namespace == namespace
                    && registered.association.service_account == name
            })
            .map(|registered| registered.association.clone())
    }

    /// The association `association_id`.
    pub fn get(&self, association_id: &str) -> Option<Registered> {
        self.inner
            .list
            .load()
            .iter()
            .find(|registered| registered.association_id == association_id)
            .cloned()
    }

    fn store(&self) -> Result<&Arc<dyn Store>, AssociationWriteError> {
        self.inner.store.as_ref().ok_or_else(|| {
            AssociationWriteError::Store(StoreError::Config(
                "this server's pod identity associations cannot be changed".to_owned(),
            ))
        })
    }

    /// Creates an association (origin API): served once this returns.
    pub async fn create(
        &self,
        association: Association,
    ) -> Result<Registered, AssociationWriteError> {
        check(&association).map_err(AssociationWriteError::Invalid)?;
        let store = self.store()?;
        let _writing = self.inner.writing.lock().await;
        let record = store
            .create_association(api_write(new_association_id(), &association))
            .await?;
        let registered = api_registered(record, association);
        self.swap_from_store(store, |list| list.push(registered.clone()))
            .await;
        Ok(registered)
    }

    /// Gives the association `association_id` the role `role_name` (its origin becomes the
    /// control API's: the next start does not remove it): served once this returns.
    pub async fn update(
        &self,
        association_id: &str,
        role_name: &str,
    ) -> Result<Registered, AssociationWriteError> {
        imds_core::role_name::check_role_name(role_name)
            .map_err(|error| AssociationWriteError::Invalid(format!("role: {error}")))?;
        let store = self.store()?;
        let _writing = self.inner.writing.lock().await;
        let Some(current) = self.get(association_id) else {
            return Err(AssociationWriteError::NotFound(association_id.to_owned()));
        };
        let mut association = current.association;
        association.role_name = role_name.to_owned();
        let record = store
            .put_association(api_write(association_id.to_owned(), &association))
            .await?;
        let registered = api_registered(record, association);
        self.swap_from_store(store, |list| {
            list.retain(|entry| entry.association_id != association_id);
            list.push(registered.clone());
        })
        .await;
        Ok(registered)
    }

    /// Deletes the association `association_id`: no longer served once this returns.
    pub async fn delete(&self, association_id: &str) -> Result<(), AssociationWriteError> {
        let store = self.store()?;
        let _writing = self.inner.writing.lock().await;
        store.delete_association(association_id).await?;
        self.swap_from_store(store, |list| {
            list.retain(|entry| entry.association_id != association_id);
        })
        .await;
        Ok(())
    }

    /// After a write: serves the store's list, other hosts' writes included; if the store
    /// cannot be read just now, the list served with `change` applied (the write itself is
    /// durable, and the next read brings the rest).
    async fn swap_from_store(
        &self,
        store: &Arc<dyn Store>,
        change: impl FnOnce(&mut Vec<Registered>),
    ) {
        match store.list_associations().await {
            Ok(records) => self.inner.list.store(Arc::new(served(records))),
            Err(error) => {
                tracing::warn!(
                    message = "The pod identity associations cannot be read again after a write; serving the write on its own.",
                    %error
                );
                let mut list = Vec::clone(&self.inner.list.load());
                change(&mut list);
                list.sort_by(|one, other| {
                    (&one.association.namespace, &one.association.service_account).cmp(&(
                        &other.association.namespace,
                        &other.association.service_account,
                    ))
                });
                self.inner.list.store(Arc::new(list));
            }
        }
    }

    /// Reads the associations from the store again and serves them (fleet mode: another host
    /// changed one). Stored associations that cannot be read are logged and left out.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let _writing = self.inner.writing.lock().await;
        let records = store.list_associations().await?;
        self.inner.list.store(Arc::new(served(records)));
        Ok(())
    }
}

/// The store's write of `association` as the control API makes it, with id `association_id`.
fn api_write(association_id: String, association: &Association) -> AssociationWrite {
    AssociationWrite {
        association_id,
        namespace: association.namespace.clone(),
        service_account: association.service_account.clone(),
        spec: serde_json::to_string(&StoredSpec {
            role: association.role_name.clone(),
            origin: AssociationOrigin::Api,
            config_host: None,
        })
        .expect("an association always serialises"),
    }
}

/// `association` as served once the control API's write of it is `record`.
fn api_registered(record: AssociationRecord, association: Association) -> Registered {
    Registered {
        association_id: record.association_id,
        association,
        origin: AssociationOrigin::Api,
        revision: record.revision,
    }
}

/// The stored associations that this build can read and serve.
fn served(records: Vec<AssociationRecord>) -> Vec<Registered> {
    records
        .into_iter()
        .filter_map(|record| {
            let spec = match serde_json::from_str::<StoredSpec>(&record.spec) {
                Ok(spec) => spec,
                Err(error) => {
                    tracing::warn!(message = "A stored pod identity association cannot be read; it is not served.", association_id = %record.association_id, %error);
                    return None;
                }
            };
            let association = Association {
                namespace: record.namespace,
                service_account: record.service_account,
                role_name: spec.role,
            };
            if let Err(error) = check(&association) {
                tracing::warn!(message = "A stored pod identity association is not valid; it is not served.", association_id = %record.association_id, %error);
                return None;
            }
            Some(Registered {
                association_id: record.association_id,
                association,
                origin: spec.origin,
                revision: record.revision,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let directory = tempfile::tempdir().unwrap();
        let uri = format!("sqlite:{}", directory.path().join("store.db").display());
        let store = imds_store::open(&uri).await.unwrap();
        (directory, store)
    }

    fn association(namespace: &str, service_account: &str, role: &str) -> Association {
        Association {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            role_name: role.to_owned(),
        }
    }

    fn roles(associations: &Associations) -> Vec<(String, String, String, AssociationOrigin)> {
        associations
            .list()
            .iter()
            .map(|registered| {
                (
                    registered.association.namespace.clone(),
                    registered.association.service_account.clone(),
                    registered.association.role_name.clone(),
                    registered.origin,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_file_seeds_the_store_and_the_api_adds_changes_and_deletes() {
        let (_directory, store) = store().await;
        let file = [association("shop", "cart", "cart-role")];
        let loaded = Associations::load(store.clone(), None, &file)
            .await
            .unwrap();
        let seeded = loaded.list()[0].clone();
        assert!(seeded.association_id.starts_with("a-") && seeded.association_id.len() == 19);
        assert_eq!(
            roles(&loaded),
            [(
                "shop".into(),
                "cart".into(),
                "cart-role".into(),
                AssociationOrigin::Config
            )]
        );

        let created = loaded
            .create(association("shop", "pay", "pay-role"))
            .await
            .unwrap();
        assert_eq!(created.origin, AssociationOrigin::Api);
        assert_eq!(loaded.role_of("shop", "pay").unwrap().role_name, "pay-role");
        // One association per service account.
        assert!(matches!(
            loaded.create(association("shop", "pay", "other")).await,
            Err(AssociationWriteError::Conflict(_))
        ));
        // Names are checked before the store is asked.
        assert!(matches!(
            loaded.create(association("Shop", "pay", "r")).await,
            Err(AssociationWriteError::Invalid(message)) if message.starts_with("namespace:")
        ));

        let updated = loaded
            .update(&created.association_id, "pay-role-2")
            .await
            .unwrap();
        assert_eq!(updated.revision, 2);
        assert_eq!(
            loaded.role_of("shop", "pay").unwrap().role_name,
            "pay-role-2"
        );
        assert!(matches!(
            loaded.update("a-00000000000000000", "r").await,
            Err(AssociationWriteError::NotFound(_))
        ));

        // A restart with the same file keeps the ids; the API's association stays.
        let again = Associations::load(store.clone(), None, &file)
            .await
            .unwrap();
        assert_eq!(again.list().len(), 2);
        assert_eq!(
            again.get(&seeded.association_id).unwrap().revision,
            seeded.revision,
            "an unchanged file entry is not written again"
        );
        assert!(again.get(&created.association_id).is_some());

        // A restart whose file no longer names its entry removes it, and a file entry for the
        // API's service account takes that association over, keeping its id.
        let next = [association("shop", "pay", "from-file")];
        let after = Associations::load(store.clone(), None, &next)
            .await
            .unwrap();
        assert_eq!(
            roles(&after),
            [(
                "shop".into(),
                "pay".into(),
                "from-file".into(),
                AssociationOrigin::Config
            )]
        );
        assert_eq!(after.list()[0].association_id, created.association_id);

        after.delete(&created.association_id).await.unwrap();
        assert!(after.role_of("shop", "pay").is_none());
        assert!(matches!(
            after.delete(&created.association_id).await,
            Err(AssociationWriteError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_bad_file_entry_is_named() {
        let (_directory, store) = store().await;
        let file = [
            association("shop", "cart", "r"),
            association("shop", "cart", "bad role"),
        ];
        let error = Associations::load(store, None, &file)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("pod-identity-associations[1].role:"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn fixed_associations_cannot_be_changed() {
        let fixed = Associations::fixed(vec![association("shop", "cart", "r")]);
        assert_eq!(fixed.role_of("shop", "cart").unwrap().role_name, "r");
        assert!(matches!(
            fixed.create(association("shop", "pay", "r")).await,
            Err(AssociationWriteError::Store(StoreError::Config(_)))
        ));
    }
}
