//! The guest listeners as a set a reload can change: addresses added are bound and served,
//! addresses removed stop accepting while their open connections finish the answer they are
//! giving (within the drain timeout), and the addresses kept are not touched.
//!
//! A change is made in two steps so that a reload can refuse it whole: [`GuestListeners::bind`]
//! binds every new address first (nothing changes if one fails), [`GuestListeners::apply`]
//! starts them and closes those no longer wanted. Each listener has a drain of its own, so that
//! closing one does not stop the others; shutdown drains them all.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{drain::Drain, listener::Limits, state::AppState};

/// The guest listeners being served, by the address they were asked for.
#[derive(Debug)]
pub struct GuestListeners {
    state: Arc<AppState>,
    limits: Limits,
    /// How long a removed listener's open connections have to finish.
    drain_timeout: Duration,
    open: Mutex<Vec<Open>>,
}

#[derive(Debug)]
struct Open {
    /// The address as configured (`127.0.0.1:0` stays that, whichever port it got).
    wanted: SocketAddr,
    /// The address bound.
    local: SocketAddr,
    drain: Drain,
}

/// New addresses bound and old ones to close, not applied yet.
#[derive(Debug)]
pub struct Bound {
    added: Vec<(SocketAddr, std::net::TcpListener)>,
    removed: Vec<SocketAddr>,
}

impl Bound {
    /// The local addresses of the listeners it added.
    pub fn local_addresses(&self) -> io::Result<Vec<SocketAddr>> {
        self.added
            .iter()
            .map(|(_, listener)| listener.local_addr())
            .collect()
    }

    /// True when applying it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// What [`GuestListeners::apply`] changed: the local addresses opened and closed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Addresses now served.
    pub opened: Vec<SocketAddr>,
    /// Addresses no longer accepting.
    pub closed: Vec<SocketAddr>,
}

impl GuestListeners {
    /// An empty set serving `state` with `limits`.
    pub fn new(state: Arc<AppState>, limits: Limits, drain_timeout: Duration) -> GuestListeners {
        GuestListeners {
            state,
            limits,
            drain_timeout,
            open: Mutex::new(Vec::new()),
        }
    }

    /// Binds every address of `wanted` that is not served yet, and notes those served that
    /// `wanted` leaves out. Nothing is served or closed yet; on an error nothing changes.
    pub fn bind(&self, wanted: &[SocketAddr]) -> io::Result<Bound> {
        let open = self.lock();
        let mut added = Vec::new();
        for address in wanted {
            let known = open.iter().any(|listener| listener.wanted == *address)
                || added.iter().any(|(bound, _)| bound == address);
            if known {
                continue;
            }
            let listener = crate::bind(*address).map_err(|error| {
                io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
            })?;
            added.push((*address, listener));
        }
        let removed = open
            .iter()
            .filter(|listener| !wanted.contains(&listener.wanted))
            .map(|listener| listener.wanted)
            .collect();
        Ok(Bound { added, removed })
    }

    /// Serves what `bound` added and closes what it removed; the closed listeners' open
    /// connections finish their current answer in the background. Must run in a Tokio runtime.
    pub fn apply(&self, bound: Bound) -> io::Result<Changed> {
        let mut changed = Changed::default();
        // Every listener is made ready before any is served, so that an error serves none.
        let ready = bound
            .added
            .into_iter()
            .map(|(wanted, listener)| {
                let local = listener.local_addr()?;
                Ok((wanted, local, tokio::net::TcpListener::from_std(listener)?))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut started = Vec::new();
        for (wanted, local, listener) in ready {
            let drain = Drain::new();
            tokio::spawn(crate::listener::serve_guest(
                listener,
                self.state.clone(),
                self.limits,
                drain.watch(),
            ));
            started.push(Open {
                wanted,
                local,
                drain,
            });
            changed.opened.push(local);
        }
        let mut open = self.lock();
        open.extend(started);
        let (closing, kept): (Vec<Open>, Vec<Open>) = std::mem::take(&mut *open)
            .into_iter()
            .partition(|listener| bound.removed.contains(&listener.wanted));
        *open = kept;
        drop(open);
        for listener in closing {
            changed.closed.push(listener.local);
            let timeout = self.drain_timeout;
            tokio::spawn(async move {
                if !listener.drain.drain(timeout).await {
                    tracing::warn!(
                        message = "Requests still open on a closed listener at the drain timeout are dropped.",
                        address = %listener.local,
                    );
                }
            });
        }
        Ok(changed)
    }

    /// The local addresses served, in the order they were opened.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.lock().iter().map(|listener| listener.local).collect()
    }

    /// Stops every listener and waits until their open connections have finished, or `timeout`
    /// passes; `true` when all finished in time.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let open = std::mem::take(&mut *self.lock());
        let drains = open
            .into_iter()
            .map(|listener| listener.drain.drain(timeout));
        futures_util::future::join_all(drains)
            .await
            .into_iter()
            .all(|finished| finished)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Open>> {
        self.open
            .lock()
            .expect("the listener set's lock is never held across a panic")
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A guest state over an empty registry (kept while the directory lives).
    async fn state() -> (Arc<AppState>, tempfile::TempDir) {
        let (registry, directory) = crate::registry::sqlite_tests::on_sqlite(
            Arc::new(imds_credentials::generated::GeneratedProvider::default()),
            crate::registry::Settings::default(),
        )
        .await;
        let state = AppState {
            tokens: imds_core::token::TokenAuthority::new(&[7; 32]),
            registry: Arc::new(registry),
            lockdown: crate::lockdown::LockdownSwitch::default(),
            throttle: arc_swap::ArcSwap::from_pointee(crate::throttle::Throttle::unlimited()),
            audit: crate::audit::AuditLog::off(),
            requests: Arc::default(),
        };
        (Arc::new(state), directory)
    }

    fn get(address: SocketAddr) -> io::Result<String> {
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(
            b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n",
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn addresses_added_are_served_and_those_removed_refuse_connections() {
        let (state, _directory) = state().await;
        let set = GuestListeners::new(state, Limits::default(), Duration::from_secs(1));
        let first: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let changed = set.apply(set.bind(&[first]).unwrap()).unwrap();
        assert_eq!(changed.opened.len(), 1);
        let first_local = changed.opened[0];
        let answer = tokio::task::spawn_blocking(move || get(first_local))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");

        // The same address again changes nothing; a second one is added beside it.
        assert!(set.bind(&[first]).unwrap().is_empty());
        let second: SocketAddr = "[::1]:0".parse().unwrap();
        let changed = set.apply(set.bind(&[first, second]).unwrap()).unwrap();
        assert_eq!(changed.closed, Vec::new());
        assert_eq!(set.addresses().len(), 2);

        // The first removed: its socket is closed, the second still answers.
        let changed = set.apply(set.bind(&[second]).unwrap()).unwrap();
        assert_eq!(changed.closed, vec![first_local]);
        let second_local = set.addresses()[0];
        let refused = tokio::task::spawn_blocking(move || {
            // The accept loop stops on its next turn: wait for the refusal.
            for _ in 0..100 {
                if std::net::TcpStream::connect(first_local).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        });
        assert!(refused.await.unwrap(), "{first_local} still accepts");
        let answer = tokio::task::spawn_blocking(move || get(second_local))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
        assert!(set.drain(Duration::from_secs(5)).await);
        assert!(set.addresses().is_empty());
    }

    #[tokio::test]
    async fn an_address_that_cannot_be_bound_changes_nothing() {
        let (state, _directory) = state().await;
        let set = GuestListeners::new(state, Limits::default(), Duration::from_secs(1));
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first: SocketAddr = "127.0.0.1:0".parse().unwrap();
        set.apply(set.bind(&[first]).unwrap()).unwrap();
        let error = set
            .bind(&[taken.local_addr().unwrap()])
            .expect_err("the port is taken");
        assert!(
            error.to_string().contains("cannot listen on 127.0.0.1:"),
            "{error}"
        );
        assert_eq!(set.addresses().len(), 1);
    }
}
