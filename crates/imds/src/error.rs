//! The one error type the binary's modules share: a usage error (exit 64) as opposed to a
//! runtime failure (exit 1).

/// An error in what the user asked for (config, arguments, a request the control API refused),
/// as opposed to a runtime failure.
#[derive(Debug)]
pub struct UsageError(pub anyhow::Error);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for UsageError {}
