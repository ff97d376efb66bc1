//! `imds serve`: config → state → snapshots → listeners, until a signal.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use imds_core::{
    options::{HopLimit, Toggle},
    token::TokenAuthority,
};
use imds_credentials::generated::GeneratedProvider;
use imds_server::{
    rotation::InstanceRuntime,
    snapshot::SignedIdentity,
    state::{AppState, Counters, InstanceSlot},
    Limits,
};
use time::OffsetDateTime;

use crate::{
    cli::ServeArgs,
    config::{self, Config, ConfigFile},
    state_dir::StateDir,
    UsageError,
};

/// Loads everything `serve` needs, before anything is bound.
fn load(args: &ServeArgs, state: &StateDir) -> anyhow::Result<Config> {
    let file = match &args.config {
        Some(path) => config::read(path).map_err(UsageError)?,
        None => ConfigFile::default(),
    };
    let generated = state.generated()?;
    let mut config = file.resolve(&generated).map_err(|error| {
        let source = args.config.as_ref().map_or_else(
            || "the default instance".to_owned(),
            |path| path.display().to_string(),
        );
        UsageError(error.context(format!("invalid config in {source}")))
    })?;
    let options = &mut config.default_instance.options;
    let toggle = |text: &str| {
        text.parse::<Toggle>()
            .expect("clap allows only enabled|disabled")
    };
    if let Some(text) = &args.http_tokens {
        options.http_tokens = text.parse().expect("clap allows only optional|required");
    }
    if let Some(text) = &args.http_endpoint {
        options.http_endpoint = toggle(text);
    }
    if let Some(value) = args.http_put_response_hop_limit {
        options.http_put_response_hop_limit = HopLimit::new(value).expect("clap checks 1..=64");
    }
    if let Some(text) = &args.instance_metadata_tags {
        options.instance_metadata_tags = toggle(text);
    }
    if let Some(text) = &args.http_protocol_ipv6 {
        options.http_protocol_ipv6 = toggle(text);
    }
    Ok(config)
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state_path = args
        .state_dir
        .clone()
        .unwrap_or_else(StateDir::default_path);
    let state = StateDir::open(&state_path)?;
    let config = load(&args, &state)?;
    let tokens = TokenAuthority::new(&state.token_key()?);
    let signer = state.identity_signer()?;
    let identity = SignedIdentity::new(&config.default_instance, &signer)?;

    let runtime = InstanceRuntime {
        instance: config.default_instance,
        identity,
        provider: Arc::new(GeneratedProvider::new(config.credential_lifetime)),
    };
    let (snapshot, current) = runtime
        .prepare(OffsetDateTime::now_utc())
        .await
        .context("cannot prepare the instance's metadata")?;
    let slot = Arc::new(InstanceSlot::new(snapshot));
    let instance_id = runtime.instance.instance_id.clone();
    let options = runtime.instance.options;

    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(message = "Could not raise the open-file limit.", %error);
    }
    let mut listeners = Vec::with_capacity(args.listen.len());
    for address in &args.listen {
        let listener =
            imds_server::bind(*address).with_context(|| format!("cannot listen on {address}"))?;
        let local = listener.local_addr()?;
        tracing::info!(message = "Listening.", address = %local);
        listeners.push(listener);
    }
    tracing::info!(
        message = "Serving instance.",
        instance_id = %instance_id,
        http_tokens = %options.http_tokens,
        http_endpoint = %options.http_endpoint,
        http_put_response_hop_limit = %options.http_put_response_hop_limit,
        http_protocol_ipv6 = %options.http_protocol_ipv6,
        instance_metadata_tags = %options.instance_metadata_tags,
        state_dir = %state.path().display(),
    );

    let rotation = tokio::spawn(runtime.keep_current(slot.clone(), current));
    let app_state = Arc::new(AppState {
        tokens,
        default_instance: slot.clone(),
    });
    let limits = Limits {
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        ..Limits::default()
    };
    imds_server::run(listeners, app_state, limits, shutdown_signal()).await?;
    rotation.abort();
    let counters = &slot.counters;
    tracing::info!(
        message = "Stopped.",
        instance_id = %instance_id,
        metadata_no_token = Counters::read(&counters.no_token),
        metadata_no_token_rejected = Counters::read(&counters.no_token_rejected),
        tokens_issued = Counters::read(&counters.tokens_issued),
    );
    Ok(())
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
    // Let the log line above reach the terminal before the runtime goes away.
    tokio::time::sleep(Duration::from_millis(1)).await;
}
