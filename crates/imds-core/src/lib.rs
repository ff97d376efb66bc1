//! The IMDS domain: what an instance is, how its metadata is laid out as a tree, how that tree is
//! rendered into IMDS answers, how request paths map onto it, and how session tokens are issued
//! and checked.
//!
//! This crate does no IO, has no async code and knows nothing of HTTP or SQL; `now` is always
//! passed in, so every decision here is a pure function that tests can drive.
//!
//! # Layout
//! - `host_id`: the names of a fleet's hosts.
//! - `instance`: the instance model (metadata values, role, tags, user-data, events).
//! - `options`: the instance metadata options, with AWS's names and values.
//! - `managed_ssh_keys`: EC2 Instance Connect's keys, their checks, expiry and document.
//! - `metadata_tree`: a tree of categories and leaves, flattened into prepared answers.
//! - `patch`: JSON merge patches of instance descriptions.
//! - `path`: request path normalisation (API versions, slashes, percent-encoding).
//! - `render`: timestamp formats and the other text shapes IMDS answers use.
//! - `spec`: instance descriptions (config file, control API) and how they resolve.
//! - `task`: ECS tasks and their containers (the task metadata endpoint's model), their
//!   descriptions and how they resolve.
//! - `token`: the IMDSv2 session-token authority.
#![forbid(unsafe_code)]

pub mod host_id;
pub mod instance;
pub mod kubernetes_name;
pub mod managed_ssh_keys;
pub mod metadata_tree;
pub mod options;
pub mod patch;
pub mod path;
pub mod render;
pub mod role_name;
pub mod spec;
pub mod task;
pub mod token;
