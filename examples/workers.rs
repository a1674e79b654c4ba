//! The tutorial's `TaskGroup` example with threads: three workers doing periodic work
//! that stop as soon as the shutdown is triggered, plus one stubborn worker that never
//! looks at the token — the kind of task a deadline exists for.
//!
//! ```text
//! cargo run --example workers -- --deadline 1s
//! ```
//!
//! Prints `ready` once the signal handlers are installed, then waits for SIGINT,
//! SIGTERM or SIGHUP. On the signal the three workers finish their round and return;
//! the stubborn one is still blocked when the drain deadline passes, so it is detached
//! and named on stderr, the report line (last line of stdout) says
//! `outcome=deadline detached_threads=1`, and the exit code is 124. A second signal
//! stops waiting at once (exit 130).
//!
//! Options: `--deadline <duration>` — the whole shutdown budget (default 3s);
//! `--period <duration>` — how often the workers work (default 1s).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use lameduck::{logging, output, Lifecycle, OnFailure, Shutdown, TaskResult};

struct Options {
    deadline: Duration,
    period: Duration,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        deadline: Duration::from_secs(3),
        period: Duration::from_secs(1),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let target = match flag.as_str() {
            "--deadline" => &mut options.deadline,
            "--period" => &mut options.period,
            other => return Err(format!("unknown option `{other}`")),
        };
        let value = inline_value
            .or_else(|| args.next())
            .ok_or_else(|| format!("`{flag}` needs a duration such as 1s or 250ms"))?;
        *target =
            humantime::parse_duration(&value).map_err(|err| format!("`{flag} {value}`: {err}"))?;
    }
    Ok(options)
}

/// A well-behaved worker: one unit of work per period, and between units an
/// interruptible wait on the token instead of a sleep, so it stops at once.
fn worker(name: &str, period: Duration, shutdown: &Shutdown) -> TaskResult {
    log::info!("[{name}] started");
    let mut rounds = 0u64;
    while !shutdown.wait_timeout(period) {
        rounds += 1;
        log::info!("[{name}] working... (round {rounds})");
    }
    log::info!("[{name}] finished after {rounds} round(s)");
    Ok(())
}

/// A worker that ignores the token: it waits for a reply that never comes, like a
/// blocking read with no timeout. Only the deadline can get rid of it.
fn stubborn(_shutdown: Shutdown) -> TaskResult {
    let (_peer, replies) = crossbeam_channel::bounded::<()>(0);
    log::info!("[stubborn] waiting for a reply that never comes; shutdown ignored");
    let _ = replies.recv();
    Ok(())
}

fn run(options: Options) -> Result<ExitCode, Box<dyn Error>> {
    let shutdown = Shutdown::new();
    let mut life = Lifecycle::new(&shutdown).with_budget(options.deadline);
    for name in ["Worker-1", "Worker-2", "Worker-3"] {
        let period = options.period;
        life.spawn(name, move |shutdown| worker(name, period, &shutdown))?;
    }
    life.tasks()
        .spawn_with("stubborn", OnFailure::Report, stubborn)?;
    lameduck::signals::install(&shutdown)?;

    output::print_line("ready");
    log::info!(
        "send SIGINT/SIGTERM to stop; budget {:?} (drain deadline {:?})",
        life.budget(),
        life.drain_timeout()
    );

    let report = life.run();
    output::print_line(&report.to_string());
    Ok(ExitCode::from(report.exit_code()))
}

fn main() -> ExitCode {
    // The first logger of this process: installing it cannot fail.
    let _ = logging::init();
    let code = run_with_args();
    logging::finish(logging::STDERR_BOUND);
    code
}

fn run_with_args() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            logging::stderr_line(&format!("workers: {message}"));
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(code) => code,
        Err(err) => {
            // The whole chain on one line: "cannot start a thread for task `x`: ...".
            let mut line = err.to_string();
            let mut source = err.source();
            while let Some(cause) = source {
                line.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            log::error!("workers: {line}");
            ExitCode::from(1)
        }
    }
}
