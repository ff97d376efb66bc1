//! systemd's readiness protocol (`Type=notify`, sd_notify(3)): `READY=1` once every listener is
//! bound and the instances are loaded, `STOPPING=1` when shutdown starts, and `WATCHDOG=1` at
//! half the interval the manager asks for with `WATCHDOG_USEC` (`WatchdogSec=`). Without
//! `NOTIFY_SOCKET` in the environment (not started by systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(message = "Could not notify the service manager.", %error);
    }
}

/// Tells the manager the service is ready, with a one-line status; starts the watchdog pings
/// when the manager wants them.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let period = (interval / 2).max(Duration::from_millis(1));
        tracing::info!(
            message = "Watchdog on.",
            interval_ms = interval.as_millis() as u64
        );
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        });
    }
}

/// Tells the manager the service is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("Draining.")]);
}

/// Tells the manager a reload (SIGHUP) started, with the monotonic time systemd wants beside
/// `RELOADING=1`.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    states.push(NotifyState::Status("Reloading."));
    notify(&states);
}

/// Tells the manager the reload is over and the service ready again.
pub fn reloaded() {
    notify(&[NotifyState::Ready, NotifyState::Status("Serving.")]);
}
