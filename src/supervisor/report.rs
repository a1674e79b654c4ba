//! What became of each task of a group: finished, failed, panicked or detached.

use std::fmt;
use std::time::Duration;

use super::TaskOutcome;

/// One task in a [`TaskReport`].
#[derive(Debug)]
pub struct TaskRecord {
    /// The name given to [`TaskGroup::spawn`](super::TaskGroup::spawn); the thread is named `task:<name>`.
    pub name: String,
    /// How it ended.
    pub outcome: TaskOutcome,
}

/// How many of the tasks a group forgot (they had ended before its join) ended each
/// way; see [`TaskReport::forgotten`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TaskCounts {
    /// Returned `Ok(())`.
    pub finished: usize,
    /// Returned an error.
    pub failed: usize,
    /// Panicked.
    pub panicked: usize,
}

impl TaskCounts {
    /// All of them.
    pub fn total(&self) -> usize {
        self.finished + self.failed + self.panicked
    }

    /// Counts one more task that ended with `outcome`.
    pub(super) fn add(&mut self, outcome: &TaskOutcome) {
        match outcome {
            TaskOutcome::Finished => self.finished += 1,
            TaskOutcome::Failed(_) => self.failed += 1,
            TaskOutcome::Panicked(_) => self.panicked += 1,
            // Only ended tasks are forgotten; a detached one is still in the group.
            TaskOutcome::Detached => {}
        }
    }
}

/// What [`TaskGroup::join`](super::TaskGroup::join) found: how every task the group
/// ever ran ended.
///
/// A group forgets the tasks that ended before its join (so one that starts a task
/// per connection does not grow for the life of the process): those are counted in
/// [`TaskReport::forgotten`], and the most recent of their failures are kept in
/// [`TaskReport::tasks`] with their errors. The counting methods
/// ([`TaskReport::finished`] and the rest) include them.
#[derive(Debug, Default)]
#[must_use = "the report says which tasks failed or were left running"]
pub struct TaskReport {
    /// The last failures (errors and panics) among the tasks the group forgot, then
    /// every task it still held at the join — running, or ended since it last
    /// forgot — each part in spawn order.
    pub tasks: Vec<TaskRecord>,
    /// The tasks forgotten before the join and not in [`TaskReport::tasks`].
    pub forgotten: TaskCounts,
    /// How long the join waited.
    pub elapsed: Duration,
    /// True if the join stopped waiting because the shutdown was forced.
    pub aborted_by_force: bool,
}

impl TaskReport {
    fn count(&self, wanted: fn(&TaskOutcome) -> bool) -> usize {
        self.tasks
            .iter()
            .filter(|task| wanted(&task.outcome))
            .count()
    }

    /// Every task the group ran.
    pub fn total(&self) -> usize {
        self.tasks.len() + self.forgotten.total()
    }

    /// Tasks that returned `Ok(())`.
    pub fn finished(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Finished)) + self.forgotten.finished
    }

    /// Tasks that returned an error.
    pub fn failed(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Failed(_))) + self.forgotten.failed
    }

    /// Tasks that panicked.
    pub fn panicked(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Panicked(_))) + self.forgotten.panicked
    }

    /// Tasks still running at the deadline (their threads were detached).
    pub fn detached(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Detached))
    }

    /// Names of the tasks that were detached.
    pub fn detached_names(&self) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|task| matches!(task.outcome, TaskOutcome::Detached))
            .map(|task| task.name.as_str())
            .collect()
    }

    /// The outcome of the task called `name` (the last listed, if several had that
    /// name), if the report lists it: a task that finished before the join is only
    /// counted.
    pub fn outcome(&self, name: &str) -> Option<&TaskOutcome> {
        self.tasks
            .iter()
            .rev()
            .find(|task| task.name == name)
            .map(|task| &task.outcome)
    }

    /// True if every task finished successfully before the deadline.
    pub fn is_clean(&self) -> bool {
        self.tasks.iter().all(|task| !task.outcome.is_failure())
            && self.forgotten.failed == 0
            && self.forgotten.panicked == 0
    }
}

impl fmt::Display for TaskReport {
    /// `tasks=<n> finished=<n> failed=<n> panicked=<n> detached=<n> tasks_ms=<n>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tasks={} finished={} failed={} panicked={} detached={} tasks_ms={}",
            self.total(),
            self.finished(),
            self.failed(),
            self.panicked(),
            self.detached(),
            self.elapsed.as_millis()
        )
    }
}
