//! Supervised background tasks: named threads that receive the shutdown token, are told
//! to stop by its trigger, and are joined against one deadline.
//!
//! This is the thread version of the tutorial's `asyncio.TaskGroup` and its "graceful
//! cancel with timeout" (`asyncio.wait(tasks, timeout=...)`). Threads cannot be
//! cancelled, so stopping is cooperative: every task gets a clone of the [`Shutdown`]
//! token and is expected to return soon after it fires. What the group guarantees is the
//! other half: [`TaskGroup::join`] never waits past its deadline. Each thread holds a
//! "done" guard that reports on a channel when the thread ends — normally, with an
//! error, or by panic — and the joiner waits on that channel with a deadline (the
//! crate's one deadline join, shared with the server's threads). Tasks
//! still running at the deadline are detached, named in the log and in the
//! [`TaskReport`].
//!
//! A group forgets each task once it has ended, keeping only its outcome in a count
//! (and the most recent failures with their errors), so a group that starts a task
//! per connection holds the tasks running, not every task it ever ran.
//!
//! A task that fails (returns an error or panics) can take the whole application down
//! with it ([`OnFailure::ShutdownAll`], the default: the token is triggered with
//! [`Reason::Error`]) or only be reported ([`OnFailure::Report`]).

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use crate::shutdown::{Reason, Shutdown};
use crate::threads::{Crew, JoinEnd};

mod report;
#[cfg(test)]
mod tests;

pub use crate::threads::{BoxError, SpawnError, TaskOutcome, TaskResult};
pub use report::{TaskCounts, TaskRecord, TaskReport};

/// How many failures among the tasks a group has forgotten it keeps, with their
/// errors, for its report; older ones are only counted.
const FAILURES_KEPT: usize = 64;

/// What a task's failure (an error returned, or a panic) does to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Trigger the shutdown of the whole application with [`Reason::Error`] (the
    /// default, as in tokio-graceful-shutdown: a background task that dies unnoticed
    /// is worse than a restart).
    #[default]
    ShutdownAll,
    /// Only log the failure and report it when the group is joined.
    Report,
}

/// A group of named background threads stopped by one shutdown token and joined
/// against one deadline.
///
/// ```
/// use lameduck::{Shutdown, TaskGroup};
/// use std::time::{Duration, Instant};
///
/// let shutdown = Shutdown::new();
/// let mut tasks = TaskGroup::new(&shutdown);
/// tasks.spawn("ticker", |shutdown| {
///     // Periodic work, interruptible by the token: no fixed sleeps.
///     while !shutdown.wait_timeout(Duration::from_millis(10)) {}
///     Ok(())
/// })?;
/// let report = tasks.stop(Instant::now() + Duration::from_secs(5));
/// assert!(report.is_clean());
/// assert_eq!(report.finished(), 1);
/// # Ok::<(), lameduck::supervisor::SpawnError>(())
/// ```
///
/// Dropping a group without joining it triggers the shutdown (so its threads are told
/// to stop) and detaches them without waiting.
#[must_use = "a task group must be joined, or its threads are detached unreported"]
pub struct TaskGroup {
    shutdown: Shutdown,
    crew: Crew,
    /// The tasks forgotten once ended, counted...
    forgotten: TaskCounts,
    /// ...but for the last failures among them, kept for the report.
    failures: VecDeque<TaskRecord>,
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("tasks", &self.names())
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

impl TaskGroup {
    /// An empty group whose tasks will receive clones of `shutdown`.
    pub fn new(shutdown: &Shutdown) -> TaskGroup {
        TaskGroup {
            shutdown: shutdown.clone(),
            crew: Crew::with_prefix("task:"),
            forgotten: TaskCounts::default(),
            failures: VecDeque::new(),
        }
    }

    /// The token the group's tasks receive.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Number of tasks the group holds: those running, and those that ended since
    /// the group last forgot the ended ones (it does at each spawn). What a group
    /// holds, in memory too, is bounded by the tasks running at once, however many
    /// it has run.
    pub fn len(&self) -> usize {
        self.crew.len()
    }

    /// True if the group holds no task (none spawned, all joined, or all forgotten).
    pub fn is_empty(&self) -> bool {
        self.crew.len() == 0
    }

    /// Names of the tasks the group holds (see [`TaskGroup::len`]), in spawn order.
    pub fn names(&self) -> Vec<&str> {
        self.crew.names()
    }

    /// Forgets the tasks that have ended, keeping their outcomes for the report.
    fn forget_ended(&mut self) {
        for (name, outcome) in self.crew.take_ended() {
            if outcome.is_failure() {
                if self.failures.len() == FAILURES_KEPT {
                    if let Some(oldest) = self.failures.pop_front() {
                        self.forgotten.add(&oldest.outcome);
                    }
                }
                self.failures.push_back(TaskRecord { name, outcome });
            } else {
                self.forgotten.add(&outcome);
            }
        }
    }

    /// Starts `task` on a thread named `task:<name>` with a clone of the token. A
    /// failure (error or panic) shuts the whole application down
    /// ([`OnFailure::ShutdownAll`]); use [`TaskGroup::spawn_with`] to only report it.
    ///
    /// The task should return soon after the token is triggered: wait on it with
    /// [`Shutdown::wait_timeout`] between units of work, or select on
    /// [`Shutdown::when_triggered`] beside its own channels.
    ///
    /// # Errors
    /// [`SpawnError`] if the operating system cannot start the thread.
    pub fn spawn<F>(&mut self, name: impl Into<String>, task: F) -> Result<(), SpawnError>
    where
        F: FnOnce(Shutdown) -> TaskResult + Send + 'static,
    {
        self.spawn_with(name, OnFailure::ShutdownAll, task)
    }

    /// Like [`TaskGroup::spawn`], choosing what a failure of this task does.
    ///
    /// # Errors
    /// [`SpawnError`] if the operating system cannot start the thread.
    pub fn spawn_with<F>(
        &mut self,
        name: impl Into<String>,
        on_failure: OnFailure,
        task: F,
    ) -> Result<(), SpawnError>
    where
        F: FnOnce(Shutdown) -> TaskResult + Send + 'static,
    {
        self.forget_ended();
        let name = name.into();
        let token = self.shutdown.clone();
        let for_failure = self.shutdown.clone();
        let task_name = name.clone();
        let react = move |outcome: &TaskOutcome| match on_failure {
            OnFailure::ShutdownAll => {
                if for_failure.trigger_with(Reason::Error) {
                    log::error!("task `{task_name}` {outcome}: shutting down");
                } else {
                    // Already shutting down for another reason, which stays the reason.
                    log::error!("task `{task_name}` {outcome}");
                }
            }
            OnFailure::Report => log::error!("task `{task_name}` {outcome}"),
        };
        let body = move || task(token);
        match self.crew.spawn(name.clone(), None, body, react) {
            Ok(()) => {
                log::debug!("task `{name}` started");
                Ok(())
            }
            Err(source) => Err(SpawnError::new(name, source)),
        }
    }

    /// Triggers the shutdown (with [`Reason::Trigger`] unless it has already started),
    /// then [joins](TaskGroup::join) the tasks against `deadline`.
    pub fn stop(mut self, deadline: Instant) -> TaskReport {
        self.shutdown.trigger();
        self.join_until(deadline)
    }

    /// Waits until every task has ended, the `deadline` passes, or the shutdown is
    /// forced — whichever comes first — and reports each task's outcome. It does not
    /// trigger the shutdown itself (see [`TaskGroup::stop`]). Tasks still running are
    /// detached and named in the log.
    pub fn join(mut self, deadline: Instant) -> TaskReport {
        self.join_until(deadline)
    }

    /// The join behind [`TaskGroup::join`], on a borrowed group (the lifecycle keeps
    /// its group); the group is empty afterwards.
    pub(crate) fn join_until(&mut self, deadline: Instant) -> TaskReport {
        let started = Instant::now();
        let mut crew = std::mem::replace(&mut self.crew, Crew::with_prefix("task:"));
        let end = crew.join_until(deadline, &self.shutdown.when_forced());
        let aborted_by_force = end == JoinEnd::Aborted;
        if aborted_by_force {
            log::warn!(
                "shutdown forced: no longer waiting for {} task(s)",
                crew.alive()
            );
        }
        let held = crew.finish().into_iter().map(|(name, outcome)| {
            if matches!(outcome, TaskOutcome::Detached) {
                log::warn!(
                    "task `{name}` (thread task:{name}) still running at the deadline: detached"
                );
            }
            TaskRecord { name, outcome }
        });
        let tasks = std::mem::take(&mut self.failures)
            .into_iter()
            .chain(held)
            .collect();
        TaskReport {
            tasks,
            forgotten: std::mem::take(&mut self.forgotten),
            elapsed: started.elapsed(),
            aborted_by_force,
        }
    }
}

impl Drop for TaskGroup {
    fn drop(&mut self) {
        if !self.is_empty() {
            log::warn!(
                "task group dropped without a join: triggering shutdown and detaching {:?}",
                self.names()
            );
            self.shutdown.trigger();
        }
    }
}
