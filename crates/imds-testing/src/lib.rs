//! imds inside a Rust test's own process.
//!
//! [`Imds::builder`] starts the same server `imds serve` runs, on ephemeral loopback ports and
//! without a binary, a config file, a state directory or root: a guest listener on
//! `127.0.0.1:0` that answers every caller as one default instance (as `imds serve` answers
//! loopback callers when no instance claims them), and a control-API listener on another
//! ephemeral port. Its keys, admin token and store (SQLite in a temporary directory) are made
//! for it and end with it.
//!
//! The handle gives the guest endpoint for `AWS_EC2_METADATA_SERVICE_ENDPOINT` or an SDK's IMDS
//! client ([`Imds::endpoint`]), and the control API as typed calls ([`Imds::control`], an
//! [`AdminClient`] over the API's own request and response types, re-exported in [`model`]):
//! register and change instances, change metadata options, post events, inject and clear faults,
//! set a role's provider. [`Imds::stop`] shuts it down and waits until its ports are closed;
//! dropping the handle asks for the same shutdown without waiting.
//!
//! # Example
//!
//! A Spot interruption staged against a client that reads `spot/instance-action` with a session
//! token (here a few lines of HTTP/1.1 on a socket, standing for the code under test):
//!
//! ```
//! use imds_testing::{model::{EventType, PostEvent, SpotAction}, Imds, InstanceSpec};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! /// Sends one request and returns the answer's status line, headers and body as text.
//! async fn http(address: std::net::SocketAddr, request: &str) -> String {
//!     let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
//!     stream.write_all(request.as_bytes()).await.unwrap();
//!     let mut answer = String::new();
//!     stream.read_to_string(&mut answer).await.unwrap();
//!     answer
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let imds = Imds::builder()
//!     .instance(InstanceSpec {
//!         instance_id: Some("i-0123456789abcdef0".into()),
//!         ..InstanceSpec::default()
//!     })
//!     .start()
//!     .await?;
//! // What the application under test would be given.
//! assert!(imds.endpoint().starts_with("http://127.0.0.1:"));
//!
//! let token = http(
//!     imds.address(),
//!     "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
//!      X-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n",
//! )
//! .await;
//! assert!(token.starts_with("HTTP/1.1 200"), "{token}");
//! let token = token.split("\r\n\r\n").nth(1).unwrap().to_owned();
//! let get = |path: &str| {
//!     format!(
//!         "GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n\
//!          X-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"
//!     )
//! };
//! let id = http(imds.address(), &get("/latest/meta-data/instance-id")).await;
//! assert!(id.ends_with("\r\n\r\ni-0123456789abcdef0"), "{id}");
//!
//! // No interruption yet: EC2 answers 404.
//! let action = http(imds.address(), &get("/latest/meta-data/spot/instance-action")).await;
//! assert!(action.starts_with("HTTP/1.1 404"), "{action}");
//!
//! // A Spot interruption, through the control API's typed call.
//! let mut event = PostEvent::new(EventType::SpotInterruption);
//! event.action = Some(SpotAction::Stop);
//! imds.control().post_event(imds.instance_id(), &event).await?;
//!
//! let action = http(imds.address(), &get("/latest/meta-data/spot/instance-action")).await;
//! assert!(action.starts_with("HTTP/1.1 200"), "{action}");
//! assert!(action.contains(r#""action":"stop""#), "{action}");
//!
//! imds.stop().await?;
//! # Ok(())
//! # }
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use imds_core::{spec::Generated, token::TokenAuthority};
use imds_credentials::{by_role::ByRole, generated::GeneratedProvider, spec::ProviderSettings};
use imds_server::{
    admin_api::{self, AdminState, AdminToken},
    audit::AuditLog,
    bootstrap::{Bootstrap, BootstrapError},
    drain::Drain,
    identity::{IdentityError, IdentitySigner},
    instance::services::Services,
    registry::Settings,
    sealing::RoleCodec,
    state::AppState,
    telemetry::RequestCounters,
    throttle::Throttle,
    Limits,
};
use rand::Rng;
use thiserror::Error;
use tokio::task::JoinHandle;

pub use imds_core::spec::{IamSpec, InstanceSpec, OptionsSpec, PlacementSpec};
pub use imds_credentials::spec::RoleSpec;
pub use imds_server::admin_api::client::{AdminClient, ClientError};

/// The control API's request and response types, for [`Imds::control`]'s calls.
pub mod model {
    pub use imds_server::admin_api::model::*;
}

/// How long `generated` and `static` credentials last when their role gives no lifetime, as
/// with `imds serve`'s default `[credentials]`.
const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// How long [`Imds::stop`] waits for open connections to finish their answers.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starting or stopping an in-process imds failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The identity document's signing key could not be made.
    #[error("cannot make the identity signing key: {0}")]
    Keys(#[from] IdentityError),
    /// The temporary directory for the store could not be made.
    #[error("cannot make a directory for the store: {0}")]
    Directory(std::io::Error),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] imds_store::StoreError),
    /// The default instance cannot be served as given (the message names the field).
    #[error("{0}")]
    Instance(#[from] BootstrapError),
    /// A loopback port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A role given to the builder was refused by the control API (the message names the
    /// field), or the API could not be reached.
    #[error("role {name}: {source}")]
    Role {
        /// The role's name.
        name: String,
        /// The control API's answer.
        source: ClientError,
    },
    /// A listener stopped with an error.
    #[error("the guest listener failed: {0}")]
    Serve(std::io::Error),
    /// A listener's task ended abnormally (it panicked).
    #[error("a listener's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What to start: the default instance and the roles it and others use.
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct ImdsBuilder {
    instance: Option<InstanceSpec>,
    roles: Vec<(String, RoleSpec)>,
}

impl ImdsBuilder {
    /// The default instance, which answers every caller that no registered instance claims;
    /// what it leaves out is generated as `imds serve` does (a random instance id, account,
    /// network interface, ...). Without it, the whole description is generated.
    pub fn instance(mut self, spec: InstanceSpec) -> ImdsBuilder {
        self.instance = Some(spec);
        self
    }

    /// Sets `name`'s provider, as `PUT /v1/roles/{name}` does: e.g. `static` credentials given
    /// in the spec, or `generated` ones with a lifetime. A role without one gets generated
    /// credentials. Its instances name it in `iam.role-name`.
    pub fn role(mut self, name: &str, spec: RoleSpec) -> ImdsBuilder {
        self.roles.push((name.to_owned(), spec));
        self
    }

    /// Starts the server on ephemeral loopback ports; it serves until the handle is stopped or
    /// dropped. Must be awaited inside a Tokio runtime (with its I/O and time drivers), which
    /// runs the server's tasks.
    pub async fn start(self) -> Result<Imds, Error> {
        let directory = tempfile::Builder::new()
            .prefix("imds-testing")
            .tempdir()
            .map_err(Error::Directory)?;
        let store = imds_store::SqliteStore::open_path(&directory.path().join("imds.db")).await?;
        let store: Arc<dyn imds_store::Store> = Arc::new(store);
        let mut key = [0u8; imds_core::token::KEY_LENGTH];
        rand::rng().fill(&mut key[..]);
        let admin_token = random_token();
        let generated = Generated::random();
        let mut default_spec = self.instance.unwrap_or_default();
        let default_id = default_spec
            .instance_id
            .get_or_insert_with(|| generated.instance_id.clone())
            .clone();
        let settings = ProviderSettings::with_lifetime(CREDENTIAL_LIFETIME);
        let providers = Arc::new(ByRole::new(
            Arc::new(GeneratedProvider::new(CREDENTIAL_LIFETIME)),
            Default::default(),
        ));
        let services =
            Services::with_settings(Arc::new(IdentitySigner::generate()?), providers, settings);
        let started = Bootstrap {
            store,
            services,
            codec: RoleCodec::new(None),
            settings: Settings {
                explicit_default: true,
                ..Settings::default()
            },
            host_id: None,
            roles: Vec::new(),
            default_id: default_id.clone(),
            default_spec: Some(default_spec),
            default_generated: generated,
            option_flags: None,
            instances: Vec::new(),
        }
        .run()
        .await?;
        let registry = started.registry;

        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let bind = |address| {
            imds_server::bind(address).map_err(|source| Error::Listen { address, source })
        };
        let guest_listener = bind(loopback)?;
        let admin_listener = bind(loopback)?;
        let local = |listener: &std::net::TcpListener| {
            listener.local_addr().map_err(|source| Error::Listen {
                address: loopback,
                source,
            })
        };
        let address = local(&guest_listener)?;
        let control_address = local(&admin_listener)?;

        let requests = Arc::new(RequestCounters::default());
        let admin_state = AdminState {
            requests: requests.clone(),
            ..AdminState::new(registry.clone(), Some(default_id.clone()))
        };
        let admin = tokio::spawn(admin_api::serve(
            admin_listener,
            admin_state,
            AdminToken::new(&admin_token).into(),
            None,
            imds_server::drain::Watch::never(),
        ));
        let state = Arc::new(AppState {
            tokens: TokenAuthority::new(&key),
            registry,
            lockdown: imds_server::lockdown::LockdownSwitch::default(),
            throttle: arc_swap::ArcSwap::from_pointee(Throttle::unlimited()),
            audit: AuditLog::off(),
            requests,
        });
        let drain = Drain::new();
        imds_server::start(vec![guest_listener], state, Limits::default(), &drain)
            .map_err(Error::Serve)?;
        let imds = Imds {
            address,
            endpoint: format!("http://{address}"),
            instance_id: default_id,
            control: AdminClient::new(&format!("http://{control_address}"), admin_token),
            drain: Some(drain),
            admin: Some(admin),
            _directory: directory,
        };
        for (name, spec) in &self.roles {
            imds.control
                .put_role(name, spec)
                .await
                .map_err(|source| Error::Role {
                    name: name.clone(),
                    source,
                })?;
        }
        Ok(imds)
    }
}

/// A random admin token: 32 bytes as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A running in-process imds. Dropping it stops it (see [`Imds::stop`]).
pub struct Imds {
    address: SocketAddr,
    endpoint: String,
    instance_id: String,
    control: AdminClient,
    drain: Option<Drain>,
    admin: Option<JoinHandle<std::io::Result<()>>>,
    _directory: tempfile::TempDir,
}

impl std::fmt::Debug for Imds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imds")
            .field("endpoint", &self.endpoint)
            .field("control", &self.control.endpoint())
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl Imds {
    /// What to start.
    pub fn builder() -> ImdsBuilder {
        ImdsBuilder::default()
    }

    /// The guest endpoint, `http://127.0.0.1:PORT`: the value of
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, or of an SDK IMDS client's endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The guest listener's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The default instance's id, for the control API's per-instance calls.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The control API, authorised, as typed calls.
    pub fn control(&self) -> &AdminClient {
        &self.control
    }

    /// Stops serving and waits until both listeners are closed (their ports free). Connections
    /// already accepted end when their clients close them.
    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(drain) = self.drain.take() {
            drain.drain(STOP_TIMEOUT).await;
        }
        if let Some(admin) = self.admin.take() {
            admin.abort();
            match admin.await {
                Err(error) if !error.is_cancelled() => return Err(Error::Task(error)),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Drop for Imds {
    /// Asks both listeners to stop; they close on the runtime's next turn (or when the runtime
    /// ends). [`Imds::stop`] waits for it.
    fn drop(&mut self) {
        // A dropped drain tells its listeners to stop as `drain` does, without waiting.
        self.drain.take();
        if let Some(admin) = self.admin.take() {
            admin.abort();
        }
    }
}
