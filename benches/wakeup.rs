//! How promptly shutdown reaches threads, measured against the project's targets.
//!
//! 1. **wakeup**: 64 idle supervised tasks block on the token; the time from
//!    `trigger()` until the last of them is awake, over 200 repetitions (target: all
//!    awake within 5 ms), and until the group is joined.
//! 2. **workers exit**: the `workers` example with `--deadline 1s` (one task never
//!    stops) from SIGTERM to process exit, over 5 runs (target: within 1.1 s, with the
//!    stubborn task named on stderr).
//!
//! ```text
//! cargo build --release --examples && cargo bench --bench wakeup
//! ```
//!
//! `cargo bench` does not build examples; without a release build of `workers` the
//! second part falls back to a debug build if there is one, and fails if neither exists.

#[path = "../tests/cli/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lameduck::{Shutdown, TaskGroup};

const TASKS: usize = 64;
const REPETITIONS: usize = 200;
const WAKEUP_TARGET: Duration = Duration::from_millis(5);
const EXIT_RUNS: usize = 5;
const EXIT_TARGET: Duration = Duration::from_millis(1100);

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

fn micros(duration: Duration) -> String {
    format!("{:.0}µs", duration.as_secs_f64() * 1e6)
}

/// One repetition: returns (trigger → last task awake, trigger → group joined).
fn wake_once() -> (Duration, Duration) {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
    let (woke_tx, woke_rx) = crossbeam_channel::unbounded();
    for index in 0..TASKS {
        let ready_tx = ready_tx.clone();
        let woke_tx = woke_tx.clone();
        group
            .spawn(format!("idle-{index}"), move |shutdown| {
                let _ = ready_tx.send(());
                shutdown.wait();
                let _ = woke_tx.send(Instant::now());
                Ok(())
            })
            .expect("spawn an idle task");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..TASKS {
        ready_rx
            .recv_deadline(deadline)
            .expect("every task starts within 10 s");
    }
    let triggered = Instant::now();
    shutdown.trigger();
    let mut last_awake = triggered;
    for _ in 0..TASKS {
        let woke = woke_rx
            .recv_deadline(deadline)
            .expect("every task wakes within 10 s");
        last_awake = last_awake.max(woke);
    }
    let report = group.join(deadline);
    let joined = triggered.elapsed();
    assert!(report.is_clean(), "{report:?}");
    (last_awake - triggered, joined)
}

fn bench_wakeup() -> bool {
    // Warm up thread creation and the allocator before measuring.
    for _ in 0..5 {
        wake_once();
    }
    let (mut awake, mut joined): (Vec<_>, Vec<_>) = (0..REPETITIONS).map(|_| wake_once()).unzip();
    awake.sort();
    joined.sort();
    let max = awake[awake.len() - 1];
    println!(
        "wakeup: {TASKS} idle tasks, {REPETITIONS} repetitions: all awake p50={} p99={} \
         max={} (target {}); group joined p50={} max={}",
        micros(percentile(&awake, 0.5)),
        micros(percentile(&awake, 0.99)),
        micros(max),
        micros(WAKEUP_TARGET),
        micros(percentile(&joined, 0.5)),
        micros(joined[joined.len() - 1]),
    );
    let met = max <= WAKEUP_TARGET;
    println!("wakeup: target {}", if met { "met" } else { "MISSED" });
    met
}

fn workers_example() -> Option<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lameduck"));
    let profile_dir = bin.parent()?;
    let name = format!("workers{}", std::env::consts::EXE_SUFFIX);
    let release = profile_dir.join("examples").join(&name);
    let debug = profile_dir
        .parent()?
        .join("debug")
        .join("examples")
        .join(&name);
    [release, debug].into_iter().find(|path| path.exists())
}

fn bench_workers_exit() -> bool {
    let Some(workers) = workers_example() else {
        println!(
            "workers exit: the `workers` example is not built; run \
             `cargo build --release --examples` first"
        );
        return false;
    };
    println!("workers exit: using {}", workers.display());
    let mut took = Vec::new();
    let mut named = true;
    for _ in 0..EXIT_RUNS {
        let mut process = support::Process::spawn(&workers, &["--deadline", "1s"]);
        assert_eq!(process.stdout_line().as_deref(), Some("ready"));
        let signalled = Instant::now();
        process.signal("TERM");
        let (status, _report) = process.finish();
        took.push(signalled.elapsed());
        named &= process
            .stderr_text()
            .contains("task `stubborn` (thread task:stubborn) still running");
        assert_eq!(status.code(), Some(124), "{}", process.dump());
    }
    took.sort();
    let max = took[took.len() - 1];
    println!(
        "workers exit: --deadline 1s, {EXIT_RUNS} runs, SIGTERM to exit: min={}ms p50={}ms \
         max={}ms (target {}ms); stubborn task named on stderr: {named}",
        took[0].as_millis(),
        percentile(&took, 0.5).as_millis(),
        max.as_millis(),
        EXIT_TARGET.as_millis(),
    );
    let met = max <= EXIT_TARGET && named;
    println!(
        "workers exit: target {}",
        if met { "met" } else { "MISSED" }
    );
    met
}

fn main() -> ExitCode {
    let wakeup = bench_wakeup();
    let exit = bench_workers_exit();
    // Other work on the machine moves these figures: record it beside them.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} logical CPU(s), load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    if wakeup && exit {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
