//! What a server's shutdown did, as counted while it happened.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::shutdown::Reason;

/// How the shutdown ended; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything finished within the deadline.
    Clean,
    /// The drain deadline passed; what was left was force-closed.
    Deadline,
    /// A second signal (or [`Shutdown::force`](crate::Shutdown::force)) cut the wait short.
    Forced,
}

impl Outcome {
    /// The worse of two outcomes: forced beats deadline beats clean.
    pub fn worst(self, other: Outcome) -> Outcome {
        fn rank(outcome: Outcome) -> u8 {
            match outcome {
                Outcome::Clean => 0,
                Outcome::Deadline => 1,
                Outcome::Forced => 2,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Clean => "clean",
            Outcome::Deadline => "deadline",
            Outcome::Forced => "forced",
        })
    }
}

/// The process exit code of a shutdown: 130 if a second signal
/// forced it, else 1 if a failure started it, else 124 if the deadline passed, else 0.
pub fn exit_code(reason: Reason, outcome: Outcome) -> u8 {
    match (outcome, reason) {
        (Outcome::Forced, _) => 130,
        (_, Reason::Error) => 1,
        (Outcome::Deadline, _) => 124,
        (Outcome::Clean, _) => 0,
    }
}

/// The counters a running server updates; read once into a [`Report`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) accepted: AtomicU64,
    pub(crate) drained: AtomicU64,
    pub(crate) forced: AtomicU64,
    pub(crate) refused_busy: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
    /// Connections still in the kernel's backlog when the listener was closed.
    pub(crate) backlog_left: AtomicU64,
    /// `backlog_left` could not be counted (not Linux) and may not be zero.
    pub(crate) backlog_uncounted: AtomicBool,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A server's account of its run and shutdown, returned by
/// [`ServerHandle::join`](crate::ServerHandle::join).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// What started the shutdown.
    pub reason: Reason,
    /// How it ended.
    pub outcome: Outcome,
    /// Connections accepted over the whole run.
    pub accepted: u64,
    /// Connections open or queued when draining began that closed gracefully.
    pub drained: u64,
    /// Connections force-closed after the deadline or a second signal.
    pub forced: u64,
    /// Connections turned away as busy over the whole run.
    pub refused_busy: u64,
    /// Connections whose handler panicked.
    pub panics: u64,
    /// Connections given up on over the whole run because the client read nothing
    /// for the write timeout.
    pub write_timeouts: u64,
    /// Connections still waiting in the kernel's backlog when the drain gave up on
    /// them (its deadline or a force came while the process had no descriptor to
    /// accept them with): closing the listener reset them. `None` where they
    /// cannot be counted (only Linux exposes it) and the drain gave up before the
    /// backlog was empty. When it is not `Some(0)`, the outcome is not clean.
    pub backlog_left: Option<u64>,
    /// Names of threads still running when the server gave up on them.
    pub detached: Vec<String>,
    /// From the start of draining to the last connection closed.
    pub drain: Duration,
}

impl Report {
    /// The exit code for this report (see [`exit_code`]).
    pub fn exit_code(&self) -> u8 {
        exit_code(self.reason, self.outcome)
    }
}

impl fmt::Display for Report {
    /// The key=value fields of the report line, without `stopped` or `total_ms`
    /// (those belong to whoever prints the whole process's report).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reason={} outcome={} drained={} forced={} refused_busy={} panics={} \
             detached_threads={} drain_ms={} write_timeouts={} backlog_left={}",
            self.reason,
            self.outcome,
            self.drained,
            self.forced,
            self.refused_busy,
            self.panics,
            self.detached.len(),
            self.drain.as_millis(),
            self.write_timeouts,
            BacklogLeft(self.backlog_left),
        )
    }
}

/// Formats [`Report::backlog_left`] as a report value: the count, or `unknown`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BacklogLeft(pub(crate) Option<u64>);

impl fmt::Display for BacklogLeft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(count) => write!(f, "{count}"),
            None => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec() {
        assert_eq!(exit_code(Reason::Signal, Outcome::Clean), 0);
        assert_eq!(exit_code(Reason::Trigger, Outcome::Clean), 0);
        assert_eq!(exit_code(Reason::Error, Outcome::Clean), 1);
        assert_eq!(exit_code(Reason::Signal, Outcome::Deadline), 124);
        assert_eq!(exit_code(Reason::Signal, Outcome::Forced), 130);
        assert_eq!(exit_code(Reason::Error, Outcome::Deadline), 1);
        assert_eq!(exit_code(Reason::Error, Outcome::Forced), 130);
    }

    #[test]
    fn worst_outcome_wins() {
        assert_eq!(Outcome::Clean.worst(Outcome::Deadline), Outcome::Deadline);
        assert_eq!(Outcome::Forced.worst(Outcome::Deadline), Outcome::Forced);
        assert_eq!(Outcome::Clean.worst(Outcome::Clean), Outcome::Clean);
    }
}
