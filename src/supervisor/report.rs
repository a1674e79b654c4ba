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

/// What [`TaskGroup::join`](super::TaskGroup::join) found: every task with its outcome, in spawn order.
#[derive(Debug, Default)]
#[must_use = "the report says which tasks failed or were left running"]
pub struct TaskReport {
    /// Every task of the group, in the order they were spawned.
    pub tasks: Vec<TaskRecord>,
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

    /// Tasks that returned `Ok(())`.
    pub fn finished(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Finished))
    }

    /// Tasks that returned an error.
    pub fn failed(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Failed(_)))
    }

    /// Tasks that panicked.
    pub fn panicked(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Panicked(_)))
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

    /// The outcome of the task called `name`, if the group had one.
    pub fn outcome(&self, name: &str) -> Option<&TaskOutcome> {
        self.tasks
            .iter()
            .find(|task| task.name == name)
            .map(|task| &task.outcome)
    }

    /// True if every task finished successfully before the deadline.
    pub fn is_clean(&self) -> bool {
        self.tasks.iter().all(|task| !task.outcome.is_failure())
    }
}

impl fmt::Display for TaskReport {
    /// `tasks=<n> finished=<n> failed=<n> panicked=<n> detached=<n> tasks_ms=<n>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tasks={} finished={} failed={} panicked={} detached={} tasks_ms={}",
            self.tasks.len(),
            self.finished(),
            self.failed(),
            self.panicked(),
            self.detached(),
            self.elapsed.as_millis()
        )
    }
}
