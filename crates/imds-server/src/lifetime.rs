//! How long a connection lives: until its drain says stop (it then finishes the answer in
//! progress, through hyper's graceful shutdown), and on the guest listener until it has waited
//! longer than the head timeout for a request head.
//!
//! hyper has a head timeout of its own (`header_read_timeout`, used by the other listeners), but
//! it drops and registers a timer in tokio's timer wheel for every request: an allocation and
//! two turns of the timer driver's lock, about 1,400 of the 20,000 instructions of a metadata
//! GET. And a pending `watch` wait takes a lock shared by all connections each time it is
//! polled, which a connection's future is on every read. So here a request costs a clock read:
//! [`Activity`] notes when the connection last began to wait for a head, and one timer per
//! connection, armed for the earliest moment the timeout could pass, looks when it fires and is
//! armed again for the new earliest moment if the connection was answering since. The timer and
//! the stop signal are polled only after their own waker fired (no crate offers that
//! combination for a future that must keep a handle on the connection it watches).

use std::{
    future::Future,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::drain::Watch;

/// When a connection last began to wait for a request head, and whether it is answering one.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Nanoseconds after `started` when the connection last began to wait for a head.
    idle_since: AtomicU64,
    /// Answers in progress (a held or signed answer can take long; no head is awaited then).
    answering: AtomicU32,
}

/// What the head timer finds when it fires.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// The connection waited for a head for the whole timeout: it is closed.
    Expired,
    /// The earliest moment the timeout could pass now.
    Again(Instant),
}

impl Activity {
    /// A connection accepted now, waiting for its first head.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            idle_since: AtomicU64::new(0),
            answering: AtomicU32::new(0),
        })
    }

    /// A request was answered at once: the connection waits for the next head from now.
    pub fn answered(&self) {
        let since = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.idle_since.store(since, Ordering::Release);
    }

    /// A request is being answered until the guard is dropped; then the connection waits for
    /// the next head.
    pub fn answering(self: &Arc<Self>) -> Answering {
        self.answering.fetch_add(1, Ordering::AcqRel);
        Answering(self.clone())
    }

    /// Whether the connection, at `now`, has waited `timeout` for a head.
    fn check(&self, timeout: Duration, now: Instant) -> Check {
        if self.answering.load(Ordering::Acquire) > 0 {
            return Check::Again(now + timeout);
        }
        let due =
            self.started + Duration::from_nanos(self.idle_since.load(Ordering::Acquire)) + timeout;
        if now >= due {
            Check::Expired
        } else {
            Check::Again(due)
        }
    }
}

/// See [`Activity::answering`].
#[derive(Debug)]
pub struct Answering(Arc<Activity>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answered();
        self.0.answering.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The waker given to the stop signal and the head timer: it marks them due for a poll and wakes
/// the connection's task.
#[derive(Default)]
struct SideWaker {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Serves `connection` until it ends, `watch` says stop (then it finishes the answer in
/// progress, if any, and closes instead of waiting for another request), or, with `head`, the
/// connection has waited longer than its timeout for a request head (then it is closed).
pub async fn serve_connection<I, S, B>(
    connection: hyper::server::conn::http1::Connection<I, S>,
    watch: Watch,
    head: Option<(Arc<Activity>, Duration)>,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = pin!(connection);
    let mut stopping = pin!(watch.stopping());
    let mut stop_asked = false;
    let timeout = head.as_ref().map_or(Duration::MAX, |(_, timeout)| *timeout);
    let mut timer = pin!(tokio::time::sleep_until(
        Instant::now() + timeout.min(Duration::from_secs(86_400 * 365))
    ));
    let side = Arc::new(SideWaker::default());
    let side_waker = Waker::from(side.clone());
    // The first poll registers the side futures' waker.
    side.fired.store(true, Ordering::Release);
    std::future::poll_fn(|cx| {
        side.task.register(cx.waker());
        if side.fired.swap(false, Ordering::AcqRel) {
            let mut side_cx = Context::from_waker(&side_waker);
            if !stop_asked && stopping.as_mut().poll(&mut side_cx).is_ready() {
                stop_asked = true;
                connection.as_mut().graceful_shutdown();
            }
            if let Some((activity, timeout)) = &head {
                while timer.as_mut().poll(&mut side_cx).is_ready() {
                    match activity.check(*timeout, Instant::now()) {
                        Check::Expired => {
                            tracing::debug!(
                                message = "Closing a connection that sent no request head in time."
                            );
                            return Poll::Ready(Ok(()));
                        }
                        Check::Again(at) => timer.as_mut().reset(at),
                    }
                }
            }
        }
        connection.as_mut().poll(cx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_counts_from_the_last_answer_and_not_while_answering() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let start = activity.started;
        assert_eq!(
            activity.check(timeout, start + Duration::from_secs(3)),
            Check::Again(start + timeout)
        );
        assert_eq!(activity.check(timeout, start + timeout), Check::Expired);

        let answering = activity.answering();
        let late = start + Duration::from_secs(60);
        assert_eq!(activity.check(timeout, late), Check::Again(late + timeout));
        drop(answering);
        let Check::Again(due) = activity.check(timeout, Instant::now()) else {
            panic!("expired right after an answer");
        };
        assert!(
            due >= start + timeout,
            "due {due:?}, the timeout from the answer"
        );
        assert_eq!(activity.check(timeout, due), Check::Expired);
    }
}
