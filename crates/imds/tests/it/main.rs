//! Real-binary tests: each starts `imds serve` on an ephemeral loopback port and talks raw HTTP
//! to it over real sockets.

#![allow(
    clippy::disallowed_methods,
    reason = "the system tests bound their waits on the real clock and read the test environment"
)]

mod access;
mod admin_document;
mod capture;
mod categories;
mod cli;
mod containers;
mod control_plane;
mod credentials;
mod faults;
mod fleet;
mod guest_api;
mod hop_limit;
mod host_mode;
mod hostile;
mod identity;
mod lifecycle;
mod net;
mod options;
mod pod_identity;
mod reload;
mod role_env;
mod roles;
mod scenarios;
mod shared_keys;
mod silent_upstream;
mod ssh_keys;
mod sts;
mod support;
mod tasks;
mod tokens;
mod wire;
