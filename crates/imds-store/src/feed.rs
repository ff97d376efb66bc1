//! The change feed: which instances, tasks and roles other writers changed, as `Store::watch` reports them, and
//! how the feed's connection to the store is doing (`FeedHealth`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// How many changes wait in a feed for its reader before the backend waits in turn; PostgreSQL
/// keeps queueing notifications for a slow listener meanwhile.
pub(crate) const FEED_CAPACITY: usize = 4096;

/// One item of a change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Anything may have changed (the feed has just connected or reconnected): reload every
    /// instance of interest.
    Resync,
    /// One instance was created, changed, moved or removed; read it again to see which.
    Instance {
        /// The instance.
        instance_id: String,
        /// The host it is assigned to after the change (`None` if removed or in host mode); a
        /// hint that lets other hosts skip changes that are none of their business.
        host_id: Option<String>,
    },
    /// One task was created, changed, moved or removed; read it again to see which.
    Task {
        /// The task id.
        task_id: String,
        /// The host it is assigned to after the change (`None` if removed or in host mode).
        host_id: Option<String>,
    },
    /// One Pod Identity association was created, changed or removed; read them again.
    Association {
        /// The association id.
        association_id: String,
    },
    /// One role's provider was set or removed; read it again to see which.
    Role {
        /// The role name.
        name: String,
    },
}

/// The changes made to a store, in commit order, from `Store::watch`.
#[derive(Debug)]
pub struct ChangeFeed {
    receiver: mpsc::Receiver<Change>,
    /// Shared with the backend's task that fills the feed.
    health: FeedHealth,
}

impl ChangeFeed {
    /// A feed, the sender a backend fills it through, and the health the backend reports in.
    pub(crate) fn channel() -> (mpsc::Sender<Change>, FeedHealth, ChangeFeed) {
        let (sender, receiver) = mpsc::channel(FEED_CAPACITY);
        let health = FeedHealth::default();
        (sender, health.clone(), ChangeFeed { receiver, health })
    }

    /// The next change; `None` once the backend has stopped following the store.
    pub async fn next(&mut self) -> Option<Change> {
        self.receiver.recv().await
    }

    /// A handle on how the feed's connection is doing, which stays valid while the feed is read.
    pub fn health(&self) -> FeedHealth {
        self.health.clone()
    }
}

/// How a change feed's connection to the store is doing, shared between the backend that
/// follows the store and whoever reports on it (logs, metrics).
///
/// Cloning gives another handle on the same state.
#[derive(Debug, Clone, Default)]
pub struct FeedHealth {
    state: Arc<Mutex<HealthState>>,
}

/// What the backend last reported.
#[derive(Debug, Default)]
struct HealthState {
    /// Whether the feed listens now.
    connected: bool,
    /// When the store was last heard from on the feed's connection: a change, or the answer to
    /// a heartbeat; `None` before the first.
    last_contact: Option<Instant>,
    /// How many times the feed connected again after losing its connection (or failing to
    /// make its first).
    reconnections: u64,
    /// Whether the feed lost its connection (or failed to connect) since it last connected: the
    /// next connection is then a reconnection.
    lost: bool,
}

/// A snapshot of `FeedHealth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedStatus {
    /// The feed listens now; `false` while it connects or reconnects (changes made meanwhile
    /// reach the reader through the `Resync` that follows the connection).
    pub connected: bool,
    /// How long ago the store was last heard from on the feed's connection (a change or an
    /// answered heartbeat); `None` if it never was.
    pub since_last_contact: Option<Duration>,
    /// How many times the feed has connected again after losing its connection or failing to
    /// connect.
    pub reconnections: u64,
}

impl FeedHealth {
    /// What the feed reports now.
    pub fn status(&self) -> FeedStatus {
        let state = self.lock();
        FeedStatus {
            connected: state.connected,
            since_last_contact: state.last_contact.map(|instant| instant.elapsed()),
            reconnections: state.reconnections,
        }
    }

    /// A health that is always connected, for a feed with no connection to lose (SQLite).
    #[allow(
        clippy::disallowed_methods,
        reason = "the feed's health is the time since its last contact with the store"
    )]
    pub(crate) fn always_connected(&self) {
        let mut state = self.lock();
        state.connected = true;
        state.last_contact = Some(Instant::now());
    }

    /// The feed listens (again); returns whether this is a reconnection.
    #[allow(
        clippy::disallowed_methods,
        reason = "the feed's health is the time since its last contact with the store"
    )]
    pub(crate) fn connected(&self) -> bool {
        let mut state = self.lock();
        state.connected = true;
        state.last_contact = Some(Instant::now());
        let reconnection = std::mem::take(&mut state.lost);
        if reconnection {
            state.reconnections += 1;
        }
        reconnection
    }

    /// The store was heard from.
    #[allow(
        clippy::disallowed_methods,
        reason = "the feed's health is the time since its last contact with the store"
    )]
    pub(crate) fn contact(&self) {
        self.lock().last_contact = Some(Instant::now());
    }

    /// The feed lost its connection or could not make one.
    pub(crate) fn lost(&self) {
        let mut state = self.lock();
        state.connected = false;
        state.lost = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        // The state is a few plain fields written whole: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|error| error.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_losses_reconnections_and_the_last_contact() {
        let health = FeedHealth::default();
        assert_eq!(
            health.status(),
            FeedStatus {
                connected: false,
                since_last_contact: None,
                reconnections: 0,
            }
        );
        assert!(
            !health.connected(),
            "the first connection is no reconnection"
        );
        let status = health.status();
        assert!(status.connected && status.since_last_contact.is_some());
        health.lost();
        let lost = health.status();
        assert!(!lost.connected);
        // A loss is no contact: the age keeps counting from the last one.
        assert!(lost.since_last_contact >= status.since_last_contact);
        assert_eq!(lost.reconnections, 0);
        health.lost();
        assert!(
            health.connected(),
            "connecting after a loss is a reconnection"
        );
        let again = health.clone().status();
        assert!(again.connected);
        assert_eq!(again.reconnections, 1);
        assert!(!health.connected(), "only a connection after a loss counts");
        assert_eq!(health.status().reconnections, 1);
    }
}
