//! Credentials as served: rendered once into the JSON IMDS answers, and cached per role so that
//! every instance with the same role shares one set (and one rendering) until it is due.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use imds_core::render::aws_timestamp;
use imds_credentials::{CredentialProvider, Credentials, CredentialsError};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::wire;

/// One set of credentials, rendered as `iam/security-credentials/ROLE` answers it.
#[derive(Debug)]
pub struct RenderedCredentials {
    /// The JSON document, shared by every snapshot that serves it.
    pub json: Bytes,
    /// `AccessKeyId`, for logs.
    pub access_key_id: String,
    /// `LastUpdated`.
    pub last_updated: OffsetDateTime,
    /// When the next set is due.
    pub refresh_at: OffsetDateTime,
}

impl RenderedCredentials {
    /// Renders `credentials`; the secrets live on only inside the JSON.
    pub fn new(credentials: &Credentials) -> RenderedCredentials {
        let json = wire::to_aws_json(&wire::RoleCredentials {
            code: "Success",
            last_updated: &aws_timestamp(credentials.last_updated),
            kind: "AWS-HMAC",
            access_key_id: &credentials.access_key_id,
            secret_access_key: credentials.secret_access_key.expose(),
            token: credentials.session_token.expose(),
            expiration: &aws_timestamp(credentials.expiration),
        });
        RenderedCredentials {
            json: Bytes::from(json),
            access_key_id: credentials.access_key_id.clone(),
            last_updated: credentials.last_updated,
            refresh_at: credentials.refresh_at,
        }
    }
}

/// Role credentials, cached per role name.
#[derive(Debug)]
pub struct RoleCache {
    provider: Arc<dyn CredentialProvider>,
    /// Held across a fetch, so concurrent askers for a due role cause one fetch.
    roles: Mutex<HashMap<String, Arc<RenderedCredentials>>>,
}

impl RoleCache {
    /// A cache in front of `provider`.
    pub fn new(provider: Arc<dyn CredentialProvider>) -> RoleCache {
        RoleCache {
            provider,
            roles: Mutex::new(HashMap::new()),
        }
    }

    /// The provider behind the cache.
    pub fn provider(&self) -> &Arc<dyn CredentialProvider> {
        &self.provider
    }

    /// Current credentials of `role_name` at `now`: the cached set until it is due, then a new one.
    pub async fn get(
        &self,
        role_name: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<RenderedCredentials>, CredentialsError> {
        let mut roles = self.roles.lock().await;
        if let Some(cached) = roles.get(role_name) {
            if cached.refresh_at > now {
                return Ok(cached.clone());
            }
        }
        let fresh = Arc::new(RenderedCredentials::new(
            &self.provider.fetch(role_name, now).await?,
        ));
        tracing::info!(
            message = "Role credentials obtained.",
            role = %role_name,
            access_key_id = %fresh.access_key_id,
        );
        roles.insert(role_name.to_owned(), fresh.clone());
        Ok(fresh)
    }
}
