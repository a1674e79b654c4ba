//! The application lifecycle: startup hooks, shutdown hooks, supervised tasks,
//! resources closed last-in first-out, and one shutdown budget, ending in a report.
//!
//! The phases are those of the contract: **starting → serving → draining → cleanup →
//! stopped**. [`Lifecycle::run_startup_hook`] runs a startup hook at once (so its
//! value, a database pool say, can be handed to the server); when one fails, the
//! resources registered so far are closed in reverse order and [`StartupError`] names
//! the hook.
//! [`Lifecycle::run`] / [`Lifecycle::run_with`] then wait for the shutdown token and
//! take the application down in order:
//!
//! 1. **draining**: shutdown hooks run (aiohttp's `on_shutdown`), while the trigger has
//!    already told every supervised task to stop; the caller's `drain` closure (a
//!    server's join) is given the drain deadline; then the tasks are joined against the
//!    same deadline.
//! 2. **cleanup**, only once the drain and the tasks are over — so no request can still
//!    be using what is closed: cleanup hooks, then resources in reverse order of
//!    registration, then save-state hooks. Each runs on a named thread bounded by its own
//!    timeout; one that hangs is detached and reported, one that fails is reported, and
//!    the rest still run.
//!
//! Every deadline is carved out of one **shutdown budget** (default 30 s, Kubernetes'
//! grace period), counted from the trigger: draining gets the budget minus a cleanup
//! reserve, cleanup gets what is left. The close of a database pool waits for the
//! requests (never a fixed sleep), so a request never meets a closed pool.

use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

use crate::server::ServerHandle;
use crate::shutdown::{Outcome, Reason, Shutdown};
use crate::supervisor::{self, BoxError, SpawnError, TaskGroup, TaskReport};
use crate::threads::deadline_after;

mod report;
mod steps;
#[cfg(test)]
mod tests;

pub use report::{DrainSummary, LifecycleReport, StepRecord};
use steps::{run_steps, step, Step};

/// Default overall shutdown budget: Kubernetes' default grace period.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// A startup hook failed. The resources registered before it have been closed in
/// reverse order (see [`StartupError::undone`]); the application should exit 1.
#[derive(Debug)]
pub struct StartupError {
    hook: String,
    source: BoxError,
    undone: Vec<StepRecord>,
    // Boxed: the error is returned through every startup hook's `?`.
    tasks: Box<TaskReport>,
}

impl StartupError {
    /// The name of the hook that failed.
    pub fn hook(&self) -> &str {
        &self.hook
    }

    /// The resources closed to undo the hooks that had succeeded, in closing order.
    pub fn undone(&self) -> &[StepRecord] {
        &self.undone
    }

    /// The tasks spawned before the failure, stopped and joined.
    pub fn tasks(&self) -> &TaskReport {
        &self.tasks
    }
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cause is part of the message: this is the one line a user reads when the
        // program exits 1, and most printers show only `Display`.
        write!(f, "startup hook `{}` failed: {}", self.hook, self.source)
    }
}

impl Error for StartupError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Startup hooks, shutdown hooks, tasks and resources of one application, taken down in
/// order within one budget.
///
/// ```
/// use lameduck::{Lifecycle, Shutdown};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let shutdown = Shutdown::new();
/// let mut life = Lifecycle::new(&shutdown).with_budget(Duration::from_secs(5));
/// let closed = Arc::new(Mutex::new(Vec::new()));
/// for name in ["database", "cache"] {
///     life.run_startup_hook(name, || Ok::<_, std::io::Error>(()))?;
///     let closed = Arc::clone(&closed);
///     life.resource(name, Duration::from_secs(1), move || {
///         closed.lock().unwrap().push(name);
///         Ok(())
///     });
/// }
/// life.tasks().spawn("ticker", |shutdown| {
///     while !shutdown.wait_timeout(Duration::from_millis(10)) {}
///     Ok(())
/// })?;
/// shutdown.trigger();
/// let report = life.run();
/// assert_eq!(report.exit_code(), 0);
/// assert_eq!(*closed.lock().unwrap(), ["cache", "database"]); // last in, first out
/// assert!(report.to_string().starts_with("stopped reason=trigger outcome=clean "));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Dropping a lifecycle without running it triggers the shutdown (so its tasks stop)
/// and leaves its resources unclosed, with a warning naming them; it never blocks.
#[must_use = "a lifecycle does nothing until `run` takes the application down"]
pub struct Lifecycle {
    shutdown: Shutdown,
    budget: Duration,
    cleanup_reserve: Option<Duration>,
    tasks: TaskGroup,
    shutdown_hooks: Vec<Step>,
    cleanup_hooks: Vec<Step>,
    resources: Vec<Step>,
    save_state: Vec<Step>,
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |steps: &[Step]| steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        f.debug_struct("Lifecycle")
            .field("budget", &self.budget)
            .field("drain_timeout", &self.drain_timeout())
            .field("tasks", &self.tasks)
            .field("shutdown_hooks", &names(&self.shutdown_hooks))
            .field("cleanup_hooks", &names(&self.cleanup_hooks))
            .field("resources", &names(&self.resources))
            .field("save_state", &names(&self.save_state))
            .finish()
    }
}

impl Lifecycle {
    /// A lifecycle driven by `shutdown`, with the default budget of 30 s.
    pub fn new(shutdown: &Shutdown) -> Lifecycle {
        Lifecycle {
            shutdown: shutdown.clone(),
            budget: DEFAULT_BUDGET,
            cleanup_reserve: None,
            tasks: TaskGroup::new(shutdown),
            shutdown_hooks: Vec::new(),
            cleanup_hooks: Vec::new(),
            resources: Vec::new(),
            save_state: Vec::new(),
        }
    }

    /// Sets the overall shutdown budget, from the trigger to the report: drain, task
    /// join and cleanup all fit in it (a cleanup step past it still gets a few
    /// milliseconds). Default: 30 s.
    pub fn with_budget(mut self, budget: Duration) -> Lifecycle {
        self.budget = budget;
        self
    }

    /// Sets the part of the budget kept for cleanup, so a slow drain cannot leave the
    /// database no time to close. Default: a sixth of the budget (5 s of 30 s). Capped
    /// at the budget.
    pub fn with_cleanup_reserve(mut self, reserve: Duration) -> Lifecycle {
        self.cleanup_reserve = Some(reserve);
        self
    }

    /// The overall shutdown budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The time from the trigger to the drain deadline: the budget minus the cleanup
    /// reserve. [`Lifecycle::serve`] holds the server to it; a caller who drains
    /// its own way gets the deadline from [`Lifecycle::run_with`].
    pub fn drain_timeout(&self) -> Duration {
        let reserve = self.cleanup_reserve.unwrap_or(self.budget / 6);
        self.budget.saturating_sub(reserve)
    }

    /// The token this lifecycle waits on.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The supervised tasks: spawn background threads here; they are told to stop when
    /// draining begins and joined against the drain deadline, before any resource is
    /// closed.
    pub fn tasks(&mut self) -> &mut TaskGroup {
        &mut self.tasks
    }

    /// Runs a startup hook now, on this thread, and returns its value. Hooks run in the
    /// order of these calls. Register the hook's undo with [`Lifecycle::resource`] right
    /// after it succeeds.
    ///
    /// # Errors
    /// If `hook` fails: the shutdown is triggered with [`Reason::Error`], tasks spawned
    /// so far are stopped and joined, the resources registered so far are closed in
    /// reverse order (each within its timeout), and a [`StartupError`] naming the hook
    /// is returned.
    pub fn run_startup_hook<T, E, F>(&mut self, name: &str, hook: F) -> Result<T, StartupError>
    where
        F: FnOnce() -> Result<T, E>,
        E: Into<BoxError>,
    {
        log::info!("starting: {name}");
        match hook() {
            Ok(value) => Ok(value),
            Err(err) => {
                let source = err.into();
                // Warn, not error: the caller reports the failure (with RUST_LOG=error
                // that report is the only line).
                log::warn!(
                    "startup hook `{name}` failed: {source}; undoing {} resource(s)",
                    self.resources.len()
                );
                self.shutdown.trigger_with(Reason::Error);
                let began = Instant::now();
                let tasks = self
                    .tasks
                    .join_until(deadline_after(began, self.drain_timeout()));
                let undone = self.close_resources(deadline_after(began, self.budget));
                Err(StartupError {
                    hook: name.to_owned(),
                    source,
                    undone,
                    tasks: Box::new(tasks),
                })
            }
        }
    }

    /// Registers a resource's close. Resources are closed in reverse order of
    /// registration, after the drain and the tasks are over, each on a thread named
    /// `close:<name>` bounded by `timeout`.
    pub fn resource<F>(&mut self, name: impl Into<String>, timeout: Duration, close: F)
    where
        F: FnOnce() -> supervisor::TaskResult + Send + 'static,
    {
        self.resources.push(step(name, timeout, close));
    }

    /// Registers a shutdown hook (aiohttp's `on_shutdown`): it runs as draining begins,
    /// in registration order, on a thread named `shutdown:<name>` bounded by `timeout`
    /// and by the drain deadline. Use it to tell long-lived work to wind down.
    pub fn on_shutdown<F>(&mut self, name: impl Into<String>, timeout: Duration, hook: F)
    where
        F: FnOnce() -> supervisor::TaskResult + Send + 'static,
    {
        self.shutdown_hooks.push(step(name, timeout, hook));
    }

    /// Registers a cleanup hook (aiohttp's `on_cleanup`): it runs after the drain and
    /// the tasks, before resources are closed, in registration order, on a thread named
    /// `cleanup:<name>` bounded by `timeout`.
    pub fn on_cleanup<F>(&mut self, name: impl Into<String>, timeout: Duration, hook: F)
    where
        F: FnOnce() -> supervisor::TaskResult + Send + 'static,
    {
        self.cleanup_hooks.push(step(name, timeout, hook));
    }

    /// Registers a save-state hook: the very last step, after every resource is
    /// closed, in registration order, on a thread named `save:<name>` bounded by
    /// `timeout`.
    pub fn on_save_state<F>(&mut self, name: impl Into<String>, timeout: Duration, hook: F)
    where
        F: FnOnce() -> supervisor::TaskResult + Send + 'static,
    {
        self.save_state.push(step(name, timeout, hook));
    }

    /// Spawns a supervised task; shorthand for `self.tasks().spawn(name, task)`.
    ///
    /// # Errors
    /// [`SpawnError`] if the operating system cannot start the thread.
    pub fn spawn<F>(&mut self, name: impl Into<String>, task: F) -> Result<(), SpawnError>
    where
        F: FnOnce(Shutdown) -> supervisor::TaskResult + Send + 'static,
    {
        self.tasks.spawn(name, task)
    }

    /// [`Lifecycle::run_with`] for a program without a server: nothing to drain.
    pub fn run(self) -> LifecycleReport {
        self.run_with(|_| DrainSummary::default())
    }

    /// [`Lifecycle::run_with`] for a server: its join is the drain, held to the
    /// lifecycle's drain deadline (the budget minus the cleanup reserve) — or to the
    /// server's own [drain timeout](crate::ServerBuilder::drain_timeout), if one was
    /// set and it ends sooner. Either way the cleanup reserve is left to the cleanup.
    pub fn serve(self, server: ServerHandle) -> LifecycleReport {
        self.run_with(|deadline| DrainSummary::from(&server.join_by(deadline)))
    }

    /// Blocks until the shutdown is triggered, then takes the application down:
    /// shutdown hooks; `drain(drain_deadline)`, called on this thread, which should
    /// return by about that deadline (a server's join); the tasks, joined against the
    /// same deadline; cleanup hooks; resources, last in first out; save-state hooks.
    /// Returns the report; nothing in it waits past the budget except `drain` itself.
    ///
    /// A forced shutdown (second signal) stops the wait for tasks; cleanup still runs
    /// within its bounds. Resources are closed even when a task was detached: it may
    /// find its resource closed, which is better than never flushing it.
    // Just over 60 lines on purpose: the phases in the order they run, each timed,
    // read top to bottom as the module doc tells them.
    pub fn run_with<D>(mut self, drain: D) -> LifecycleReport
    where
        D: FnOnce(Instant) -> DrainSummary,
    {
        self.shutdown.wait();
        let began = self.shutdown.triggered_at().unwrap_or_else(Instant::now);
        let reason = self.shutdown.reason().unwrap_or(Reason::Trigger);
        let drain_deadline = deadline_after(began, self.drain_timeout());
        let budget_end = deadline_after(began, self.budget);
        log::info!(
            "draining (reason={reason}): drain deadline in {:.1?}, budget {:?}",
            drain_deadline.saturating_duration_since(Instant::now()),
            self.budget
        );

        let shutdown_hooks = run_steps(
            std::mem::take(&mut self.shutdown_hooks),
            "shutdown",
            drain_deadline,
        );
        let drain_summary = drain(drain_deadline);
        let drain_done = Instant::now();

        let tasks = self.tasks.join_until(drain_deadline);
        let tasks_done = Instant::now();
        if tasks.detached() > 0 && !self.resources.is_empty() {
            log::warn!(
                "closing resources while detached task(s) {:?} may still use them",
                tasks.detached_names()
            );
        }

        let cleanup_hooks = run_steps(
            std::mem::take(&mut self.cleanup_hooks),
            "cleanup",
            budget_end,
        );
        let resources = self.close_resources(budget_end);
        let save_state = run_steps(std::mem::take(&mut self.save_state), "save", budget_end);
        let finished = Instant::now();

        let mut report = LifecycleReport {
            reason,
            outcome: Outcome::Clean,
            drain: drain_summary,
            shutdown_hooks,
            tasks,
            cleanup_hooks,
            resources,
            save_state,
            drain_time: drain_summary
                .duration
                .unwrap_or_else(|| drain_done.saturating_duration_since(began)),
            tasks_time: tasks_done - drain_done,
            cleanup_time: finished - tasks_done,
            total_time: finished.saturating_duration_since(began),
        };
        report.outcome = report.judge(self.shutdown.is_forced());
        log::debug!("{report}");
        report
    }

    /// Closes every registered resource, last registered first.
    fn close_resources(&mut self, limit: Instant) -> Vec<StepRecord> {
        let mut resources = std::mem::take(&mut self.resources);
        resources.reverse();
        run_steps(resources, "close", limit)
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        if !self.resources.is_empty() {
            let names: Vec<_> = self.resources.iter().map(|step| &step.name).collect();
            log::warn!("lifecycle dropped without running: resources {names:?} left unclosed");
            // Tell the tasks to stop; the task group's own drop would too.
            self.shutdown.trigger();
        }
    }
}
