//! What SIGHUP (the service unit's `ExecReload`) re-reads: the control listener's certificate,
//! and the config file.
//!
//! The file is read and checked whole, as at start, before anything changes: a file that does
//! not parse or check changes nothing, and the log names the key at fault. A file that checks is
//! applied while the server serves: its roles and instances (only what differs from the file
//! served so far, see `bootstrap::Declared::reapply`), its rate limits, its lockdown (each
//! connection's next request is decided under the new policy), its audit log's destination
//! (unless `--audit-log` gave one), its EKS Pod Identity associations (written to the store
//! as at start) and its guest listeners (`[server] listen`, unless `--listen` flags give them:
//! the addresses added are bound before anything else changes, so that one that cannot be bound
//! refuses the reload; those removed stop accepting and finish their open requests). The sections that shape listeners and long-lived helpers
//! (the container and Pod Identity endpoints, tasks, faults, `[credentials]`, `[control]`) and
//! the default instance's id
//! take effect at the next start; a reload that finds them changed says so in the log, naming
//! each. Every reload that applies a file serves the next config generation, which the log and
//! the `imds_config_generation` metric show.

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc, Mutex},
};

use anyhow::format_err;
use imds_core::spec::{Generated, OptionsSpec};
use imds_server::{
    audit::{AuditLog, Destination, Flusher},
    bootstrap::Declared,
    listener_set::GuestListeners,
    lockdown::LockdownSwitch,
    registry::Registry,
    state::AppState,
    telemetry::RequestCounters,
    throttle::Throttle,
    tls::ServerTls,
};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::{
    self, ConfigFile, ContainerEndpointFile, ContainerRouteFile, ControlFile, CredentialsFile,
    FaultFile, PodIdentityAssociationFile, PodIdentityFile, ServerFile,
};

/// What SIGHUP reloads.
#[derive(Debug, Default)]
pub struct Reloadable {
    /// The control listener's certificate and key (and client CA).
    pub tls: Option<ServerTls>,
    /// The config file, when the server was started with one.
    pub config: Option<ConfigReload>,
}

/// The config file as a reload reads it again, and what it applies it to.
#[derive(Debug)]
pub struct ConfigReload {
    /// The file (`--config`).
    pub path: PathBuf,
    /// The state directory's identifiers, which the default instance takes what it leaves out
    /// from.
    pub generated: Generated,
    /// How long STS may take, as the flags say.
    pub sts_timeouts: imds_credentials::sts::Timeouts,
    /// `--throttle-requests-per-second`, which overrides the file's default rate.
    pub throttle_flag: Option<u32>,
    /// Metadata options given as flags, laid over `[instance]`'s.
    pub option_flags: Option<OptionsSpec>,
    /// The default instance's id, fixed for the process's life.
    pub default_id: String,
    /// The served instances and roles.
    pub registry: Arc<Registry>,
    /// The guest listeners' state (the rate limits).
    pub state: Arc<AppState>,
    /// Where the config generation is shown.
    pub counters: Arc<RequestCounters>,
    /// What the file served so far declared.
    pub served: Served,
    /// The lockdown every listener enforces.
    pub lockdown: LockdownSwitch,
    /// The audit log, whose destination the file's `[audit]` gives.
    pub audit: AuditReload,
    /// The EKS Pod Identity associations, which the file's seed.
    pub associations: imds_server::container_api::Associations,
    /// This host, in fleet mode (whose file's associations these are).
    pub host_id: Option<String>,
    /// The guest listeners, which the file's `[server] listen` gives; `None` when `--listen`
    /// flags gave them.
    pub listeners: Option<Arc<GuestListeners>>,
}

/// The audit log as a reload sends it elsewhere.
#[derive(Debug)]
pub struct AuditReload {
    /// The log every listener writes to.
    pub log: AuditLog,
    /// Where it writes now.
    pub destination: Option<Destination>,
    /// True when `--audit-log` chose the destination: the file's `[audit]` is then not used.
    pub from_flag: bool,
    /// The flusher of the destination in force, dropped (and so flushed) at shutdown or when a
    /// reload replaces it.
    pub flusher: Arc<Mutex<Option<Flusher>>>,
}

impl AuditReload {
    /// Sends the records to `next` if it differs from the destination in force; the log says
    /// so. On an error nothing changes.
    fn apply(&mut self, next: Option<Destination>) -> anyhow::Result<bool> {
        if self.from_flag || next == self.destination {
            return Ok(false);
        }
        let flusher = self.log.retarget(next.as_ref()).map_err(|error| {
            format_err!("audit.file: cannot open the audit log {next:?}: {error}")
        })?;
        let old = std::mem::replace(
            &mut *self
                .flusher
                .lock()
                .expect("the flusher lock is never held across a panic"),
            flusher,
        );
        // Dropping the old flusher writes out what was queued for the old destination and
        // joins its thread: off the async workers.
        tokio::task::spawn_blocking(move || drop(old));
        tracing::info!(message = "Audit log moved.", from = ?self.destination, to = ?next);
        self.destination = next;
        Ok(true)
    }
}

/// What the file served so far declared: its roles and instances, and the sections applied
/// only at start.
#[derive(Debug, Default)]
pub struct Served {
    /// Roles and instances.
    pub declared: Declared,
    /// `[[pod-identity-associations]]`.
    associations: Vec<PodIdentityAssociationFile>,
    /// `[server]`.
    server: ServerFile,
    /// The start-only sections.
    pub start_only: StartOnly,
}

impl Served {
    /// What `file` declares, before it is resolved (it is consumed by that).
    pub fn of(file: &ConfigFile, option_flags: Option<&OptionsSpec>) -> Served {
        Served {
            declared: Declared::new(
                file.roles.clone(),
                file.instance.clone(),
                file.instances.clone(),
                option_flags,
            ),
            associations: file.pod_identity_associations.clone(),
            server: file.server.clone(),
            start_only: StartOnly::of(file),
        }
    }
}

/// The sections a reload does not apply, as the file gave them.
#[derive(Debug, Default)]
pub struct StartOnly {
    credentials: CredentialsFile,
    container_credentials: Vec<ContainerRouteFile>,
    container_endpoint: ContainerEndpointFile,
    pod_identity: PodIdentityFile,
    tasks: Vec<imds_core::task::spec::TaskSpec>,
    faults: Vec<FaultFile>,
    control: ControlFile,
}

impl StartOnly {
    fn of(file: &ConfigFile) -> StartOnly {
        StartOnly {
            credentials: file.credentials.clone(),
            container_credentials: file.container_credentials.clone(),
            container_endpoint: file.container_endpoint.clone(),
            pod_identity: file.pod_identity.clone(),
            tasks: file.tasks.clone(),
            faults: file.faults.clone(),
            control: file.control.clone(),
        }
    }

    /// The keys of the sections that differ between `self` and `next`.
    fn changed(&self, next: &StartOnly) -> Vec<&'static str> {
        [
            ("credentials", self.credentials == next.credentials),
            (
                "container-credentials",
                self.container_credentials == next.container_credentials,
            ),
            (
                "container-endpoint",
                self.container_endpoint == next.container_endpoint,
            ),
            ("pod-identity", self.pod_identity == next.pod_identity),
            ("tasks", self.tasks == next.tasks),
            ("faults", self.faults == next.faults),
            ("control", self.control == next.control),
        ]
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(key, _)| key)
        .collect()
    }
}

/// The rate limits the file and the flag give.
pub fn throttle_of(mut throttle: Throttle, flag: Option<u32>) -> Throttle {
    if let Some(per_second) = flag {
        throttle.default =
            std::num::NonZeroU32::new(per_second).map(|per_second| imds_server::throttle::Rate {
                per_second,
                burst: per_second,
            });
    }
    throttle
}

impl ConfigReload {
    /// Reads, checks and applies the file; on success, the generation now served.
    async fn reload(&mut self) -> anyhow::Result<u64> {
        let file = config::read(&self.path)?;
        let mut next = Served::of(&file, self.option_flags.as_ref());
        let config = file
            .resolve_with(&self.generated, self.sts_timeouts)
            .map_err(|error| error.context(format!("invalid config in {}", self.path.display())))?;
        let mut at_next_start = self.served.start_only.changed(&next.start_only);
        if config.default_instance.instance_id != self.default_id {
            // The id is the default instance's identity for every listener: kept until a restart.
            at_next_start.push("instance.instance-id");
            next.declared
                .default_spec
                .clone_from(&self.served.declared.default_spec);
        }
        // What can fail is done before anything is published: the new guest listeners are
        // bound and the lockdown's lookup thread is started, then the audit log opened, and only
        // then the lockdown enforced.
        let listeners = match &self.listeners {
            Some(set) => {
                let wanted = config
                    .listen
                    .clone()
                    .unwrap_or_else(|| vec![config::DEFAULT_LISTEN]);
                let bound = set
                    .bind(&wanted)
                    .map_err(|error| format_err!("server.listen: {error}"))?;
                Some((set, bound))
            }
            None => {
                if self.served.server != next.server {
                    tracing::warn!(
                        message = "The file's server.listen changed but is not used: --listen flags give the listeners.",
                    );
                }
                None
            }
        };
        let lockdown_changed = config.lockdown != self.lockdown.policy();
        let lockdown = lockdown_changed
            .then(|| self.lockdown.prepare(config.lockdown.clone()))
            .transpose()
            .map_err(|error| format_err!("lockdown: cannot start the caller lookups: {error}"))?;
        let audit_moved = self.audit.apply(config.audit.clone())?;
        if let Some(lockdown) = lockdown {
            self.lockdown.install(lockdown);
            match &config.lockdown {
                Some(policy) => tracing::info!(
                    message = "Lockdown changed.",
                    users = ?policy.users,
                    credential_users = ?policy.credential_users,
                ),
                None => tracing::info!(message = "Lockdown off."),
            }
        }
        let applied = self
            .served
            .declared
            .reapply(
                &next.declared,
                &self.registry,
                &self.default_id,
                &self.generated,
            )
            .await
            .map_err(|error| {
                format_err!(
                    "{error} (in {}; what came before it is applied)",
                    self.path.display()
                )
            })?;
        let associations_changed = self.served.associations != next.associations;
        if associations_changed {
            self.associations
                .apply_configured(self.host_id.as_deref(), &config.pod_identity_associations)
                .await
                .map_err(|error| {
                    format_err!(
                        "{error} (in {}; the roles and instances are applied)",
                        self.path.display()
                    )
                })?;
        }
        let mut throttle = throttle_of(config.throttle, self.throttle_flag);
        let current = self.state.throttle.load();
        let throttle_changed =
            throttle.default != current.default || throttle.instances != current.instances;
        if throttle_changed {
            throttle.generation = current.generation + 1;
            self.state.throttle.store(Arc::new(throttle));
        }
        let mut listeners_changed = imds_server::listener_set::Changed::default();
        if let Some((set, bound)) = listeners {
            listeners_changed = set.apply(bound)?;
            for address in &listeners_changed.opened {
                tracing::info!(message = "Listening.", address = %address);
            }
            for address in &listeners_changed.closed {
                tracing::info!(message = "Listener closed.", address = %address);
            }
        }
        self.served = next;
        let generation = self
            .counters
            .config_generation
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        tracing::info!(
            message = "Config reloaded.",
            generation,
            path = %self.path.display(),
            roles_put = applied.roles_put,
            roles_removed = applied.roles_removed,
            instances_put = applied.instances_put,
            instances_removed = applied.instances_removed,
            throttle_changed,
            lockdown_changed,
            audit_moved,
            associations_changed,
            listeners_opened = listeners_changed.opened.len(),
            listeners_closed = listeners_changed.closed.len(),
        );
        if !at_next_start.is_empty() {
            tracing::warn!(
                message = "Changed keys that take effect at the next start.",
                keys = ?at_next_start,
            );
        }
        Ok(generation)
    }
}

impl Reloadable {
    /// Reads again what can be read again; what fails to load stays as it was, and says why.
    pub async fn reload(&mut self) {
        tracing::info!(message = "Reloading.", signal = "SIGHUP");
        crate::service_manager::reloading();
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!(
                    message = "Control API certificate reloaded.",
                    certificate = %tls.files().certificate.display(),
                ),
                Err(error) => tracing::error!(
                    message = "Control API certificate not reloaded; the one served so far stays.",
                    %error,
                ),
            }
        }
        if let Some(config) = &mut self.config {
            if let Err(error) = config.reload().await {
                config
                    .counters
                    .config_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    message = "Config not reloaded; the generation served so far stays.",
                    generation = config.counters.config_generation.load(Ordering::Relaxed),
                    error = format!("{error:#}"),
                );
            }
        }
        crate::service_manager::reloaded();
    }

    /// Reloads on every SIGHUP `hangup` hears, one reload at a time, until the task is dropped.
    pub fn on_hangup(mut self, mut hangup: Signal) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                self.reload().await;
            }
        })
    }
}

/// Starts hearing SIGHUP, whose default action would end the process: done before the server
/// says it serves, so that a reload asked for as soon as it does is heard (and queued until the
/// reloader runs).
pub fn hear_hangup() -> anyhow::Result<Signal> {
    signal(SignalKind::hangup()).map_err(|error| format_err!("cannot watch SIGHUP: {error}"))
}
