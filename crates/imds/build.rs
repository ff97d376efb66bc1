//! Records the commit the binary is built from, for `imds --version`.
//!
//! `IMDS_BUILD_COMMIT`, when set, is taken as it is (a build from a source package, which has no
//! `.git`, can name its commit that way); else `git rev-parse HEAD` in the source tree; else
//! `unknown`.

use std::process::Command;

#[allow(
    clippy::disallowed_methods,
    reason = "a build script's inputs are its environment"
)]
fn main() {
    println!("cargo:rerun-if-env-changed=IMDS_BUILD_COMMIT");
    let commit = match std::env::var("IMDS_BUILD_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned()),
    };
    // A new commit or checkout moves HEAD (or the branch it names) and appends to HEAD's reflog.
    for name in ["HEAD", "logs/HEAD"] {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=IMDS_BUILD_COMMIT={commit}");
}

/// One line of `git`'s output, `None` without git or outside a repository.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let line = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}
