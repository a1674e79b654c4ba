//! The examples, run as real processes and stopped with real signals: they must print
//! `ready`, shut down on SIGTERM within their budget, end stdout with the report line,
//! and exit with the code the contract gives their outcome.
// Signals are sent with kill(1), and the examples are built only with the CLI.
#![cfg(all(unix, feature = "cli"))]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{Exit, Process};

/// Generous bounds: these catch hangs, not slowness (the bench measures promptness).
const STARTUP: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(20);

/// Where `cargo test` puts the examples it builds: beside the binary, in `examples/`.
#[track_caller]
fn example(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lameduck"));
    let path = bin
        .parent()
        .expect("the binary has a parent directory")
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example `{name}` is not built at {}: run the whole `cargo test` (it builds \
         the examples), or `cargo build --examples` before `cargo test --test examples`",
        path.display()
    );
    path
}

#[track_caller]
fn start(name: &str, args: &[&str]) -> Process {
    let mut process = Process::spawn(&example(name), args);
    process.wait_for_stdout("`ready`", STARTUP, |line| line == "ready");
    process
}

/// The report line parsed into its pairs, checking the contract's shape on the way.
#[track_caller]
fn report(exit: &Exit) -> Vec<(String, String)> {
    let line = exit.last_stdout_line();
    let mut words = line.split(' ');
    assert_eq!(
        words.next(),
        Some("stopped"),
        "last line is not a report\n{}",
        exit.dump()
    );
    let pairs: Vec<(String, String)> = words
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !value.is_empty() => (key.to_owned(), value.to_owned()),
            _ => panic!("`{pair}` is not key=value\n{}", exit.dump()),
        })
        .collect();
    for key in [
        "reason",
        "outcome",
        "drained",
        "forced",
        "refused_busy",
        "detached_threads",
        "drain_ms",
        "total_ms",
    ] {
        assert!(
            pairs.iter().any(|(seen, _)| seen == key),
            "report lacks `{key}`\n{}",
            exit.dump()
        );
    }
    pairs
}

#[track_caller]
fn value<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(seen, _)| seen == key)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no `{key}` in {pairs:?}"))
}

#[test]
fn workers_sigterm_detaches_the_stubborn_worker_and_exits_124() {
    let mut workers = start("workers", &["--deadline", "1s", "--period", "100ms"]);
    workers.signal("TERM");
    let signalled = Instant::now();
    let exit = workers.wait_exit(EXIT);
    let took = signalled.elapsed();

    let pairs = report(&exit);
    assert_eq!(exit.code(), Some(124), "{}", exit.dump());
    assert_eq!(value(&pairs, "reason"), "signal");
    assert_eq!(value(&pairs, "outcome"), "deadline");
    assert_eq!(value(&pairs, "detached_threads"), "1");
    assert_eq!(value(&pairs, "tasks"), "4");
    assert_eq!(value(&pairs, "tasks_detached"), "1");
    assert_eq!(value(&pairs, "tasks_failed"), "0");
    assert!(
        exit.stderr_contains(
            "task `stubborn` (thread task:stubborn) still running at the deadline"
        ),
        "the stubborn worker is not named on stderr\n{}",
        exit.dump()
    );
    for worker in ["Worker-1", "Worker-2", "Worker-3"] {
        assert!(
            exit.stderr_contains(&format!("[{worker}] finished")),
            "{worker} did not stop on the trigger\n{}",
            exit.dump()
        );
    }
    // The budget is 1 s; allow for a loaded machine, but not for a second budget.
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}\n{}",
        exit.dump()
    );
    assert_eq!(exit.stdout.first().map(String::as_str), Some("ready"));
}

#[test]
fn workers_second_signal_stops_waiting_and_exits_130() {
    let mut workers = start("workers", &["--deadline", "60s"]);
    workers.signal("TERM");
    // Two signals sent back to back may merge into one; wait until the first is seen.
    workers.wait_for_stderr("the first signal being handled", STARTUP, |line| {
        line.contains("signal received")
    });
    workers.signal("TERM");
    let forced = Instant::now();
    let exit = workers.wait_exit(EXIT);

    let pairs = report(&exit);
    assert_eq!(exit.code(), Some(130), "{}", exit.dump());
    assert_eq!(value(&pairs, "outcome"), "forced");
    assert_eq!(value(&pairs, "tasks_detached"), "1");
    // Far less than the 50 s drain deadline: the second signal cut the wait short.
    assert!(
        forced.elapsed() < Duration::from_secs(10),
        "{}",
        exit.dump()
    );
}

#[test]
fn embed_sigterm_exits_0_with_a_clean_report_and_closes_the_ledger_last() {
    let mut embed = start("embed", &[]);
    // Let it record at least one batch, so the ledger has something to close with.
    embed.wait_for_stderr("a recorded batch", STARTUP, |line| {
        line.contains("batch 1 recorded")
    });
    embed.signal("TERM");
    let exit = embed.wait_exit(EXIT);

    let pairs = report(&exit);
    assert_eq!(exit.code(), Some(0), "{}", exit.dump());
    assert_eq!(value(&pairs, "reason"), "signal");
    assert_eq!(value(&pairs, "outcome"), "clean");
    assert_eq!(value(&pairs, "detached_threads"), "0");
    assert_eq!(value(&pairs, "resources"), "1");
    assert_eq!(value(&pairs, "resources_failed"), "0");
    let position = |needle: &str| {
        exit.stderr
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` on stderr\n{}", exit.dump()))
    };
    assert!(position("progress: stopping") < position("ledger closed with"));
    assert!(
        !exit.stderr_contains("lost"),
        "a batch met a closed ledger\n{}",
        exit.dump()
    );
}

#[test]
fn workers_rejects_a_bad_option_with_exit_2() {
    let mut workers = Process::spawn(&example("workers"), &["--deadline", "soon"]);
    let exit = workers.wait_exit(EXIT);
    assert_eq!(exit.code(), Some(2), "{}", exit.dump());
    assert!(exit.stdout.is_empty(), "{}", exit.dump());
    assert!(exit.stderr_contains("--deadline soon"), "{}", exit.dump());
}
