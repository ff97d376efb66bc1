//! Graceful shutdown: accept loops stop accepting and open connections finish the request they
//! are answering, then close; the server waits for them, within a bound.
//!
//! A [`Drain`] hands out [`Watch`]es. Each accept loop and each connection holds one: the
//! loop returns (closing its listening socket, so that new connections are refused) and the
//! connection is told to close after its current answer (hyper's graceful shutdown, in
//! `lifetime`) when [`Drain::drain`] is called, which then waits until every `Watch` is gone.

use std::{future::Future, time::Duration};

use tokio::sync::{mpsc, watch};

/// The shutdown side: tells every [`Watch`] to stop and waits for them to be dropped.
#[derive(Debug)]
pub struct Drain {
    stop: watch::Sender<bool>,
    /// Kept only to be cloned into watches; dropped when draining starts.
    open: mpsc::Sender<()>,
    /// `recv` answers `None` once every sender (every watch) is gone.
    closed: mpsc::Receiver<()>,
}

/// The serving side: held by an accept loop or a connection while it runs.
#[derive(Debug, Clone)]
pub struct Watch {
    /// `None`: never told to stop.
    stop: Option<watch::Receiver<bool>>,
    _open: Option<mpsc::Sender<()>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    /// A drain with no watch yet.
    pub fn new() -> Drain {
        let (stop, _) = watch::channel(false);
        let (open, closed) = mpsc::channel(1);
        Drain { stop, open, closed }
    }

    /// A watch that counts as open until it is dropped.
    pub fn watch(&self) -> Watch {
        Watch {
            stop: Some(self.stop.subscribe()),
            _open: Some(self.open.clone()),
        }
    }

    /// Tells every watch to stop, then waits until all are dropped or `timeout` passes; `true`
    /// when every one was dropped in time.
    pub async fn drain(self, timeout: Duration) -> bool {
        let Drain {
            stop,
            open,
            mut closed,
        } = self;
        stop.send_replace(true);
        drop(open);
        tokio::time::timeout(timeout, closed.recv()).await.is_ok()
    }
}

impl Watch {
    /// A watch that is never told to stop and holds no drain open.
    pub fn never() -> Watch {
        Watch {
            stop: None,
            _open: None,
        }
    }

    /// Completes once the drain has started (at once if it already has).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let stop = self.stop.clone();
        async move {
            match stop {
                // An error: the drain is gone, which also means stop.
                Some(mut stop) => {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                }
                None => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_every_watch() {
        let drain = Drain::new();
        let watch = drain.watch();
        let stopping = watch.stopping();
        let held = tokio::spawn(async move {
            stopping.await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(watch);
        });
        assert!(drain.drain(Duration::from_secs(5)).await);
        held.await.unwrap();
    }

    #[tokio::test]
    async fn drain_gives_up_after_its_timeout() {
        let drain = Drain::new();
        let watch = drain.watch();
        assert!(!drain.drain(Duration::from_millis(20)).await);
        // The watch sees the stop even though the drain is gone.
        tokio::time::timeout(Duration::from_secs(1), watch.stopping())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn never_is_never_told_to_stop() {
        let stopped = tokio::time::timeout(Duration::from_millis(20), Watch::never().stopping());
        assert!(stopped.await.is_err());
        assert!(Drain::new().drain(Duration::from_millis(1)).await);
    }
}
