//! `imds serve`: config → state directory → store → registry → listeners, until a signal.

use arc_swap::ArcSwap;
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{format_err, Context};
use imds_core::{spec::OptionsSpec, token::TokenAuthority};
use imds_server::{
    admin_api::{AdminState, AdminToken, Tokens},
    audit::{AuditLog, Destination},
    bootstrap::{Bootstrap, BootstrapError},
    container_api::{
        pod_identity::PodIdentityEndpoint,
        service_account_token::{SigningKey, TokenKeys},
        ContainerEndpoint, Guard, Principal,
    },
    credentials::RoleCache,
    instance::{services::Services, slot::Counters},
    listener_set::GuestListeners,
    registry::{Registry, Settings},
    scenario::Scenarios,
    sealing::RoleCodec,
    state::AppState,
    telemetry::RequestCounters,
    Limits,
};

use crate::{
    admin_token,
    cli::ServeArgs,
    config::{self, ConfigFile},
    control_plane,
    error::UsageError,
    reload::Reloadable,
    scenario_file,
    shared_keys::StoreKey,
    state_dir::StateDir,
};

/// The metadata-option flags of `serve`, as a description's `metadata-options`.
fn option_flags(args: &ServeArgs) -> Option<OptionsSpec> {
    let flags = OptionsSpec {
        http_tokens: args.http_tokens.map(|value| value.to_string()),
        http_endpoint: args.http_endpoint.map(|value| value.to_string()),
        http_put_response_hop_limit: args
            .http_put_response_hop_limit
            .map(|limit| u32::from(limit.get())),
        http_protocol_ipv6: args.http_protocol_ipv6.map(|value| value.to_string()),
        instance_metadata_tags: args.instance_metadata_tags.map(|value| value.to_string()),
    };
    (flags != OptionsSpec::default()).then_some(flags)
}

/// The guest listeners' addresses: the flags', else the file's, else the default.
fn guest_addresses(flags: &[SocketAddr], file: Option<&[SocketAddr]>) -> Vec<SocketAddr> {
    if !flags.is_empty() {
        if file.is_some() {
            tracing::info!(
                message = "--listen is given: the config file's server.listen is not used."
            );
        }
        return flags.to_vec();
    }
    file.map_or_else(|| vec![config::DEFAULT_LISTEN], <[SocketAddr]>::to_vec)
}

/// The STS timeouts the flags give.
fn sts_timeouts(args: &ServeArgs) -> imds_credentials::sts::Timeouts {
    imds_credentials::sts::Timeouts {
        attempt: Duration::from_millis(args.sts_attempt_timeout_ms),
        operation: Duration::from_millis(args.sts_timeout_ms),
    }
}

/// The store URI without a password, for messages.
pub fn redact_uri(uri: &str) -> String {
    // The store redacts the same way in its own messages.
    imds_store::redact_uri(uri)
}

/// Runs the server until SIGINT or SIGTERM, then drains it: listeners close, open requests are
/// answered (within `--shutdown-timeout`), and the audit log is flushed when its flusher drops
/// on return.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state_path = args
        .state_dir
        .clone()
        .unwrap_or_else(StateDir::default_path);
    let state = StateDir::open(&state_path)?;
    let file = match &args.config {
        Some(path) => config::read(path).map_err(UsageError)?,
        None => ConfigFile::default(),
    };
    let scenario = match &args.scenario {
        Some(path) => Some((path.clone(), scenario_file::read(path)?)),
        None => None,
    };
    let control = control_plane::resolve(&args, &file.control)?;
    let generated = state.generated()?;
    // Checks everything in the file before anything is bound or stored.
    let source = args.config.as_ref().map_or_else(
        || "the default instance".to_owned(),
        |path| path.display().to_string(),
    );
    let flags = option_flags(&args);
    let served = crate::reload::Served::of(&file, flags.as_ref());
    let default_spec = file.instance.clone();
    let config = ConfigFile {
        instance: file.instance.clone(),
        instances: file.instances.clone(),
        credentials: file.credentials,
        roles: file.roles,
        container_credentials: file.container_credentials,
        container_endpoint: file.container_endpoint,
        pod_identity: file.pod_identity,
        pod_identity_associations: file.pod_identity_associations,
        tasks: file.tasks,
        lockdown: file.lockdown,
        throttle: file.throttle,
        audit: file.audit,
        faults: file.faults,
        control: file.control,
        server: file.server,
    }
    .resolve_with(&generated, sts_timeouts(&args))
    .map_err(|error| UsageError(error.context(format!("invalid config in {source}"))))?;
    let throttle =
        crate::reload::throttle_of(config.throttle.clone(), args.throttle_requests_per_second);
    let audit_destination = match args.audit_log.as_deref() {
        Some("-") => Some(Destination::Stdout),
        Some(path) => Some(Destination::File(path.into())),
        None => config.audit.clone(),
    };
    let (audit, audit_flusher) = match &audit_destination {
        Some(destination) => {
            let (audit, flusher) = AuditLog::open(destination)
                .with_context(|| format!("cannot open the audit log {destination:?}"))
                .map_err(UsageError)?;
            (audit, Some(flusher))
        }
        None => (AuditLog::off(), None),
    };
    let audit_flusher = Arc::new(std::sync::Mutex::new(audit_flusher));
    // The web console's credential-use feed shows the latest records, file or not.
    let audit = audit.with_recent(imds_server::console::FEED_RECORDS);
    let audit_log = audit.clone();
    let requests = Arc::new(RequestCounters::default());
    let lockdown = match config.lockdown.clone() {
        Some(policy) => {
            tracing::info!(
                message = "Lockdown on.",
                users = ?policy.users,
                credential_users = ?policy.credential_users,
            );
            Some(
                imds_server::lockdown::Lockdown::start(policy)
                    .context("cannot start the lockdown's caller lookups")?,
            )
        }
        None => None,
    };
    let lockdown = imds_server::lockdown::LockdownSwitch::new(lockdown);

    let store_key = match &args.store_key_file {
        Some(path) => Some(StoreKey::from_file(path).map_err(UsageError)?),
        None => None,
    };
    let token_source = admin_token::source(
        args.admin_token_file.as_deref(),
        admin_token::from_environment(),
        state.path(),
    );
    let admin_tokens = Tokens::new(
        Some(AdminToken::new(&admin_token::for_server(
            &token_source,
            &state,
        )?)),
        control.tokens_dir.clone(),
    );
    let store_uri = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", state.path().join("imds.db").display()));
    let opening = imds_store::open_with(&store_uri, args.store_settings());
    let store = opening.await.map_err(|error| {
        let uri = redact_uri(&store_uri);
        match error {
            imds_store::StoreError::Config(_) => {
                UsageError(format_err!("cannot open the store {uri}: {error}")).into()
            }
            _ => format_err!("cannot open the store {uri}: {error}"),
        }
    })?;
    // With a store key, the token and identity keys are the store's, shared with every server
    // on it (a fleet's hosts); without one, this host's own from the state directory.
    let (tokens, signer) = match &store_key {
        Some(key) => (
            TokenAuthority::new(&key.token_key(&*store).await?),
            Arc::new(key.identity_signer(&*store).await?),
        ),
        None if store_uri.starts_with("postgres") => {
            return Err(UsageError(format_err!(
                "a shared store needs --store-key-file (or IMDS_STORE_KEY_FILE): the token and \
                 identity keys every server uses are kept in it, sealed with that key; make one \
                 with `openssl rand -base64 32`"
            ))
            .into())
        }
        None => (
            TokenAuthority::new(&state.token_key()?),
            Arc::new(state.identity_signer()?),
        ),
    };
    let services = Services::with_settings(
        signer,
        config.credential_provider.clone(),
        imds_credentials::spec::ProviderSettings {
            default_lifetime: config.credential_lifetime,
            sts_timeouts: sts_timeouts(&args),
        },
    )
    .with_instance_connect(Arc::new(state.instance_connect_signer()?));
    // The same key seals static roles' secrets before they reach the store.
    let codec =
        RoleCodec::new(store_key.map(|key| Arc::new(key) as Arc<dyn imds_server::sealing::Sealer>));
    let role_cache = services.roles.clone();
    let default_id = config.default_instance.instance_id.clone();
    let started = Bootstrap {
        store: store.clone(),
        services,
        codec,
        settings: Settings {
            explicit_default: config.explicit_default,
            apply_patience: Duration::from_millis(args.apply_patience_ms),
            fetch_concurrency: usize::try_from(args.credential_fetch_concurrency)
                .unwrap_or(usize::MAX),
        },
        host_id: args.host_id.clone(),
        roles: config.roles.clone(),
        default_id: default_id.clone(),
        default_spec,
        default_generated: generated.clone(),
        option_flags: flags.clone(),
        instances: config.instances,
    }
    .run()
    .await
    .map_err(|error| -> anyhow::Error {
        match error {
            BootstrapError::Config(error) => {
                UsageError(format_err!("invalid config in {source}: {error}")).into()
            }
            BootstrapError::Flags(error) => UsageError(format_err!("{error}")).into(),
            other => anyhow::Error::new(other),
        }
    })?;
    let registry = started.registry;
    let follower = started.follower;
    let tasks = imds_server::container_api::tasks::load(
        &*store,
        args.host_id.as_deref(),
        config.tasks.clone(),
    )
    .await
    .map_err(|error| -> anyhow::Error {
        match error {
            imds_server::container_api::tasks::TaskLoadError::Config(message) => {
                UsageError(format_err!("invalid config in {source}: {message}")).into()
            }
            other => anyhow::Error::new(other),
        }
    })?;
    let task_rate = std::num::NonZeroU32::new(args.task_metadata_rate).map(|per_second| {
        imds_server::throttle::Rate {
            per_second,
            burst: std::num::NonZeroU32::new(args.task_metadata_burst)
                .unwrap_or(std::num::NonZeroU32::MIN),
        }
    });
    // The control API registers and deregisters tasks in this table; in fleet mode the change
    // feed brings in those other hosts write for this one.
    let tasks = imds_server::container_api::Tasks::new(
        tasks.with_rate_limit(task_rate),
        store.clone(),
        args.host_id.clone(),
    );
    if args.host_id.is_some() {
        registry.follow_tasks(tasks.clone());
    }
    // The EKS Pod Identity associations: the file's seed the store, the control API changes
    // them; every host of a fleet serves the store's, kept in line by the change feed.
    let associations = imds_server::container_api::Associations::load(
        store.clone(),
        args.host_id.as_deref(),
        &config.pod_identity_associations,
    )
    .await
    .map_err(|error| -> anyhow::Error {
        match error {
            imds_server::container_api::associations::AssociationLoadError::Config(message) => {
                UsageError(format_err!("invalid config in {source}: {message}")).into()
            }
            other => anyhow::Error::new(other),
        }
    })?;
    registry.follow_associations(associations.clone());
    inject_configured_faults(&registry, &config.faults);
    // The scenario starts once the instances are loaded, and is refused before anything is
    // bound when its instances are not among them.
    // The EKS Pod Identity endpoint's keys, and the private one the control API mints its
    // tokens with.
    let (pod_identity_settings, token_signer) = if args.pod_identity_listen.is_empty() {
        (None, None)
    } else {
        let mut signer = config.pod_identity.signer.clone();
        let settings = config.pod_identity.settings(|| {
            let pem = state.service_account_signer()?;
            signer = Some(Arc::new(SigningKey::from_pem(&pem)?));
            Ok(TokenKeys::from_pem(&pem)?)
        })?;
        (Some(settings), signer)
    };
    let admin_state = AdminState {
        registry: registry.clone(),
        requests: requests.clone(),
        audit: audit.clone(),
        scenarios: Arc::new(Scenarios::new(Some(default_id.clone()))),
        tasks: tasks.clone(),
        associations: associations.clone(),
        token_signer,
    };
    if let Some((path, scenario)) = scenario {
        admin_state
            .scenarios
            .start(&admin_state, scenario)
            .map_err(|error| {
                UsageError(format_err!(
                    "invalid scenario in {}: {error}",
                    path.display()
                ))
            })?;
    }

    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(message = "Could not raise the open-file limit.", %error);
    }
    let app_state = Arc::new(AppState {
        tokens,
        registry: registry.clone(),
        lockdown: lockdown.clone(),
        throttle: ArcSwap::from_pointee(throttle),
        audit: audit.clone(),
        requests: requests.clone(),
    });
    let limits = Limits {
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        ..Limits::default()
    };
    let guest_listeners = Arc::new(GuestListeners::new(
        app_state.clone(),
        limits,
        args.shutdown_timeout,
    ));
    let guest_bound =
        guest_listeners.bind(&guest_addresses(&args.listen, config.listen.as_deref()))?;
    let admin_listener = imds_server::bind(args.admin_listen)
        .with_context(|| format!("cannot listen on {} for the control API", args.admin_listen))?;
    let guest_addresses = guest_bound.local_addresses()?;
    for address in &guest_addresses {
        tracing::info!(message = "Listening.", address = %address);
    }
    tracing::info!(
        message = "Control API ready.",
        address = %admin_listener.local_addr()?,
        tls = control.tls.is_some(),
    );
    let principal = Principal {
        instance_id: Arc::from(default_id.as_str()),
        account_id: Arc::from(config.default_instance.account_id.as_str()),
        partition: Arc::from(config.default_instance.services_partition.as_str()),
    };
    let guard = Guard {
        lockdown: lockdown.clone(),
        audit: audit.clone(),
        requests: requests.clone(),
    };
    // Every listener's accept loop and open connection holds a watch of this drain.
    let drain = imds_server::drain::Drain::new();
    let container = match args.container_listen {
        Some(address) => {
            let listener = imds_server::bind(address)
                .with_context(|| format!("cannot listen on {address} for container credentials"))?;
            tracing::info!(
                message = "Container credentials ready.",
                address = %listener.local_addr()?,
                routes = config.container_routes.len(),
                tasks = tasks.table().tasks().len(),
            );
            let endpoint = ContainerEndpoint {
                routes: config.container_routes.clone(),
                per_request: config.per_request_roles.clone(),
                roles: role_cache.clone(),
                principal: principal.clone(),
                guard: guard.clone(),
                tasks: tasks.clone(),
            };
            let watch = drain.watch();
            Some(tokio::spawn(async move {
                if let Err(error) =
                    imds_server::container_api::serve(listener, endpoint, watch).await
                {
                    tracing::error!(message = "The container credentials endpoint stopped.", %error);
                }
            }))
        }
        None => None,
    };
    let mut pod_identity = Vec::new();
    if let Some(settings) = pod_identity_settings {
        for address in &args.pod_identity_listen {
            let listener = imds_server::bind(*address)
                .with_context(|| format!("cannot listen on {address} for EKS Pod Identity"))?;
            tracing::info!(
                message = "EKS Pod Identity ready.",
                address = %listener.local_addr()?,
                associations = associations.list().len(),
            );
            let endpoint = PodIdentityEndpoint {
                settings: settings.clone(),
                associations: associations.clone(),
                roles: role_cache.clone(),
                principal: principal.clone(),
                guard: guard.clone(),
            };
            let watch = drain.watch();
            pod_identity.push(tokio::spawn(async move {
                if let Err(error) =
                    imds_server::container_api::pod_identity::serve(listener, endpoint, watch).await
                {
                    tracing::error!(message = "The EKS Pod Identity endpoint stopped.", %error);
                }
            }));
        }
    }
    let hangup = crate::reload::hear_hangup()?;
    let instances = registry.instance_ids();
    tracing::info!(
        message = "Serving.",
        instances = instances.len(),
        default_instance = %default_id,
        state_dir = %state.path().display(),
        store = %store_uri.split_once(':').map_or("?", |(scheme, _)| scheme),
        host_id = args.host_id.as_deref().unwrap_or("-"),
    );

    let reload_tls = control.tls.clone();
    let console = imds_server::console::ConsoleState::new(
        admin_state,
        admin_tokens,
        imds_server::console::ConsoleOptions {
            tls: control.tls.is_some(),
            ..imds_server::console::ConsoleOptions::default()
        },
    );
    let admin_watch = drain.watch();
    let admin = tokio::spawn(async move {
        // The control API and, under /ui/, the web console.
        let serving =
            imds_server::console::serve(admin_listener, console, control.tls, admin_watch);
        if let Err(error) = serving.await {
            tracing::error!(message = "The control API stopped.", %error);
        }
    });
    let reloader = Reloadable {
        tls: reload_tls,
        config: args.config.clone().map(|path| crate::reload::ConfigReload {
            path,
            generated: generated.clone(),
            sts_timeouts: sts_timeouts(&args),
            throttle_flag: args.throttle_requests_per_second,
            option_flags: flags.clone(),
            default_id: default_id.clone(),
            registry: registry.clone(),
            state: app_state.clone(),
            counters: requests.clone(),
            served,
            lockdown: lockdown.clone(),
            audit: crate::reload::AuditReload {
                log: audit_log.clone(),
                destination: audit_destination,
                from_flag: args.audit_log.is_some(),
                flusher: audit_flusher.clone(),
            },
            associations: associations.clone(),
            host_id: args.host_id.clone(),
            // With --listen flags the file's listeners are not used.
            listeners: args.listen.is_empty().then(|| guest_listeners.clone()),
        }),
    }
    .on_hangup(hangup);
    guest_listeners.apply(guest_bound)?;
    crate::service_manager::ready(&format!(
        "Serving {} instance(s) on {}.",
        instances.len(),
        guest_addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    shutdown_signal().await;
    crate::service_manager::stopping();
    // Reloads and the fleet follower stop at once; the guest, container, Pod Identity and
    // control listeners close, and their open requests are answered within the timeout.
    reloader.abort();
    if let Some(follower) = follower {
        follower.abort();
    }
    let (others, guests) = tokio::join!(
        drain.drain(args.shutdown_timeout),
        guest_listeners.drain(args.shutdown_timeout)
    );
    admin.abort();
    if !(others && guests) {
        tracing::warn!(
            message = "Requests still open at the shutdown timeout are dropped.",
            timeout_ms = args.shutdown_timeout.as_millis() as u64,
        );
    }
    for listener in pod_identity {
        listener.abort();
    }
    if let Some(container) = container {
        container.abort();
    }
    log_counters(&registry, &role_cache, &requests, &app_state.audit);
    // Writes out every audit record still queued (those of the requests just drained too).
    drop(
        audit_flusher
            .lock()
            .expect("the flusher lock is never held across a panic")
            .take(),
    );
    Ok(())
}

/// Injects the config file's `[[faults]]` (checked when the file was read) into the instances
/// this process serves.
#[allow(
    clippy::disallowed_methods,
    reason = "configured faults start when the server starts"
)]
fn inject_configured_faults(registry: &Registry, faults: &[crate::config::ConfiguredFault]) {
    let now = time::OffsetDateTime::now_utc();
    for configured in faults {
        let Some(slot) = registry.slot(&configured.instance_id) else {
            tracing::warn!(
                message = "A configured fault's instance is not served here; the fault is left out.",
                instance_id = %configured.instance_id,
            );
            continue;
        };
        match slot.faults.inject(configured.fault.clone(), now) {
            Ok(fault) => tracing::info!(
                message = "Fault injected into an instance.",
                instance_id = %configured.instance_id,
                fault_id = %fault.id(),
                kind = fault.kind().as_str(),
                from = "config",
            ),
            Err(error) => tracing::warn!(
                message = "A configured fault could not be injected.",
                instance_id = %configured.instance_id,
                error = ?error,
            ),
        }
    }
}

fn log_counters(
    registry: &Registry,
    role_cache: &RoleCache,
    requests: &RequestCounters,
    audit: &AuditLog,
) {
    let (mut no_token, mut rejected, mut issued) = (0, 0, 0);
    for instance_id in registry.instance_ids() {
        if let Some(slot) = registry.slot(&instance_id) {
            no_token += Counters::read(&slot.counters.no_token);
            rejected += Counters::read(&slot.counters.no_token_rejected);
            issued += Counters::read(&slot.counters.tokens_issued);
        }
    }
    tracing::info!(
        message = "Stopped.",
        metadata_no_token = no_token,
        metadata_no_token_rejected = rejected,
        tokens_issued = issued,
        unknown_callers = registry
            .unknown_callers
            .load(std::sync::atomic::Ordering::Relaxed),
        credential_fetches = Counters::read(&role_cache.counters.fetches),
        credential_failures = Counters::read(&role_cache.counters.failures),
        credentials_stale_served = Counters::read(&role_cache.counters.stale_served),
        credentials_unavailable_served = Counters::read(&role_cache.counters.unavailable_served),
        throttled_requests = requests.answered_with(http::StatusCode::TOO_MANY_REQUESTS),
        audit_records_dropped = audit.dropped(),
    );
}

async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(message = "Cannot watch SIGTERM; only Ctrl-C stops the server.", %error);
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!(message = "Shutting down.");
}

#[cfg(test)]
mod tests {
    use super::redact_uri;

    #[test]
    fn store_uris_lose_their_password_in_messages() {
        assert_eq!(
            redact_uri("postgres://imds:s3cret@db.internal:5432/imds"),
            "postgres://imds:<redacted>@db.internal:5432/imds"
        );
        assert_eq!(
            redact_uri("postgres://imds@db/imds"),
            "postgres://imds@db/imds"
        );
        assert_eq!(
            redact_uri("sqlite:/var/lib/imds/imds.db"),
            "sqlite:/var/lib/imds/imds.db"
        );
    }
}
