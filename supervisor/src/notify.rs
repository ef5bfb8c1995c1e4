//! systemd notifications (sd-notify): `READY=1` once the hub is healthy, `WATCHDOG=1` after each
//! passing health check (never otherwise, so a hung hub lets systemd's watchdog fire) and
//! human-readable `STATUS=` lines. Without `NOTIFY_SOCKET` every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// Environment variables that must not leak into the hub (it would notify systemd itself).
pub const CHILD_ENV_REMOVE: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Sends notifications; failures are logged, never fatal.
#[derive(Debug, Clone, Default)]
pub struct Notifier;

impl Notifier {
    /// The watchdog period systemd asked for, if any.
    pub fn watchdog_period(&self) -> Option<Duration> {
        sd_notify::watchdog_enabled()
    }
    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        Self::send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        Self::send(&[NotifyState::Watchdog]);
    }
    /// `STATUS=...`.
    pub fn status(&self, status: &str) {
        Self::send(&[NotifyState::Status(status)]);
    }
    /// `EXTEND_TIMEOUT_USEC=`: a slow step of start or stop (a backup of a large database)
    /// needs `d` more before systemd's start or stop timeout fires.
    pub fn extend_timeout(&self, d: Duration) {
        let usec = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        Self::send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }
    /// `STOPPING=1`.
    pub fn stopping(&self) {
        Self::send(&[NotifyState::Stopping]);
    }
    fn send(states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!("sd_notify failed: {e}");
        }
    }
}
