//! Signal installation with escalation: the first signal drains, the second forces,
//! the third exits at once.
//!
//! `ctrlc` (with its `termination` feature) catches SIGINT, SIGTERM and SIGHUP on Unix
//! and Ctrl+C / Ctrl+Break on Windows, and runs our closure on a thread of its own, so
//! the closure may log and touch the token freely. A process has one such handler: a
//! second [`install`] returns [`SignalError::AlreadyInstalled`] instead of panicking.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Routes SIGINT, SIGTERM and SIGHUP to `shutdown`: the first triggers it with
/// [`Reason::Signal`], the second forces it, the third calls
/// `std::process::exit(130)` without further ado.
///
/// Install before announcing that the program is ready (before `listening on`), so
/// that a signal sent right after the announcement is handled gracefully.
///
/// # Errors
/// [`SignalError::AlreadyInstalled`] if this process has installed a `ctrlc` handler
/// before; [`SignalError::System`] if the operating system refuses.
pub fn install(shutdown: &Shutdown) -> Result<(), SignalError> {
    let shutdown = shutdown.clone();
    let received = AtomicUsize::new(0);
    ctrlc::set_handler(move || match received.fetch_add(1, Ordering::SeqCst) {
        0 => {
            log::info!("signal received: draining (send another to force)");
            shutdown.trigger_with(Reason::Signal);
        }
        1 => {
            log::warn!("second signal: forcing shutdown (a third exits at once)");
            shutdown.force_with(Reason::Signal);
        }
        _ => {
            log::error!("third signal: exiting now");
            std::process::exit(EXIT_ON_THIRD_SIGNAL);
        }
    })
    .map_err(|err| match err {
        ctrlc::Error::MultipleHandlers => SignalError::AlreadyInstalled,
        other => SignalError::System(other),
    })
}
