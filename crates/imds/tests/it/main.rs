//! Real-binary tests: each starts `imds serve` on an ephemeral loopback port and talks raw HTTP
//! to it over real sockets.

mod access;
mod capture;
mod cli;
mod fleet;
mod guest_api;
mod hop_limit;
mod host_mode;
mod hostile;
mod identity;
mod net;
mod options;
mod role_env;
mod roles;
mod shared_keys;
mod sts;
mod support;
mod tokens;
mod wire;
