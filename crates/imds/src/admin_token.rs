//! Where the control API's bearer token comes from: one rule for `imds serve`, which checks it,
//! and for `imds ctl`, `imds env` and `imds exec`, which send it.
//!
//! In order of precedence:
//! 1. `--admin-token-file FILE` (or `IMDS_ADMIN_TOKEN_FILE`): the file's text, which must not be
//!    empty;
//! 2. `IMDS_ADMIN_TOKEN`: the variable's value, when it is not empty;
//! 3. `admin-token` in the state directory (`--state-dir`, `IMDS_STATE_DIR`, else the default):
//!    `imds serve` makes it on first start (32 random bytes, hex, mode 0600), the clients read it.
//!
//! Surrounding whitespace (a file's final newline) is never part of the token.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::{error::UsageError, state_dir::StateDir};

/// The environment variable that carries the token itself.
pub const ENV: &str = "IMDS_ADMIN_TOKEN";

/// Where the token comes from, as `source` chooses.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// A file named on the command line.
    File(PathBuf),
    /// `IMDS_ADMIN_TOKEN`'s value.
    Env(String),
    /// `admin-token` in this state directory.
    StateDir(PathBuf),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => f.debug_tuple("File").field(path).finish(),
            Source::Env(_) => f.write_str("Env(<redacted>)"),
            Source::StateDir(path) => f.debug_tuple("StateDir").field(path).finish(),
        }
    }
}

/// The rule: the file given, else the variable's value (`env_token`, when not blank), else the
/// state directory's `admin-token`.
pub fn source(file: Option<&Path>, env_token: Option<String>, state_dir: &Path) -> Source {
    if let Some(path) = file {
        return Source::File(path.to_owned());
    }
    match env_token {
        Some(token) if !token.trim().is_empty() => Source::Env(token.trim().to_owned()),
        _ => Source::StateDir(state_dir.to_owned()),
    }
}

/// `IMDS_ADMIN_TOKEN`, read here and nowhere else.
pub fn from_environment() -> Option<String> {
    std::env::var(ENV).ok()
}

/// Reads a token file; an empty one is refused (it would let any caller in).
fn read_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token file {}", path.display()))
        .map_err(UsageError)?;
    let token = text.trim();
    if token.is_empty() {
        bail!(UsageError(anyhow::format_err!(
            "the admin token file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// The token `imds serve` checks: from `source`, making the state directory's on first start.
pub fn for_server(source: &Source, state: &StateDir) -> anyhow::Result<String> {
    match source {
        Source::File(path) => read_file(path),
        Source::Env(token) => Ok(token.clone()),
        Source::StateDir(_) => state.admin_token(),
    }
}

/// The token a client sends: from `source`; the state directory's must exist already.
pub fn for_client(source: &Source) -> anyhow::Result<String> {
    match source {
        Source::File(path) => read_file(path),
        Source::Env(token) => Ok(token.clone()),
        Source::StateDir(directory) => {
            let path = directory.join(crate::state_dir::ADMIN_TOKEN);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read the admin token from {} (give --admin-token-file, --state-dir or {ENV})",
                    path.display()
                )
            })?;
            Ok(text.trim().to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(file: Option<&str>, env_token: Option<&str>, expect: Source) {
        let source = source(
            file.map(Path::new),
            env_token.map(str::to_owned),
            Path::new("/state"),
        );
        assert_eq!(source, expect);
    }

    #[test]
    fn the_file_wins_then_the_variable_then_the_state_directory() {
        let file = || Source::File(PathBuf::from("/token"));
        let state = || Source::StateDir(PathBuf::from("/state"));
        check(Some("/token"), Some("from-env"), file());
        check(Some("/token"), None, file());
        check(None, Some("from-env"), Source::Env("from-env".to_owned()));
        check(
            None,
            Some(" from-env\n"),
            Source::Env("from-env".to_owned()),
        );
        check(None, Some(""), state());
        check(None, Some(" \n"), state());
        check(None, None, state());
    }

    #[test]
    fn token_files_are_trimmed_and_never_empty() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(for_client(&Source::File(path.clone())).unwrap(), "s3cret");
        std::fs::write(&path, " \n").unwrap();
        let error = for_client(&Source::File(path)).unwrap_err();
        assert!(error.downcast_ref::<UsageError>().is_some());
        assert!(format!("{error:#}").contains("is empty"), "{error:#}");
    }

    #[test]
    fn the_server_makes_the_state_directory_token_and_the_client_reads_it() {
        let directory = tempfile::tempdir().unwrap();
        let source = Source::StateDir(directory.path().to_owned());
        assert!(for_client(&source).is_err(), "no token yet");
        let state = StateDir::open(directory.path()).unwrap();
        let made = for_server(&source, &state).unwrap();
        assert_eq!(made.len(), 64);
        assert_eq!(for_client(&source).unwrap(), made);
        assert_eq!(for_server(&source, &state).unwrap(), made, "kept");
    }

    #[test]
    fn debug_shows_no_token() {
        let debug = format!("{:?}", Source::Env("s3cret".to_owned()));
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
