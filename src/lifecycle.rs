//! The application lifecycle: startup hooks, shutdown hooks, supervised tasks,
//! resources closed last-in first-out, and one shutdown budget, ending in a report.
//!
//! The phases are those of the contract: **starting → serving → draining → cleanup →
//! stopped**. [`Lifecycle::start`] runs a startup hook at once (so its value, a
//! database pool say, can be handed to the server); when one fails, the resources
//! registered so far are closed in reverse order and [`StartupError`] names the hook.
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
//! reserve, cleanup gets what is left. The tutorial's database example closes its pool
//! after a fixed one-second sleep, whether requests are done or not; here the close
//! waits for them, and a request never meets a closed pool.

use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

pub use crate::server::Outcome;
use crate::server::{self as server, ServerHandle};
use crate::shutdown::{Reason, Shutdown};
use crate::supervisor::{self, BoxError, SpawnError, TaskGroup, TaskOutcome, TaskReport};

/// Default overall shutdown budget: Kubernetes' default grace period.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// A cleanup step that starts after the budget is spent still gets this long (or its
/// own timeout, if shorter). Closing the database is worth overrunning the budget by a
/// few milliseconds; without a floor it would be started and abandoned at once.
const LAST_CHANCE: Duration = Duration::from_millis(25);

/// `from + after`, saturating instead of panicking when a huge budget or timeout (user
/// input) would overflow `Instant`: a deadline a century away is as good as none.
fn deadline_after(from: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    from.checked_add(after)
        .or_else(|| from.checked_add(CENTURY))
        .unwrap_or(from)
}

/// What the `drain` closure of [`Lifecycle::run_with`] reports: the connection counts of
/// a server's drain. The default (all zero, clean) suits a program without a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSummary {
    /// Connections open or queued when draining began that closed gracefully.
    pub drained: u64,
    /// Connections whose handler panicked over the whole run.
    pub panics: u64,
    /// Connections force-closed at the deadline.
    pub forced: u64,
    /// Connections refused as busy over the whole run.
    pub refused_busy: u64,
    /// Threads of the drain still running when it gave up, and detached.
    pub detached_threads: u64,
    /// From the start of draining to the last connection closed, if the drain measured
    /// it; otherwise the lifecycle uses the time until the closure returned.
    pub duration: Option<Duration>,
    /// How the drain ended. A server that forced connections at its deadline says
    /// [`Outcome::Deadline`] here, which keeps its own use of [`Shutdown::force`] from
    /// being mistaken for a second signal.
    pub outcome: Outcome,
}

impl Default for DrainSummary {
    fn default() -> Self {
        DrainSummary {
            drained: 0,
            panics: 0,
            forced: 0,
            refused_busy: 0,
            detached_threads: 0,
            duration: None,
            outcome: Outcome::Clean,
        }
    }
}

impl From<&server::Report> for DrainSummary {
    fn from(report: &server::Report) -> Self {
        DrainSummary {
            drained: report.drained,
            panics: report.panics,
            forced: report.forced,
            refused_busy: report.refused_busy,
            detached_threads: report.detached.len() as u64,
            duration: Some(report.drain),
            outcome: report.outcome,
        }
    }
}

/// One hook or resource close in a [`Report`].
#[derive(Debug)]
pub struct StepRecord {
    /// The name it was registered under; its thread is `<kind>:<name>`.
    pub name: String,
    /// How it ended; [`TaskOutcome::Detached`] if it was still running at its deadline.
    pub outcome: TaskOutcome,
    /// How long it ran, or was waited for.
    pub elapsed: Duration,
}

/// A startup hook failed. The resources registered before it have been closed in
/// reverse order (see [`StartupError::undone`]); the application should exit 1.
#[derive(Debug)]
pub struct StartupError {
    hook: String,
    source: BoxError,
    undone: Vec<StepRecord>,
    tasks: TaskReport,
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

/// A hook or resource close waiting to run.
struct Step {
    name: String,
    timeout: Duration,
    body: Box<dyn FnOnce() -> supervisor::TaskResult + Send>,
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
        let outcome = supervisor::run_bounded(thread_name.clone(), deadline, self.body);
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

fn run_steps(steps: Vec<Step>, kind: &str, limit: Instant) -> Vec<StepRecord> {
    steps
        .into_iter()
        .map(|step| step.run(kind, limit))
        .collect()
}

fn step<F>(name: impl Into<String>, timeout: Duration, body: F) -> Step
where
    F: FnOnce() -> supervisor::TaskResult + Send + 'static,
{
    Step {
        name: name.into(),
        timeout,
        body: Box::new(body),
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
///     life.start(name, || Ok::<_, std::io::Error>(()))?;
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
    /// reserve. Give the server the same drain timeout.
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
    pub fn start<T, E, F>(&mut self, name: &str, hook: F) -> Result<T, StartupError>
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
                    .join_until(deadline_after(began, self.drain_timeout()), true);
                let undone = self.close_resources(deadline_after(began, self.budget));
                Err(StartupError {
                    hook: name.to_owned(),
                    source,
                    undone,
                    tasks,
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
    pub fn run(self) -> Report {
        self.run_with(|_| DrainSummary::default())
    }

    /// [`Lifecycle::run_with`] for a server: its join is the drain. Start the server
    /// with [`Lifecycle::drain_timeout`] as its drain timeout so both agree.
    pub fn serve(self, server: ServerHandle) -> Report {
        self.run_with(|_deadline| DrainSummary::from(&server.join()))
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
    pub fn run_with<D>(mut self, drain: D) -> Report
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

        let tasks = self.tasks.join_until(drain_deadline, true);
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

        let mut report = Report {
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

/// The account of one shutdown: why, how it ended, and what each phase did and took.
///
/// Its `Display` is the report line of the contract — `stopped reason=… outcome=…
/// drained=… forced=… refused_busy=… detached_threads=… drain_ms=… total_ms=…` —
/// followed by `tasks=… tasks_failed=… tasks_panicked=… tasks_detached=… tasks_ms=…
/// hooks_failed=… resources=… resources_failed=… cleanup_ms=…`. No value contains a
/// space.
#[derive(Debug)]
#[must_use = "print the report and exit with its exit code"]
pub struct Report {
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

impl Report {
    fn steps(&self) -> impl Iterator<Item = &StepRecord> {
        self.shutdown_hooks
            .iter()
            .chain(&self.cleanup_hooks)
            .chain(&self.resources)
            .chain(&self.save_state)
    }

    fn judge(&self, forced: bool) -> Outcome {
        match self.drain.outcome {
            Outcome::Forced => return Outcome::Forced,
            // The drain's own deadline may have forced the token; that is no signal.
            Outcome::Deadline => return Outcome::Deadline,
            Outcome::Clean => {}
        }
        if forced {
            Outcome::Forced
        } else if self.detached_threads() > 0 || self.drain.forced > 0 {
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

    /// The process exit code (see [`server::exit_code`]).
    pub fn exit_code(&self) -> u8 {
        server::exit_code(self.reason, self.outcome)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stopped reason={} outcome={} drained={} forced={} refused_busy={} panics={} \
             detached_threads={} drain_ms={} total_ms={} tasks={} tasks_failed={} \
             tasks_panicked={} tasks_detached={} tasks_ms={} hooks_failed={} resources={} \
             resources_failed={} cleanup_ms={}",
            self.reason,
            self.outcome,
            self.drain.drained,
            self.drain.forced,
            self.drain.refused_busy,
            self.drain.panics,
            self.detached_threads(),
            self.drain_time.as_millis(),
            self.total_time.as_millis(),
            self.tasks.tasks.len(),
            self.tasks.failed(),
            self.tasks.panicked(),
            self.tasks.detached(),
            self.tasks_time.as_millis(),
            self.hooks_failed(),
            self.resources.len(),
            self.resources_failed(),
            self.cleanup_time.as_millis(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// An ordered log of what happened, shared with hooks running on other threads.
    #[derive(Clone, Default)]
    struct Events(Arc<Mutex<Vec<String>>>);

    impl Events {
        fn push(&self, event: impl Into<String>) {
            self.0.lock().unwrap().push(event.into());
        }

        fn list(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }

        fn position(&self, event: &str) -> usize {
            let list = self.list();
            list.iter()
                .position(|seen| seen == event)
                .unwrap_or_else(|| panic!("`{event}` never happened; saw {list:?}"))
        }

        fn closer(&self, event: &str) -> impl FnOnce() -> supervisor::TaskResult + Send {
            let events = self.clone();
            let event = event.to_owned();
            move || {
                events.push(event);
                Ok(())
            }
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn startup_runs_in_order_and_resources_close_in_reverse() {
        let shutdown = Shutdown::new();
        let events = Events::default();
        let mut life = Lifecycle::new(&shutdown);
        for name in ["config", "database", "cache"] {
            let value = life
                .start(name, || {
                    events.push(format!("open {name}"));
                    Ok::<_, io::Error>(name.len())
                })
                .unwrap();
            assert_eq!(value, name.len());
            life.resource(name, SECOND, events.closer(&format!("close {name}")));
        }
        shutdown.trigger();
        let report = life.run();
        assert_eq!(
            events.list(),
            [
                "open config",
                "open database",
                "open cache",
                "close cache",
                "close database",
                "close config"
            ]
        );
        let closed: Vec<_> = report.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(closed, ["cache", "database", "config"]);
        assert_eq!(report.outcome, Outcome::Clean);
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn a_failing_startup_hook_undoes_the_ones_before_it_in_reverse() {
        let shutdown = Shutdown::new();
        let events = Events::default();
        let mut life = Lifecycle::new(&shutdown);
        for name in ["database", "cache"] {
            life.start(name, || Ok::<_, io::Error>(())).unwrap();
            life.resource(name, SECOND, events.closer(&format!("close {name}")));
        }
        let err = life
            .start("queue", || {
                Err::<(), _>(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "broker refused",
                ))
            })
            .unwrap_err();
        assert_eq!(err.hook(), "queue");
        assert_eq!(
            err.to_string(),
            "startup hook `queue` failed: broker refused"
        );
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("broker refused")
        );
        assert_eq!(events.list(), ["close cache", "close database"]);
        let undone: Vec<_> = err.undone().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(undone, ["cache", "database"]);
        assert_eq!(shutdown.reason(), Some(Reason::Error));
    }

    #[test]
    fn a_failing_startup_hook_stops_tasks_before_closing_resources() {
        let shutdown = Shutdown::new();
        let events = Events::default();
        let mut life = Lifecycle::new(&shutdown);
        life.resource("database", SECOND, events.closer("close database"));
        life.spawn("warmer", {
            let events = events.clone();
            move |shutdown| {
                shutdown.wait();
                events.push("warmer stopped");
                Ok(())
            }
        })
        .unwrap();
        let err = life
            .start("cache", || Err::<(), _>("cache unreachable"))
            .unwrap_err();
        assert_eq!(err.tasks().finished(), 1);
        assert_eq!(events.list(), ["warmer stopped", "close database"]);
    }

    #[test]
    fn dropping_without_running_triggers_so_tasks_stop() {
        let shutdown = Shutdown::new();
        let mut life = Lifecycle::new(&shutdown);
        life.resource("database", SECOND, || Ok(()));
        drop(life);
        assert!(shutdown.is_triggered());
    }

    #[test]
    fn a_hanging_close_is_bounded_reported_and_the_rest_still_run() {
        let shutdown = Shutdown::new();
        let events = Events::default();
        let mut life = Lifecycle::new(&shutdown);
        life.resource("first", SECOND, events.closer("close first"));
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        life.resource("hangs", Duration::from_millis(50), move || {
            let _ = release_rx.recv();
            Ok(())
        });
        life.resource("last", SECOND, events.closer("close last"));
        shutdown.trigger();
        let started = Instant::now();
        let report = life.run();
        assert!(started.elapsed() < Duration::from_secs(5), "{report:?}");
        assert_eq!(events.list(), ["close last", "close first"]);
        assert!(matches!(report.resources[1].outcome, TaskOutcome::Detached));
        assert_eq!(report.resources[1].name, "hangs");
        assert_eq!(report.resources_failed(), 1);
        assert_eq!(report.detached_threads(), 1);
        assert_eq!(report.outcome, Outcome::Deadline);
        assert_eq!(report.exit_code(), 124);
        drop(release_tx);
    }

    #[test]
    fn a_failing_close_is_reported_and_the_rest_still_run() {
        let shutdown = Shutdown::new();
        let events = Events::default();
        let mut life = Lifecycle::new(&shutdown);
        life.resource("first", SECOND, events.closer("close first"));
        life.resource("broken", SECOND, || Err("flush failed".into()));
        life.resource("panics", SECOND, || panic!("close panicked"));
        shutdown.trigger();
        let report = life.run();
        assert_eq!(events.list(), ["close first"]);
        assert_eq!(report.resources_failed(), 2);
        assert!(report
            .to_string()
            .contains(" resources=3 resources_failed=2 "));
        match &report.resources[1].outcome {
            TaskOutcome::Failed(err) => assert_eq!(err.to_string(), "flush failed"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn draining_runs_hooks_then_drain_then_tasks_then_cleanup_in_order() {
        let shutdown = Shutdown::new();
        let events = Events::default();
        let mut life = Lifecycle::new(&shutdown);
        life.resource("database", SECOND, events.closer("close database"));
        life.on_shutdown("notify", SECOND, {
            let events = events.clone();
            let shutdown = shutdown.clone();
            move || {
                events.push(format!(
                    "shutdown hook, triggered={}",
                    shutdown.is_triggered()
                ));
                Ok(())
            }
        });
        life.on_cleanup("flush", SECOND, events.closer("cleanup hook"));
        life.on_save_state("state", SECOND, events.closer("save state"));
        life.tasks()
            .spawn("worker", {
                let events = events.clone();
                move |shutdown| {
                    shutdown.wait();
                    events.push("task stopped");
                    Ok(())
                }
            })
            .unwrap();
        shutdown.trigger_with(Reason::Signal);
        let report = life.run_with(|_deadline| {
            events.push("drain");
            DrainSummary {
                drained: 3,
                ..DrainSummary::default()
            }
        });
        let hook = events.position("shutdown hook, triggered=true");
        let drain = events.position("drain");
        let task = events.position("task stopped");
        let cleanup = events.position("cleanup hook");
        let close = events.position("close database");
        let save = events.position("save state");
        assert!(hook < drain && drain < cleanup, "{:?}", events.list());
        assert!(task < cleanup && cleanup < close && close < save);
        assert!(report
            .to_string()
            .starts_with("stopped reason=signal outcome=clean drained=3 forced=0 "));
    }

    #[test]
    fn the_drain_gets_the_budget_minus_the_cleanup_reserve() {
        let shutdown = Shutdown::new();
        let life = Lifecycle::new(&shutdown)
            .with_budget(Duration::from_secs(10))
            .with_cleanup_reserve(Duration::from_secs(3));
        assert_eq!(life.drain_timeout(), Duration::from_secs(7));
        shutdown.trigger();
        let began = shutdown.triggered_at().unwrap();
        let mut given = None;
        let report = life.run_with(|deadline| {
            given = Some(deadline);
            DrainSummary::default()
        });
        assert_eq!(given, Some(began + Duration::from_secs(7)));
        assert_eq!(report.exit_code(), 0);
        let defaults = Lifecycle::new(&shutdown);
        assert_eq!(defaults.drain_timeout(), Duration::from_secs(25));
        let huge = Lifecycle::new(&shutdown).with_budget(Duration::MAX);
        let report = huge.run();
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn a_stubborn_task_is_detached_at_the_drain_deadline() {
        let shutdown = Shutdown::new();
        let events = Events::default();
        let mut life = Lifecycle::new(&shutdown)
            .with_budget(Duration::from_millis(300))
            .with_cleanup_reserve(Duration::from_millis(100));
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        life.spawn("stubborn", move |_| {
            let _ = release_rx.recv();
            Ok(())
        })
        .unwrap();
        life.resource("database", SECOND, events.closer("close database"));
        shutdown.trigger_with(Reason::Signal);
        let report = life.run();
        assert_eq!(report.tasks.detached_names(), ["stubborn"]);
        assert_eq!(report.outcome, Outcome::Deadline);
        assert_eq!(report.exit_code(), 124);
        assert!(report.total_time < Duration::from_secs(3), "{report}");
        assert_eq!(events.list(), ["close database"]);
        drop(release_tx);
    }

    #[test]
    fn forcing_cuts_the_wait_short_but_cleanup_still_runs() {
        let shutdown = Shutdown::new();
        let events = Events::default();
        let mut life = Lifecycle::new(&shutdown);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        life.spawn("stubborn", move |_| {
            let _ = release_rx.recv();
            Ok(())
        })
        .unwrap();
        life.resource("database", SECOND, events.closer("close database"));
        shutdown.trigger_with(Reason::Signal);
        shutdown.force_with(Reason::Signal);
        let report = life.run();
        assert!(report.total_time < Duration::from_secs(5));
        assert_eq!(report.outcome, Outcome::Forced);
        assert_eq!(report.exit_code(), 130);
        assert_eq!(events.list(), ["close database"]);
        drop(release_tx);
    }

    #[test]
    fn a_drain_that_forced_at_its_deadline_is_not_a_second_signal() {
        let shutdown = Shutdown::new();
        let life = Lifecycle::new(&shutdown);
        shutdown.trigger_with(Reason::Signal);
        let report = life.run_with(|_| {
            // What a server does when its drain deadline passes.
            shutdown.force();
            DrainSummary {
                forced: 2,
                outcome: Outcome::Deadline,
                ..DrainSummary::default()
            }
        });
        assert_eq!(report.outcome, Outcome::Deadline);
        assert_eq!(report.exit_code(), 124);
    }

    #[test]
    fn a_failing_task_stops_the_application_with_reason_error() {
        let shutdown = Shutdown::new();
        let mut life = Lifecycle::new(&shutdown);
        life.spawn("loader", |_| Err("lost the upstream".into()))
            .unwrap();
        // Nobody triggers: the task's failure does.
        let report = life.run();
        assert_eq!(report.reason, Reason::Error);
        assert_eq!(report.exit_code(), 1);
        assert!(report.to_string().contains(" tasks=1 tasks_failed=1 "));
    }

    #[test]
    fn the_report_line_is_key_value_pairs_without_spaces() {
        let shutdown = Shutdown::new();
        let life = Lifecycle::new(&shutdown);
        shutdown.trigger();
        let line = life.run().to_string();
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("stopped"));
        let keys: Vec<_> = words
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("key=value");
                assert!(!value.is_empty(), "{line}");
                key
            })
            .collect();
        for required in [
            "reason",
            "outcome",
            "drained",
            "forced",
            "refused_busy",
            "detached_threads",
            "drain_ms",
            "total_ms",
        ] {
            assert!(keys.contains(&required), "{required} missing from {line}");
        }
        assert_eq!(
            &keys[..9],
            [
                "reason",
                "outcome",
                "drained",
                "forced",
                "refused_busy",
                "panics",
                "detached_threads",
                "drain_ms",
                "total_ms"
            ]
        );
    }
}
