//! The `imds` binary: parses the command line, loads and checks configuration, then hands over
//! to `imds-server`. Exit codes: 0 success, 64 usage or configuration error, 1 runtime failure.
#![forbid(unsafe_code)]

mod admin_token;
mod app;
mod capture;
mod cli;
mod client;
mod config;
mod container_env;
mod control_plane;
mod ctl;
mod error;
mod net;
mod pod_identity;
mod reload;
mod role_env;
mod scenario_file;
mod service_manager;
mod shared_keys;
mod state_dir;

use std::{io::IsTerminal, process::ExitCode};

use anyhow::{format_err, Context};
use clap::{CommandFactory, Parser};
use imds_server::identity::IdentitySigner;

use crate::{
    cli::{Cli, Command, ConfigCommand, IdentityCommand, LogFormat, NetCommand},
    error::UsageError,
};

/// `EX_USAGE` from sysexits.h.
const EXIT_USAGE: u8 = 64;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(app::serve(args))
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::EXAMPLE_CONFIG);
            Ok(())
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let parsed = config::read(&file).map_err(UsageError)?;
            parsed
                .resolve(&imds_core::spec::Generated::random())
                .map_err(|error| {
                    UsageError(error.context(format!("invalid config file {}", file.display())))
                })?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Ctl(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(ctl::run(args))
        }
        Command::Net(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                match command {
                    NetCommand::Up {
                        interface,
                        no_ipv6,
                        no_container,
                        no_pod_identity,
                    } => {
                        let wanted = net::Endpoints {
                            ipv6: !no_ipv6,
                            container: !no_container,
                            pod_identity: !no_pod_identity,
                        };
                        net::up(&interface, wanted).await
                    }
                    NetCommand::Down { interface } => net::down(&interface).await,
                }
            })
        }
        Command::Capture(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(capture::run(args)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "imds", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { directory } => {
            std::fs::create_dir_all(&directory)
                .with_context(|| format!("cannot create {}", directory.display()))?;
            clap_mangen::generate_to(Cli::command(), &directory).with_context(|| {
                format!("cannot write the man pages into {}", directory.display())
            })?;
            Ok(())
        }
        Command::PodIdentity(command) => pod_identity::run(command),
        Command::ContainerEnv(args) => container_env::run(&args),
        Command::Env(args) => role_env::print_env(&args),
        Command::Exec(args) => role_env::exec(&args),
        Command::Identity(IdentityCommand::Certificate {
            state_dir,
            store,
            store_key_file,
        }) => {
            let signer: IdentitySigner = match (store, store_key_file) {
                (Some(store), Some(key_file)) => {
                    let key = shared_keys::StoreKey::from_file(&key_file).map_err(UsageError)?;
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(async {
                            let store = imds_store::open(&store).await.map_err(|error| {
                                format_err!(
                                    "cannot open the store {}: {error}",
                                    app::redact_uri(&store)
                                )
                            })?;
                            key.identity_signer(&*store).await
                        })?
                }
                (None, None) => {
                    let path = state_dir.unwrap_or_else(state_dir::StateDir::default_path);
                    state_dir::StateDir::open(&path)?.identity_signer()?
                }
                _ => {
                    return Err(UsageError(format_err!(
                        "give both --store and --store-key-file, or neither"
                    ))
                    .into())
                }
            };
            print!("{}", String::from_utf8(signer.certificate_pem()?)?);
            Ok(())
        }
        Command::Identity(IdentityCommand::InstanceConnectCa { state_dir }) => {
            let path = state_dir.unwrap_or_else(state_dir::StateDir::default_path);
            let signer = state_dir::StateDir::open(&path)?.instance_connect_signer()?;
            print!("{}", String::from_utf8(signer.ca_certificate_pem()?)?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("imds: {error:#}");
            if error.downcast_ref::<UsageError>().is_some() || client::is_refusal(&error) {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
