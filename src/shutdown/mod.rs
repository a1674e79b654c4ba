//! The shutdown token: one flag for cheap checks, one channel for waking sleepers.
//!
//! A [`Shutdown`] is cloned into every thread that must stop. Triggering it sets an
//! `AtomicBool` (read with one load on hot paths) and drops the sender of a crossbeam
//! channel, which wakes every thread blocked in [`Shutdown::wait`] or in a `select!` on
//! [`Shutdown::when_triggered`] at the same instant: nobody waits out a poll interval.
//!
//! The token has a second stage, [`Shutdown::force`]: "stop waiting, abandon what is
//! left". A second signal or a passed drain deadline forces; forcing also triggers.
//!
//! How a shutdown ended ([`Outcome`]) and the exit code it leads to ([`exit_code`])
//! live here too: they are the whole process's, read by the server's report and the
//! lifecycle's alike.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

mod outcome;

pub use outcome::{exit_code, Outcome};

/// What started a shutdown; printed as `reason=` in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// SIGINT, SIGTERM or SIGHUP (Ctrl+C / Ctrl+Break on Windows).
    Signal,
    /// A programmatic call to [`Shutdown::trigger`].
    Trigger,
    /// A failure while serving, such as a supervised task that failed.
    Error,
    /// A new process took over the listener (an upgrade): this one drains and exits,
    /// leaving what waits in the shared backlog to its successor.
    Upgrade,
}

impl Reason {
    fn code(self) -> u8 {
        match self {
            Reason::Signal => 1,
            Reason::Trigger => 2,
            Reason::Error => 3,
            Reason::Upgrade => 4,
        }
    }

    fn from_code(code: u8) -> Option<Reason> {
        match code {
            1 => Some(Reason::Signal),
            2 => Some(Reason::Trigger),
            3 => Some(Reason::Error),
            4 => Some(Reason::Upgrade),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Signal => "signal",
            Reason::Trigger => "trigger",
            Reason::Error => "error",
            Reason::Upgrade => "upgrade",
        })
    }
}

/// A one-shot broadcast: a flag for cheap checks, a condition variable for threads
/// that wait on the token alone, and a channel whose sender is dropped to wake
/// threads that wait on it beside other channels in a `select!`.
///
/// Plain waits use the condition variable because a timed crossbeam receive spins
/// and yields before it parks: harmless once, but a thread that waits in a loop
/// (the acceptor between polls, a periodic task) pays it on every round.
struct Latch {
    set: AtomicBool,
    at: OnceLock<Instant>,
    /// The sender lives inside the mutex the condition variable waits on, so
    /// setting the latch (taking the sender) and notifying are one critical section.
    sender: Mutex<Option<Sender<()>>>,
    changed: Condvar,
    receiver: Receiver<()>,
}

impl Latch {
    fn new() -> Latch {
        // Nothing is ever sent: the channel exists so that dropping its only sender
        // disconnects it, which every receiver observes at once.
        let (sender, receiver) = crossbeam_channel::bounded(0);
        Latch {
            set: AtomicBool::new(false),
            at: OnceLock::new(),
            sender: Mutex::new(Some(sender)),
            changed: Condvar::new(),
            receiver,
        }
    }

    /// Returns true for the call that set the latch, false for every later one.
    fn set(&self) -> bool {
        let _ = self.at.get_or_init(Instant::now);
        let first = !self.set.swap(true, Ordering::SeqCst);
        let sender = self.lock().take();
        self.changed.notify_all();
        drop(sender);
        first
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Sender<()>>> {
        // A poisoned lock only means another thread panicked while holding it; the
        // Option inside is valid whatever happened, so carry on with it.
        self.sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        if self.is_set() {
            return true;
        }
        let mut guard = self.lock();
        // The sender is taken exactly when the latch is set, under this lock, so
        // `is_some` is the condition and no notification can slip between the check
        // and the wait.
        while guard.is_some() {
            guard = match deadline {
                None => self
                    .changed
                    .wait(guard)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.changed
                        .wait_timeout(guard, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
        true
    }
}

struct Inner {
    triggered: Latch,
    forced: Latch,
    reason: AtomicU8,
}

/// A cloneable shutdown token shared by every thread of an application.
///
/// ```
/// use lameduck::{Reason, Shutdown};
/// use std::time::Duration;
///
/// let shutdown = Shutdown::new();
/// let worker = {
///     let shutdown = shutdown.clone();
///     std::thread::spawn(move || {
///         let mut rounds = 0;
///         // Do a unit of work, then sleep until the next one or until shutdown.
///         while !shutdown.wait_timeout(Duration::from_millis(10)) {
///             rounds += 1;
///         }
///         rounds
///     })
/// };
/// shutdown.trigger();
/// worker.join().unwrap();
/// assert!(shutdown.is_triggered());
/// assert_eq!(shutdown.reason(), Some(Reason::Trigger));
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .field("forced", &self.is_forced())
            .field("reason", &self.reason())
            .finish()
    }
}

impl Shutdown {
    /// A new token that has not been triggered.
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                triggered: Latch::new(),
                forced: Latch::new(),
                reason: AtomicU8::new(0),
            }),
        }
    }

    /// Starts the shutdown with [`Reason::Trigger`]. Idempotent: later calls change
    /// nothing, and the first reason given is the one reported.
    pub fn trigger(&self) {
        self.trigger_with(Reason::Trigger);
    }

    /// Starts the shutdown, recording why. Returns true if this call started it.
    pub fn trigger_with(&self, reason: Reason) -> bool {
        // The reason is stored before the flag is set, so whoever sees the flag
        // also sees the reason.
        let _ = self.inner.reason.compare_exchange(
            0,
            reason.code(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.inner.triggered.set()
    }

    /// Escalates: stop waiting for what is still running. Also triggers (with
    /// `reason` if nothing triggered before). Returns true if this call forced.
    pub fn force_with(&self, reason: Reason) -> bool {
        self.trigger_with(reason);
        self.inner.forced.set()
    }

    /// [`Shutdown::force_with`] with [`Reason::Trigger`].
    pub fn force(&self) -> bool {
        self.force_with(Reason::Trigger)
    }

    /// Whether the shutdown has started. One atomic load: cheap enough for hot loops.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.is_set()
    }

    /// Whether the shutdown has been forced.
    pub fn is_forced(&self) -> bool {
        self.inner.forced.is_set()
    }

    /// Why the shutdown started, once it has.
    pub fn reason(&self) -> Option<Reason> {
        Reason::from_code(self.inner.reason.load(Ordering::SeqCst))
    }

    /// When the shutdown started, once it has.
    pub fn triggered_at(&self) -> Option<Instant> {
        self.inner.triggered.at.get().copied()
    }

    /// Blocks until the shutdown is triggered.
    pub fn wait(&self) {
        self.inner.triggered.wait_deadline(None);
    }

    /// Blocks until triggered or `timeout` passes; true if triggered. Use it as an
    /// interruptible sleep between units of periodic work.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_deadline(deadline),
            None => {
                self.wait();
                true
            }
        }
    }

    /// Blocks until triggered or `deadline`; true if triggered.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.inner.triggered.wait_deadline(Some(deadline))
    }

    /// Blocks until forced or `deadline`; true if forced.
    pub fn wait_forced_deadline(&self, deadline: Instant) -> bool {
        self.inner.forced.wait_deadline(Some(deadline))
    }

    /// A receiver that disconnects when the shutdown is triggered, for use as one arm
    /// of a `crossbeam_channel::select!` beside a thread's own channels. It never
    /// yields a message: the arm fires with `Err(RecvError)`. (To ask whether it has
    /// triggered, use [`Shutdown::is_triggered`].)
    ///
    /// ```
    /// use lameduck::Shutdown;
    ///
    /// let shutdown = Shutdown::new();
    /// let (_jobs_tx, jobs) = crossbeam_channel::unbounded::<u32>();
    /// shutdown.trigger();
    /// crossbeam_channel::select! {
    ///     recv(jobs) -> job => unreachable!("no job was sent: {job:?}"),
    ///     recv(shutdown.when_triggered()) -> _ => {} // stop
    /// }
    /// ```
    pub fn when_triggered(&self) -> Receiver<()> {
        self.inner.triggered.receiver.clone()
    }

    /// Like [`Shutdown::when_triggered`], for the forced stage.
    pub fn when_forced(&self) -> Receiver<()> {
        self.inner.forced.receiver.clone()
    }
}

#[cfg(test)]
mod tests;
