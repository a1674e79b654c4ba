//! Signal installation with escalation: the first signal drains, the second forces,
//! the third exits at once.
//!
//! `ctrlc` catches SIGINT on Unix and Ctrl+C / Ctrl+Break on Windows; on Unix,
//! `signal-hook` catches SIGTERM, and SIGHUP unless it was ignored when the process
//! started (what `nohup` does: a server started under it must survive its terminal
//! going away). `ctrlc`'s `termination` feature would catch SIGHUP unconditionally,
//! replacing the ignored disposition, and it offers no way to leave one signal out —
//! hence the split. Both run our closure on a thread of their own, never in a
//! signal handler. A process has one such installation: a second [`install`] returns
//! [`SignalError::AlreadyInstalled`] instead of panicking.
//!
//! The closure acts first and logs after: whatever the log does (the binary's never
//! blocks, a library user's might), the drain or the force has already begun.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::shutdown::{Reason, Shutdown};

/// Exit code of the third signal, the same as a forced shutdown's.
pub const EXIT_ON_THIRD_SIGNAL: i32 = 130;

/// Why the handlers could not be installed.
#[derive(Debug)]
pub enum SignalError {
    /// This process already has a handler (installed by lameduck or anyone else
    /// using `ctrlc`).
    AlreadyInstalled,
    /// The operating system refused.
    System(ctrlc::Error),
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalError::AlreadyInstalled => {
                f.write_str("signal handlers are already installed in this process")
            }
            SignalError::System(_) => f.write_str("cannot install signal handlers"),
        }
    }
}

impl Error for SignalError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SignalError::AlreadyInstalled => None,
            SignalError::System(err) => Some(err),
        }
    }
}

/// Counts the signals of every source together: a SIGINT after a SIGTERM is the
/// second signal.
#[derive(Debug)]
struct Escalation {
    shutdown: Shutdown,
    received: AtomicUsize,
}

impl Escalation {
    fn received(&self, signal: &str) {
        match self.received.fetch_add(1, Ordering::SeqCst) {
            0 => {
                self.shutdown.trigger_with(Reason::Signal);
                log::info!("signal received ({signal}): draining (send another to force)");
            }
            1 => {
                self.shutdown.force_with(Reason::Signal);
                log::warn!("second signal ({signal}): forcing shutdown (a third exits at once)");
            }
            _ => {
                // Exiting is the whole point: a log line that might not make it out
                // is not worth a moment's delay.
                std::process::exit(EXIT_ON_THIRD_SIGNAL);
            }
        }
    }
}

/// Routes SIGINT, SIGTERM and SIGHUP to `shutdown`: the first triggers it with
/// [`Reason::Signal`], the second forces it, the third calls
/// `std::process::exit(130)` without further ado.
///
/// Install before announcing that the program is ready (before `listening on`), so
/// that a signal sent right after the announcement is handled gracefully.
///
/// # Platform notes
/// On Unix, SIGHUP is left ignored if it was ignored when the process started (run
/// under `nohup`); the disposition is read from `/proc/self/status`, so where there
/// is no `/proc` SIGHUP is always caught. On Windows, Ctrl+C and Ctrl+Break.
///
/// # Errors
/// [`SignalError::AlreadyInstalled`] if this process has installed a `ctrlc` handler
/// before; [`SignalError::System`] if the operating system refuses.
pub fn install(shutdown: &Shutdown) -> Result<(), SignalError> {
    let escalation = Arc::new(Escalation {
        shutdown: shutdown.clone(),
        received: AtomicUsize::new(0),
    });
    let on_interrupt = Arc::clone(&escalation);
    ctrlc::set_handler(move || on_interrupt.received(INTERRUPT)).map_err(|err| match err {
        ctrlc::Error::MultipleHandlers => SignalError::AlreadyInstalled,
        other => SignalError::System(other),
    })?;
    #[cfg(unix)]
    unix::install(escalation).map_err(|err| SignalError::System(ctrlc::Error::System(err)))?;
    Ok(())
}

#[cfg(unix)]
const INTERRUPT: &str = "SIGINT";
#[cfg(not(unix))]
const INTERRUPT: &str = "Ctrl+C";

#[cfg(unix)]
mod unix {
    use std::io;
    use std::sync::Arc;
    use std::thread;

    use signal_hook::consts::{SIGHUP, SIGTERM};
    use signal_hook::iterator::Signals;

    use super::Escalation;

    pub(super) fn install(escalation: Arc<Escalation>) -> io::Result<()> {
        let mut caught = vec![SIGTERM];
        if ignored_at_start(SIGHUP) {
            log::info!("SIGHUP was ignored at start (nohup?): it stays ignored");
        } else {
            caught.push(SIGHUP);
        }
        let mut signals = Signals::new(&caught)?;
        thread::Builder::new()
            .name("lameduck-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let name = if signal == SIGHUP {
                        "SIGHUP"
                    } else {
                        "SIGTERM"
                    };
                    escalation.received(name);
                }
            })?;
        Ok(())
    }

    /// Whether `signal`'s disposition is "ignore", from the kernel's own account
    /// (`SigIgn`, a hexadecimal mask with bit `signal - 1`): reading it through
    /// `sigaction` would take `unsafe`, which this crate forbids. No `/proc`, or a
    /// line we cannot read: not ignored, the behaviour from before this check.
    fn ignored_at_start(signal: i32) -> bool {
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return false;
        };
        ignored_in(&status, signal)
    }

    pub(super) fn ignored_in(status: &str, signal: i32) -> bool {
        status
            .lines()
            .find_map(|line| line.strip_prefix("SigIgn:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| (1..=64).contains(&signal) && mask & (1 << (signal - 1)) != 0)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::unix::ignored_in;

    #[test]
    fn the_ignored_mask_is_read_bit_by_signal() {
        let status = "Name:\tlameduck\nSigBlk:\t0000000000000001\nSigIgn:\t0000000000001001\n";
        assert!(ignored_in(status, 1), "SIGHUP is bit 0");
        assert!(ignored_in(status, 13), "SIGPIPE is bit 12");
        assert!(!ignored_in(status, 15), "SIGTERM is not ignored");
        assert!(!ignored_in("Name:\tx\n", 1), "no SigIgn line: not ignored");
        assert!(!ignored_in("SigIgn:\tzz\n", 1), "unreadable: not ignored");
    }
}
