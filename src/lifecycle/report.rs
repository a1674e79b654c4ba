//! The report of one shutdown: what the drain reported, what each hook, task and
//! resource close did, each phase's time, and the contract's report line.

use std::fmt;
use std::time::Duration;

use crate::server::{self, ServerReport};
use crate::shutdown::{exit_code, Outcome, Reason};
use crate::supervisor::{TaskOutcome, TaskReport};

/// What the `drain` closure of [`Lifecycle::run_with`](super::Lifecycle::run_with) reports: the connection counts of
/// a server's drain. The default (all zero, clean) suits a program without a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSummary {
    /// Connections open or queued when draining began that closed gracefully.
    pub drained: u64,
    /// Connections whose handler panicked over the whole run.
    pub panics: u64,
    /// Connections given up on over the whole run because the client read nothing
    /// for the write timeout.
    pub write_timeouts: u64,
    /// Connections force-closed at the deadline.
    pub forced: u64,
    /// Connections refused as busy over the whole run.
    pub refused_busy: u64,
    /// Threads of the drain still running when it gave up, and detached.
    pub detached_threads: u64,
    /// Connections left in the listener's backlog when the drain gave up on them;
    /// `None` if they could not be counted (see
    /// [`ServerReport::backlog_left`]).
    pub backlog_left: Option<u64>,
    /// From the start of draining to the last connection closed, if the drain measured
    /// it; otherwise the lifecycle uses the time until the closure returned.
    pub duration: Option<Duration>,
    /// How the drain ended. A server that forced connections at its deadline says
    /// [`Outcome::Deadline`] here, which keeps its own use of [`Shutdown::force`](crate::Shutdown::force) from
    /// being mistaken for a second signal.
    pub outcome: Outcome,
}

impl Default for DrainSummary {
    fn default() -> Self {
        DrainSummary {
            drained: 0,
            panics: 0,
            write_timeouts: 0,
            forced: 0,
            refused_busy: 0,
            detached_threads: 0,
            backlog_left: Some(0),
            duration: None,
            outcome: Outcome::Clean,
        }
    }
}

impl From<&ServerReport> for DrainSummary {
    fn from(report: &ServerReport) -> Self {
        DrainSummary {
            drained: report.drained,
            panics: report.panics,
            write_timeouts: report.write_timeouts,
            forced: report.forced,
            refused_busy: report.refused_busy,
            detached_threads: report.detached.len() as u64,
            backlog_left: report.backlog_left,
            duration: Some(report.drain),
            outcome: report.outcome,
        }
    }
}

/// One hook or resource close in a [`LifecycleReport`].
#[derive(Debug)]
pub struct StepRecord {
    /// The name it was registered under; its thread is `<kind>:<name>`.
    pub name: String,
    /// How it ended; [`TaskOutcome::Detached`] if it was still running at its deadline.
    pub outcome: TaskOutcome,
    /// How long it ran, or was waited for.
    pub elapsed: Duration,
}

/// The account of one shutdown: why, how it ended, and what each phase did and took.
///
/// Its `Display` is the report line of the contract — `stopped reason=… outcome=…
/// drained=… forced=… refused_busy=… panics=… detached_threads=… drain_ms=…
/// total_ms=…` — followed by `write_timeouts=… tasks=… tasks_failed=…
/// tasks_panicked=… tasks_detached=… tasks_ms=… hooks_failed=… resources=…
/// resources_failed=… cleanup_ms=… backlog_left=…` (`backlog_left` is `unknown`
/// where it cannot be counted). No value contains a space.
#[derive(Debug)]
#[must_use = "print the report and exit with its exit code"]
pub struct LifecycleReport {
    /// What started the shutdown.
    pub reason: Reason,
    /// How it ended.
    pub outcome: Outcome,
    /// What the drain closure reported.
    pub drain: DrainSummary,
    /// Shutdown hooks, in the order run.
    pub shutdown_hooks: Vec<StepRecord>,
    /// The supervised tasks.
    pub tasks: TaskReport,
    /// Cleanup hooks, in the order run.
    pub cleanup_hooks: Vec<StepRecord>,
    /// Resource closes, in the order run (the reverse of registration).
    pub resources: Vec<StepRecord>,
    /// Save-state hooks, in the order run.
    pub save_state: Vec<StepRecord>,
    /// From the trigger to the end of the drain (shutdown hooks included).
    pub drain_time: Duration,
    /// From the end of the drain until the tasks were joined.
    pub tasks_time: Duration,
    /// Cleanup hooks, resources and save-state hooks.
    pub cleanup_time: Duration,
    /// From the trigger to the report.
    pub total_time: Duration,
}

impl LifecycleReport {
    fn steps(&self) -> impl Iterator<Item = &StepRecord> {
        self.shutdown_hooks
            .iter()
            .chain(&self.cleanup_hooks)
            .chain(&self.resources)
            .chain(&self.save_state)
    }

    pub(super) fn judge(&self, forced: bool) -> Outcome {
        match self.drain.outcome {
            Outcome::Forced => return Outcome::Forced,
            // The drain's own deadline may have forced the token; that is no signal.
            Outcome::Deadline => return Outcome::Deadline,
            Outcome::Clean => {}
        }
        if forced {
            Outcome::Forced
        } else if self.detached_threads() > 0
            || self.drain.forced > 0
            || self.drain.backlog_left != Some(0)
        {
            Outcome::Deadline
        } else {
            Outcome::Clean
        }
    }

    /// Threads left running: the drain's, the tasks' and the hooks' or closes' that
    /// were still running at their deadlines.
    pub fn detached_threads(&self) -> u64 {
        let steps = self
            .steps()
            .filter(|step| matches!(step.outcome, TaskOutcome::Detached))
            .count();
        self.drain.detached_threads + (self.tasks.detached() + steps) as u64
    }

    /// Hooks (shutdown, cleanup, save-state) that failed, panicked or were detached.
    pub fn hooks_failed(&self) -> usize {
        self.shutdown_hooks
            .iter()
            .chain(&self.cleanup_hooks)
            .chain(&self.save_state)
            .filter(|step| step.outcome.is_failure())
            .count()
    }

    /// Resource closes that failed, panicked or were detached.
    pub fn resources_failed(&self) -> usize {
        self.resources
            .iter()
            .filter(|step| step.outcome.is_failure())
            .count()
    }

    /// The process exit code (see [`exit_code`]), and 1 when a resource
    /// failed to close (returned an error or panicked) unless the shutdown was forced:
    /// a database that was not flushed is an error the operator must see, not a
    /// clean stop. (A close that hung is detached and already makes the outcome
    /// `deadline`.)
    pub fn exit_code(&self) -> u8 {
        let code = exit_code(self.reason, self.outcome);
        let close_failed = self.resources.iter().any(|step| {
            matches!(
                step.outcome,
                TaskOutcome::Failed(_) | TaskOutcome::Panicked(_)
            )
        });
        if close_failed && self.outcome != Outcome::Forced {
            return 1;
        }
        code
    }
}

impl fmt::Display for LifecycleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stopped reason={} outcome={} drained={} forced={} refused_busy={} panics={} \
             detached_threads={} drain_ms={} total_ms={} write_timeouts={} tasks={} \
             tasks_failed={} tasks_panicked={} tasks_detached={} tasks_ms={} hooks_failed={} \
             resources={} resources_failed={} cleanup_ms={} backlog_left={}",
            self.reason,
            self.outcome,
            self.drain.drained,
            self.drain.forced,
            self.drain.refused_busy,
            self.drain.panics,
            self.detached_threads(),
            self.drain_time.as_millis(),
            self.total_time.as_millis(),
            self.drain.write_timeouts,
            self.tasks.total(),
            self.tasks.failed(),
            self.tasks.panicked(),
            self.tasks.detached(),
            self.tasks_time.as_millis(),
            self.hooks_failed(),
            self.resources.len(),
            self.resources_failed(),
            self.cleanup_time.as_millis(),
            server::BacklogLeft(self.drain.backlog_left),
        )
    }
}
