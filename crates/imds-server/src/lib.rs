//! Everything in imds that speaks HTTP: the guest API, the listeners and connection handling,
//! and the snapshots of prepared answers they serve from.
//!
//! # Layout
//! - `bootstrap`: start-up: the config's roles and instances reconciled with the store.
//! - `audit`: the audit log of credentials handed out and requests refused (JSON lines).
//! - `connection`: the HTTP/1 settings and request checks every listener shares.
//! - `admin_api`: the control API (instances, options, events), on its own listener.
//! - `console`: the web console under `/ui/` on the control listener; it calls `admin_api`'s
//!   handlers and never the other way round.
//! - `container_api`: the container credentials endpoint (ECS/EKS style), on its own listener;
//!   `routes` holds its configured paths.
//! - `credentials`: credentials rendered once and cached per role.
//! - `drain`: graceful shutdown: listeners stop accepting, open requests are answered.
//! - `faults`: faults injected into an instance's answers on purpose, and their matching.
//! - `guest_api`: the IMDS request decisions, a pure function of request, snapshot and time.
//! - `instance`: one served instance: its slot, snapshot, runtime and the services it uses.
//! - `registry`: which caller is which instance; every change the control API makes.
//! - `responses`: headers and error pages as AWS sends them.
//! - `scenario`: scenarios, timelines of control-API calls, checked and run on tasks of their own.
//! - `lifetime`: how long a connection lives: its drain, and the guest listener's head timeout.
//! - `lockdown`: which users of this host may read what, from the kernel's socket table.
//! - `telemetry`: request counters by route template, status and version.
//! - `throttle`: per-instance rate limits.
//! - `tls`: the control listener's TLS (certificate, key, client CA), reloadable.
//! - `listener`: binding, accepting, connection limits, hop limit on token responses.
//! - `listener_set`: the guest listeners as a set a reload adds addresses to and removes from.
//! - `minor_version`: HTTP/1.x request lines with a minor version above 1 read as HTTP/1.1.
//! - `identity`: the identity document's signatures and the signing certificate.
//! - `instance_connect`: EC2 Instance Connect's signer: key signatures, certificates, OCSP.
//! - `sealing`: role secrets sealed with the store key before they reach the store.
//! - `state`: shared state (token authority, instances, policies, counters).
//! - `wire`: JSON documents as AWS lays them out.
#![forbid(unsafe_code)]

pub mod admin_api;
pub mod audit;
pub mod bootstrap;
pub mod connection;
pub mod console;
pub mod container_api;
pub mod credentials;
pub mod drain;
pub mod faults;
pub mod guest_api;
pub mod identity;
pub mod instance;
pub mod instance_connect;
pub mod lifetime;
pub mod listener;
pub mod listener_set;
pub mod lockdown;
pub mod minor_version;
pub mod registry;
pub mod responses;
pub mod scenario;
pub mod sealing;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod wire;

pub use listener::{bind, start, Limits};
