//! Hooks and resource closes as bounded steps: each runs on a named thread and is
//! waited for until its own timeout or the end of the budget, whichever comes first.

use std::time::{Duration, Instant};

use super::StepRecord;
use crate::threads::{self, deadline_after, TaskOutcome, TaskResult};

/// A cleanup step that starts after the budget is spent still gets this long (or its
/// own timeout, if shorter). Closing the database is worth overrunning the budget by a
/// few milliseconds; without a floor it would be started and abandoned at once.
const LAST_CHANCE: Duration = Duration::from_millis(25);

/// A hook or resource close waiting to run.
pub(super) struct Step {
    pub(super) name: String,
    timeout: Duration,
    body: Box<dyn FnOnce() -> TaskResult + Send>,
}

impl Step {
    /// Runs on a thread named `<kind>:<name>` until `now + timeout`, cut short by
    /// `limit` but never below [`LAST_CHANCE`].
    fn run(self, kind: &str, limit: Instant) -> StepRecord {
        let started = Instant::now();
        let own = deadline_after(started, self.timeout);
        let floor = deadline_after(started, self.timeout.min(LAST_CHANCE));
        let deadline = own.min(limit).max(floor);
        let thread_name = format!("{kind}:{}", self.name);
        log::debug!("running {thread_name}");
        let outcome = threads::run_bounded(thread_name.clone(), deadline, self.body);
        match &outcome {
            TaskOutcome::Finished => {}
            TaskOutcome::Detached => log::warn!(
                "{thread_name} still running after {:?}: detached",
                deadline - started
            ),
            failure => log::error!("{thread_name} {failure}"),
        }
        StepRecord {
            name: self.name,
            outcome,
            elapsed: started.elapsed(),
        }
    }
}

pub(super) fn run_steps(steps: Vec<Step>, kind: &str, limit: Instant) -> Vec<StepRecord> {
    steps
        .into_iter()
        .map(|step| step.run(kind, limit))
        .collect()
}

pub(super) fn step<F>(name: impl Into<String>, timeout: Duration, body: F) -> Step
where
    F: FnOnce() -> TaskResult + Send + 'static,
{
    Step {
        name: name.into(),
        timeout,
        body: Box::new(body),
    }
}
