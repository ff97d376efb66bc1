//! Who may call the control API: named bearer tokens, each with a scope.
//!
//! - The single admin token (`AdminToken`, from `--admin-token-file`, `IMDS_ADMIN_TOKEN` or the
//!   state directory) is named `admin` and has the `admin` scope.
//! - A tokens directory (`--admin-tokens-dir`) holds one file per token: the file's name is
//!   `NAME.admin` or `NAME.read-only`, its text the token (surrounding whitespace is not part
//!   of it). `NAME` is what the audit log records; it is made of letters, digits, `-` and `_`.
//!   Other files (and empty ones) are left out, with a warning in the log. The directory is
//!   looked at again on each request (one `stat` of it and of each token file); when anything
//!   changed, it is read again, so tokens are added, rotated and removed without a restart.
//!   A directory that cannot be read lets no token of it in until it can.
//!
//! `Tokens::authenticate` is the one check every caller of the control listener goes through:
//! it answers who the presented token is (`Caller`: name and scope), or nothing. Tokens are
//! compared in constant time (HMAC under a per-check random key), and never logged or shown.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use super::AdminToken;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Describe instances, options, events, faults and roles, and read `/metrics`.
    ReadOnly,
    /// Everything, changes and role credentials included.
    Admin,
}

impl Scope {
    /// The scope as file names and the audit log write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadOnly => "read-only",
            Scope::Admin => "admin",
        }
    }

    /// True when a token of this scope may make a call that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// Who called: the name of the token presented and its scope. Never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`admin` for the single admin token, else its file's name).
    pub name: Arc<str>,
    /// What it may do.
    pub scope: Scope,
}

/// One known token.
struct Entry {
    name: Arc<str>,
    scope: Scope,
    secret: AdminToken,
}

/// What was read from the directory, and the state of the files it was read from.
#[derive(Default)]
struct Loaded {
    stamp: Vec<Stamp>,
    entries: Vec<Entry>,
}

/// A file's identity and change time: a change to any means it is read again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    length: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(metadata) => Stamp {
                path: path.to_owned(),
                modified: metadata.modified().ok(),
                length: metadata.len(),
                inode: metadata.ino(),
            },
            Err(_) => Stamp {
                path: path.to_owned(),
                modified: None,
                length: 0,
                inode: 0,
            },
        }
    }
}

/// The tokens the control API takes.
#[derive(Clone)]
pub struct Tokens {
    admin: Option<AdminToken>,
    directory: Option<Arc<Directory>>,
}

struct Directory {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("admin", &self.admin.is_some())
            .field(
                "directory",
                &self.directory.as_ref().map(|directory| &directory.path),
            )
            .finish()
    }
}

impl From<AdminToken> for Tokens {
    fn from(token: AdminToken) -> Tokens {
        Tokens::new(Some(token), None)
    }
}

/// The name the single admin token has in the audit log.
pub const ADMIN_TOKEN_NAME: &str = "admin";

impl Tokens {
    /// The single admin token (when given) and the tokens of `directory` (when given).
    pub fn new(admin: Option<AdminToken>, directory: Option<PathBuf>) -> Tokens {
        let tokens = Tokens {
            admin,
            directory: directory.map(|path| {
                Arc::new(Directory {
                    path,
                    loaded: Mutex::new(Loaded::default()),
                })
            }),
        };
        if let Some(directory) = &tokens.directory {
            let count = directory.refresh(&mut lock(&directory.loaded));
            tracing::info!(
                message = "Control-API tokens read.",
                directory = %directory.path.display(),
                tokens = count,
            );
        }
        tokens
    }

    /// Who `presented` (the bearer token of a request, when it has one) is, or `None` when it
    /// is no known token.
    pub fn authenticate(&self, presented: Option<&[u8]>) -> Option<Caller> {
        let presented = presented?;
        // One MAC of what was presented under a fresh random key, checked against each token
        // in constant time: neither a token's bytes nor its length leak through timing.
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("the system random source works");
        let tag = ring::hmac::sign(&key, presented);
        let mut found = None;
        if let Some(admin) = &self.admin {
            if admin.verify(&key, tag.as_ref()) {
                found = Some(Caller {
                    name: Arc::from(ADMIN_TOKEN_NAME),
                    scope: Scope::Admin,
                });
            }
        }
        if let Some(directory) = &self.directory {
            let mut loaded = lock(&directory.loaded);
            directory.refresh(&mut loaded);
            for entry in &loaded.entries {
                if entry.secret.verify(&key, tag.as_ref()) && found.is_none() {
                    found = Some(Caller {
                        name: entry.name.clone(),
                        scope: entry.scope,
                    });
                }
            }
        }
        found
    }
}

fn lock(loaded: &Mutex<Loaded>) -> std::sync::MutexGuard<'_, Loaded> {
    loaded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Directory {
    /// Reads the directory again when it or a token file changed; the number of tokens.
    fn refresh(&self, loaded: &mut Loaded) -> usize {
        let unchanged = !loaded.stamp.is_empty()
            && loaded
                .stamp
                .iter()
                .all(|stamp| Stamp::of(&stamp.path) == *stamp);
        if unchanged {
            return loaded.entries.len();
        }
        let mut stamp = vec![Stamp::of(&self.path)];
        let mut entries = Vec::new();
        match std::fs::read_dir(&self.path) {
            Ok(listing) => {
                let mut paths: Vec<PathBuf> = listing
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .collect();
                paths.sort();
                for path in paths {
                    stamp.push(Stamp::of(&path));
                    if let Some(entry) = read_entry(&path) {
                        entries.push(entry);
                    }
                }
            }
            Err(error) => tracing::warn!(
                message = "Cannot read the control-API tokens directory; none of its tokens is taken.",
                directory = %self.path.display(),
                %error,
            ),
        }
        if !loaded.stamp.is_empty() {
            tracing::info!(
                message = "Control-API tokens read again.",
                directory = %self.path.display(),
                tokens = entries.len(),
            );
        }
        loaded.stamp = stamp;
        loaded.entries = entries;
        loaded.entries.len()
    }
}

/// The name and scope a token file's name gives, or why it is not a token file.
fn parse_file_name(file_name: &str) -> Result<(&str, Scope), &'static str> {
    let (name, scope) = if let Some(name) = file_name.strip_suffix(".admin") {
        (name, Scope::Admin)
    } else if let Some(name) = file_name.strip_suffix(".read-only") {
        (name, Scope::ReadOnly)
    } else {
        return Err("its name does not end in .admin or .read-only");
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        Ok((name, scope))
    } else {
        Err("the token's name (before .admin or .read-only) is not letters, digits, - and _")
    }
}

fn read_entry(path: &Path) -> Option<Entry> {
    let file_name = path.file_name()?.to_str().unwrap_or_default();
    if file_name.starts_with('.') {
        return None;
    }
    let (name, scope) = match parse_file_name(file_name) {
        Ok(parsed) => parsed,
        Err(reason) => {
            tracing::warn!(
                message = "A file in the control-API tokens directory is left out.",
                file = %path.display(),
                reason,
            );
            return None;
        }
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(
                message = "A control-API token file cannot be read; it is left out.",
                file = %path.display(),
                %error,
            );
            return None;
        }
    };
    if text.trim().is_empty() {
        tracing::warn!(
            message = "A control-API token file is empty; it is left out.",
            file = %path.display(),
        );
        return None;
    }
    Some(Entry {
        name: Arc::from(name),
        scope,
        secret: AdminToken::new(&text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str, scope: Scope) -> Option<Caller> {
        Some(Caller {
            name: Arc::from(name),
            scope,
        })
    }

    #[test]
    fn file_names_give_the_name_and_the_scope() {
        assert_eq!(parse_file_name("ci.admin"), Ok(("ci", Scope::Admin)));
        assert_eq!(
            parse_file_name("grafana_1.read-only"),
            Ok(("grafana_1", Scope::ReadOnly))
        );
        assert!(parse_file_name("ci").is_err());
        assert!(parse_file_name(".admin").is_err());
        assert!(parse_file_name("a b.admin").is_err());
        assert!(parse_file_name("ci.admin.bak").is_err());
    }

    #[test]
    fn the_admin_token_and_the_directory_tokens_are_told_apart() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("ci.admin"), "ci-secret\n").unwrap();
        std::fs::write(directory.path().join("view.read-only"), "view-secret").unwrap();
        std::fs::write(directory.path().join("empty.admin"), "\n").unwrap();
        std::fs::write(directory.path().join("notes.txt"), "view-secret").unwrap();
        let tokens = Tokens::new(
            Some(AdminToken::new("root-secret")),
            Some(directory.path().to_owned()),
        );
        assert_eq!(
            tokens.authenticate(Some(b"root-secret")),
            caller("admin", Scope::Admin)
        );
        assert_eq!(
            tokens.authenticate(Some(b"ci-secret")),
            caller("ci", Scope::Admin)
        );
        assert_eq!(
            tokens.authenticate(Some(b"view-secret")),
            caller("view", Scope::ReadOnly)
        );
        assert_eq!(tokens.authenticate(Some(b"")), None);
        assert_eq!(tokens.authenticate(Some(b"ci-secre")), None);
        assert_eq!(tokens.authenticate(None), None);
    }

    #[test]
    fn changes_to_the_directory_are_seen_on_the_next_check() {
        let directory = tempfile::tempdir().unwrap();
        let tokens = Tokens::new(None, Some(directory.path().to_owned()));
        assert_eq!(tokens.authenticate(Some(b"one")), None);
        std::fs::write(directory.path().join("one.admin"), "one").unwrap();
        assert_eq!(
            tokens.authenticate(Some(b"one")),
            caller("one", Scope::Admin)
        );
        // Rotated in place: the old value stops working, the new one works.
        std::fs::write(directory.path().join("one.admin"), "one-rotated-longer").unwrap();
        assert_eq!(tokens.authenticate(Some(b"one")), None);
        assert_eq!(
            tokens.authenticate(Some(b"one-rotated-longer")),
            caller("one", Scope::Admin)
        );
        std::fs::remove_file(directory.path().join("one.admin")).unwrap();
        assert_eq!(tokens.authenticate(Some(b"one-rotated-longer")), None);
    }

    #[test]
    fn debug_shows_no_token() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("ci.admin"), "ci-secret").unwrap();
        let tokens = Tokens::new(
            Some(AdminToken::new("root-secret")),
            Some(directory.path().to_owned()),
        );
        let debug = format!("{tokens:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }
}
