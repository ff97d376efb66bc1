//! The command line.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use imds_core::options::{HopLimit, HttpTokens, Toggle};

/// `imds --version`: the package version and the commit it was built from (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("IMDS_BUILD_COMMIT"),
    ")"
);

/// An EC2-compatible Instance Metadata Service.
#[derive(Debug, Parser)]
#[command(name = "imds", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the metadata service (default instance, 127.0.0.1:1338, without arguments).
    ///
    /// To serve the link-local endpoint on this host:
    /// `imds net up && imds serve --listen 169.254.169.254:80 --listen [fd00:ec2::254]:80 --http-protocol-ipv6 enabled`.
    Serve(ServeArgs),
    /// Print or check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Instance identity document tools.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Manage a running server through its control API.
    Ctl(crate::ctl::CtlArgs),
    /// Put the link-local endpoint addresses on this host, or take them away.
    #[command(subcommand)]
    Net(NetCommand),
    /// EKS Pod Identity service-account tokens: mint them, print the keys that verify them.
    #[command(subcommand)]
    PodIdentity(PodIdentityCommand),
    /// Print the environment a container needs to reach the container endpoints, in
    /// `docker run --env-file` form (minting the Pod Identity token with --pod-identity).
    ContainerEnv(crate::container_env::ContainerEnvArgs),
    /// Print a role's credentials as shell exports (AWS_ACCESS_KEY_ID and the rest).
    Env(crate::role_env::RoleArgs),
    /// Run a command with a role's credentials in its environment, as Lambda does.
    Exec(crate::role_env::ExecArgs),
    /// Walk a metadata service (IMDSv2) and print a config file that `imds serve --config`
    /// serves back with the same tree and values (`imds capture > instance.toml`).
    Capture(crate::capture::CaptureArgs),
    /// Print the shell completions of this command line (`imds completions bash >
    /// /usr/share/bash-completion/completions/imds`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages of this command line into a directory: `imds.1` and one
    /// `imds-SUBCOMMAND.1` for each subcommand.
    Man {
        /// The directory (created when missing).
        directory: PathBuf,
    },
}

/// `imds config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a complete, commented example configuration.
    Default,
    /// Check a configuration file without serving; exits non-zero naming the bad field.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

/// `imds net ...`.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Add 169.254.169.254/32 and fd00:ec2::254/128 on a dummy interface (idempotent), with
    /// the container endpoint's 169.254.170.2/32 and EKS Pod Identity's 169.254.170.23/32 and
    /// fd00:ec2::23/128.
    Up {
        /// The interface to create and use.
        #[arg(long, default_value = "imds0")]
        interface: String,
        /// Only the IPv4 addresses.
        #[arg(long)]
        no_ipv6: bool,
        /// Leave out the container endpoint's 169.254.170.2.
        #[arg(long)]
        no_container: bool,
        /// Leave out EKS Pod Identity's 169.254.170.23 and fd00:ec2::23.
        #[arg(long)]
        no_pod_identity: bool,
    },
    /// Remove the interface and its addresses (idempotent).
    Down {
        /// The interface to remove.
        #[arg(long, default_value = "imds0")]
        interface: String,
    },
}

/// Where the service-account token signing key is.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// A PEM private key (RSA or P-256), as `[pod-identity] key-file` names it.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Else the state directory's `service-account-signer.pem` (made on first use), the key
    /// `imds serve --pod-identity-listen` uses when `[pod-identity]` names none.
    #[arg(long, env = "IMDS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `imds pod-identity ...`.
#[derive(Debug, Subcommand)]
pub enum PodIdentityCommand {
    /// Mint a service-account token as Kubernetes projects it for EKS Pod Identity (audience
    /// pods.eks.amazonaws.com), for AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
    MintToken {
        /// The Kubernetes namespace.
        #[arg(long)]
        namespace: String,
        /// The service account.
        #[arg(long)]
        service_account: String,
        /// The audience.
        #[arg(long, default_value = "pods.eks.amazonaws.com")]
        audience: String,
        /// Seconds the token is valid (EKS projects tokens for 86400).
        #[arg(long, default_value_t = imds_server::container_api::service_account_token::DEFAULT_LIFETIME, value_parser = clap::value_parser!(u32).range(1..))]
        lifetime: u32,
        /// The issuer (`iss`).
        #[arg(long, default_value = crate::pod_identity::DEFAULT_ISSUER)]
        issuer: String,
        /// Write the token here (mode 0600, no trailing newline) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Print the signing key's public half as a JWK Set, for `[pod-identity] jwks-file`.
    Jwks {
        #[command(flatten)]
        signer: SignerArgs,
    },
}

/// `imds identity ...`.
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Print the X.509 certificate (PEM) that verifies this host's identity documents (or, with
    /// --store and --store-key-file, those of every server sharing that store).
    Certificate {
        /// The state directory holding the signing key.
        #[arg(long, env = "IMDS_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// A shared store holding the signing key.
        #[arg(long, env = "IMDS_STORE")]
        store: Option<String>,
        /// The key that seals the store's keys.
        #[arg(long, env = "IMDS_STORE_KEY_FILE")]
        store_key_file: Option<PathBuf>,
    },
    /// Print the CA certificate (PEM) of this host's EC2 Instance Connect signer: a guest that
    /// trusts it (e.g. in /usr/local/share/ca-certificates) accepts the signed keys of
    /// `managed-ssh-keys/`.
    InstanceConnectCa {
        /// The state directory holding the CA.
        #[arg(long, env = "IMDS_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
}

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `imds serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The instance description (see `imds config default`); without it, the generated
    /// default instance.
    #[arg(long, env = "IMDS_CONFIG")]
    pub config: Option<PathBuf>,
    /// A scenario file (TOML; see examples/scenarios): its steps run at their offsets from
    /// start-up, once the instances are loaded.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Address to listen on; repeat for more (IPv4 or [IPv6]:port). On a host that has the
    /// link-local addresses: --listen 169.254.169.254:80 --listen [fd00:ec2::254]:80. Given,
    /// it wins over the config file's `[server] listen`; without either, 127.0.0.1:1338.
    #[arg(long = "listen", value_name = "ADDRESS")]
    #[allow(
        rustdoc::broken_intra_doc_links,
        reason = "the comment is the --help text, where [IPv6]:port is literal"
    )]
    pub listen: Vec<SocketAddr>,
    /// Where keys and generated identifiers are kept across restarts.
    #[arg(long, env = "IMDS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// HttpTokens: `required` refuses tokenless (IMDSv1) requests with 401.
    #[arg(long, value_name = "optional|required")]
    pub http_tokens: Option<HttpTokens>,
    /// HttpEndpoint: `disabled` refuses every request with 403.
    #[arg(long, value_name = "enabled|disabled")]
    pub http_endpoint: Option<Toggle>,
    /// HttpPutResponseHopLimit: the IP TTL of token responses, 1 to 64.
    #[arg(long, value_name = "1-64")]
    pub http_put_response_hop_limit: Option<HopLimit>,
    /// InstanceMetadataTags: `enabled` serves meta-data/tags/instance/.
    #[arg(long, value_name = "enabled|disabled")]
    pub instance_metadata_tags: Option<Toggle>,
    /// HttpProtocolIpv6: `enabled` lets IPv6 listeners answer.
    #[arg(long, value_name = "enabled|disabled")]
    pub http_protocol_ipv6: Option<Toggle>,
    /// Address of the control API (JSON over HTTP or HTTPS, bearer token); keep it on loopback
    /// unless it has TLS.
    #[arg(long, default_value = "127.0.0.1:1339")]
    pub admin_listen: SocketAddr,
    /// Serve the control API over TLS with this certificate chain (PEM), read again on SIGHUP;
    /// overrides `[control] tls-cert`. Needs --admin-tls-key.
    #[arg(long, env = "IMDS_ADMIN_TLS_CERT", value_name = "FILE")]
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --admin-tls-cert; overrides `[control] tls-key`.
    #[arg(long, env = "IMDS_ADMIN_TLS_KEY", value_name = "FILE")]
    pub admin_tls_key: Option<PathBuf>,
    /// Require control-API clients to present a certificate issued by a CA of this file (PEM):
    /// mTLS; overrides `[control] client-ca`. Needs TLS.
    #[arg(long, env = "IMDS_ADMIN_CLIENT_CA", value_name = "FILE")]
    pub admin_client_ca: Option<PathBuf>,
    /// A directory of control-API tokens, one per file named `NAME.admin` or `NAME.read-only`,
    /// beside the admin token; changes are seen without a restart. Overrides
    /// `[control] tokens-dir`.
    #[arg(long, env = "IMDS_ADMIN_TOKENS_DIR", value_name = "DIR")]
    pub admin_tokens_dir: Option<PathBuf>,
    /// In fleet mode, let the control API listen on a non-loopback address without TLS: the
    /// network is trusted (`[control] trusted-network = true`).
    #[arg(long)]
    pub admin_trusted_network: bool,
    /// Address of the container credentials endpoint (ECS/EKS style; its paths are the
    /// config's `[[container-credentials]]`); off without it.
    #[arg(long)]
    pub container_listen: Option<SocketAddr>,
    /// Address of the EKS Pod Identity endpoint (`GET /v1/credentials`; EKS uses
    /// `169.254.170.23:80` and `[fd00:ec2::23]:80`), repeatable; tokens are checked with
    /// `[pod-identity]`'s key, else the state directory's `service-account-signer.pem`.
    #[arg(long)]
    pub pod_identity_listen: Vec<SocketAddr>,
    /// Requests per second each caller may make on each path of the task metadata endpoint and
    /// the ECS credentials endpoint (`[[tasks]]`, on the container listener); 0: no limit. The
    /// ECS agent's default is 40.
    #[arg(long, default_value_t = 40)]
    pub task_metadata_rate: u32,
    /// Requests a caller may make at once on one such path after a quiet spell (the ECS
    /// agent's default is 60).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub task_metadata_burst: u32,
    /// File holding the control API's bearer token; before IMDS_ADMIN_TOKEN and the state
    /// directory's `admin-token`, made on first start.
    #[arg(long, env = "IMDS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Where registered instances are kept: `sqlite:PATH` (default: `imds.db` in the state
    /// directory), or `postgres://USER@HOST/DATABASE`, shared by every host of a fleet.
    #[arg(long, env = "IMDS_STORE")]
    pub store: Option<String>,
    /// Fleet mode: this host's name in the shared store. The server serves only the instances
    /// assigned to it and follows the changes other hosts make.
    #[arg(long, env = "IMDS_HOST_ID", requires_all = ["store", "store_key_file"], value_parser = imds_core::host_id::parse_host_id)]
    pub host_id: Option<String>,
    /// File holding the key (32 bytes, base64) that seals the token and identity keys kept in
    /// the store, so that every server on one store shares them; required with a PostgreSQL
    /// store. Without it, each host keeps its own keys in its state directory.
    #[arg(long, env = "IMDS_STORE_KEY_FILE")]
    pub store_key_file: Option<PathBuf>,
    /// Seconds one operation on a PostgreSQL store may take, waiting for a connection
    /// included (default 5): a control-API write that cannot reach the database answers 503
    /// after at most this.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub store_timeout: Option<Duration>,
    /// Seconds the change feed of a PostgreSQL store may hear nothing from the database before
    /// it checks its connection (default 2).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub store_heartbeat_interval: Option<Duration>,
    /// Seconds a PostgreSQL connection has to answer that check, or the check of an idle pooled
    /// connection, before it is taken for dead and replaced (default 3).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub store_heartbeat_timeout: Option<Duration>,
    /// Most connections open at once per listener.
    #[arg(long, default_value_t = imds_server::Limits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a client has to send a request head; idle connections close after it too.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout: u64,
    /// Seconds open requests have to be answered after SIGTERM or SIGINT, once the listeners
    /// have stopped accepting; requests still open then are dropped.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Append the audit log (JSON lines: credentials handed out, refused token requests,
    /// lockdown refusals) to this file, or `-` for standard output; overrides `[audit] file`.
    #[arg(long, env = "IMDS_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Requests per second each instance may make (burst: as many); 0: no limit. Overrides
    /// `[throttle] requests-per-second` (default 5000); per-instance limits in the file stay.
    #[arg(long)]
    pub throttle_requests_per_second: Option<u32>,
    /// Milliseconds a control-API write waits for the instance to serve its change (new role
    /// credentials may need an upstream) before answering `State: pending`.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub apply_patience_ms: u64,
    /// Credential fetches run at once in the background: at start-up, for changes from other
    /// hosts, and to renew credentials that come due.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub credential_fetch_concurrency: u64,
    /// Milliseconds one STS attempt may take, connection included (`sts` roles).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub sts_attempt_timeout_ms: u64,
    /// Milliseconds one `AssumeRole` may take, its retries included (`sts` roles).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub sts_timeout_ms: u64,
}

impl ServeArgs {
    /// The store's bounds: the flags given, the store's defaults for the others.
    pub fn store_settings(&self) -> imds_store::StoreSettings {
        let defaults = imds_store::StoreSettings::default();
        imds_store::StoreSettings {
            operation_timeout: self.store_timeout.unwrap_or(defaults.operation_timeout),
            heartbeat_interval: self
                .store_heartbeat_interval
                .unwrap_or(defaults.heartbeat_interval),
            heartbeat_timeout: self
                .store_heartbeat_timeout
                .unwrap_or(defaults.heartbeat_timeout),
        }
    }
}

/// The longest bound a `SECONDS` flag takes: an hour.
const MAX_SECONDS: f64 = 3600.0;

/// A number of seconds above zero, at most an hour; decimals allowed (`0.5`).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let refusal = || format!("{text:?} is not a number of seconds above 0 and at most 3600");
    let seconds: f64 = text.trim().parse().map_err(|_| refusal())?;
    if !(seconds > 0.0 && seconds <= MAX_SECONDS) {
        return Err(refusal());
    }
    let duration = Duration::from_secs_f64(seconds);
    if duration.is_zero() {
        return Err(refusal());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_seconds(text: &str, expect: Option<Duration>) {
        assert_eq!(parse_seconds(text).ok(), expect, "{text:?}");
    }

    #[test]
    fn seconds_are_positive_and_at_most_an_hour() {
        check_seconds("5", Some(Duration::from_secs(5)));
        check_seconds("0.5", Some(Duration::from_millis(500)));
        check_seconds(" 2 ", Some(Duration::from_secs(2)));
        check_seconds("3600", Some(Duration::from_secs(3600)));
        check_seconds("0", None);
        check_seconds("-1", None);
        check_seconds("3601", None);
        check_seconds("NaN", None);
        check_seconds("inf", None);
        check_seconds("1e-12", None);
        check_seconds("5s", None);
        check_seconds("", None);
    }
}
