//! The deploy thread: serves SIGUSR2 as upgrade requests, one at a time, and when the
//! shutdown begins tells the service manager `STOPPING=1` with the rest of the budget
//! — unless the process handed over to a successor, which is the service now.

use std::thread;
use std::time::{Duration, Instant};

use super::{notify, upgrade, DeployError, EXIT_MARGIN};
use crate::shutdown::{Reason, Shutdown};

/// Forwards SIGUSR2 to a channel from a thread of its own, dropping the ones that
/// arrive once the shutdown has begun.
pub(super) fn forward_signals(
    mut signals: signal_hook::iterator::Signals,
    shutdown: &Shutdown,
) -> Result<
    (
        crossbeam_channel::Receiver<()>,
        signal_hook::iterator::Handle,
    ),
    DeployError,
> {
    let handle = signals.handle();
    let (tx, rx) = crossbeam_channel::unbounded();
    let shutdown = shutdown.clone();
    thread::Builder::new()
        .name("lameduck-sigusr2".into())
        .spawn(move || {
            for _ in signals.forever() {
                if shutdown.is_triggered() {
                    log::info!("SIGUSR2 ignored: already shutting down");
                } else if tx.send(()).is_err() {
                    return;
                }
            }
        })
        .map_err(DeployError::Setup)?;
    Ok((rx, handle))
}

/// The deploy thread's state: serving until the shutdown, upgrading on request.
pub(super) struct Stage {
    pub(super) shutdown: Shutdown,
    pub(super) notifier: notify::Notifier,
    pub(super) upgrader: Option<upgrade::Upgrader>,
    /// The `STATUS=` text while serving.
    pub(super) serving: String,
}

impl Stage {
    pub(super) fn run(self, upgrades: &crossbeam_channel::Receiver<()>, budget: Duration) {
        let triggered = self.shutdown.when_triggered();
        loop {
            crossbeam_channel::select! {
                recv(triggered) -> _ => break,
                recv(upgrades) -> request => {
                    if request.is_err() {
                        break;
                    }
                    self.upgrade();
                    // One upgrade at a time: requests that came during this one are
                    // not queued behind it.
                    let ignored = upgrades.try_iter().count();
                    if ignored > 0 {
                        log::warn!("{ignored} SIGUSR2 ignored: they came during an upgrade");
                    }
                }
            }
        }
        self.shutdown.wait();
        self.draining(budget);
    }

    fn upgrade(&self) {
        let Some(upgrader) = &self.upgrader else {
            log::warn!("SIGUSR2 ignored: this process cannot restart itself");
            return;
        };
        self.notifier
            .send("STATUS=upgrading: starting a new process");
        match upgrader.attempt(&self.shutdown) {
            Ok(pid) => {
                log::info!("upgrade: pid {pid} is ready; draining (reason=upgrade)");
                // Before draining: from here on the unit is the new process, and
                // this one's exit must not look like the service's.
                self.notifier.send(&format!(
                    "MAINPID={pid}\nSTATUS={} (pid {pid})",
                    self.serving
                ));
                self.shutdown.trigger_with(Reason::Upgrade);
            }
            Err(err) => {
                log::error!("upgrade failed: {err}; still serving");
                self.notifier
                    .send(&format!("STATUS={} (last upgrade failed)", self.serving));
            }
        }
    }

    /// `STOPPING=1` and the rest of the budget, unless the service is a successor now.
    fn draining(&self, budget: Duration) {
        let reason = self.shutdown.reason().unwrap_or(Reason::Trigger);
        if reason == Reason::Upgrade {
            return;
        }
        let began = self.shutdown.triggered_at().unwrap_or_else(Instant::now);
        let left = budget.saturating_sub(began.elapsed()) + EXIT_MARGIN;
        let usec = u64::try_from(left.as_micros()).unwrap_or(u64::MAX);
        self.notifier.send(&format!(
            "STOPPING=1\nSTATUS=draining (reason={reason})\nEXTEND_TIMEOUT_USEC={usec}"
        ));
    }
}
