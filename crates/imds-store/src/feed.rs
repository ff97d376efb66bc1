//! The change feed: which instances other writers changed, as `Store::watch` reports them.

use tokio::sync::mpsc;

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
}

impl ChangeFeed {
    /// A feed and the sender a backend fills it through.
    pub(crate) fn channel() -> (mpsc::Sender<Change>, ChangeFeed) {
        let (sender, receiver) = mpsc::channel(FEED_CAPACITY);
        (sender, ChangeFeed { receiver })
    }

    /// The next change; `None` once the backend has stopped following the store.
    pub async fn next(&mut self) -> Option<Change> {
        self.receiver.recv().await
    }
}
