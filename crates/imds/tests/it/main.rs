//! Real-binary tests: each starts `imds serve` on an ephemeral loopback port and talks raw HTTP
//! to it over real sockets.

mod access;
mod admin_document;
mod capture;
mod categories;
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
mod silent_upstream;
mod sts;
mod support;
mod tasks;
mod tokens;
mod wire;
