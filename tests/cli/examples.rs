//! The examples, run as real processes and stopped with real signals: they must print
//! `ready`, shut down on SIGTERM within their budget, end stdout with the report line,
//! and exit with the code the contract gives their outcome.
// Signals are sent with kill(1).
#![cfg(unix)]

use crate::support;

use std::time::{Duration, Instant};

use support::{example, field, field_num, finish_with_report, Process};

#[track_caller]
fn start(name: &str, args: &[&str]) -> Process {
    let mut process = Process::spawn(&example(name), args);
    let first = process.stdout_line();
    assert_eq!(first.as_deref(), Some("ready"), "{}", process.dump());
    process
}

#[test]
fn workers_sigterm_detaches_the_stubborn_worker_and_exits_124() {
    let mut workers = start("workers", &["--deadline", "1s", "--period", "100ms"]);
    workers.signal("TERM");
    let signalled = Instant::now();
    let (code, report) = finish_with_report(&mut workers);
    let took = signalled.elapsed();

    assert_eq!(code, Some(124), "{}", workers.dump());
    assert_eq!(field(&report, "reason"), "signal");
    assert_eq!(field(&report, "outcome"), "deadline");
    assert_eq!(field_num(&report, "detached_threads"), 1);
    assert_eq!(field_num(&report, "tasks"), 4);
    assert_eq!(field_num(&report, "tasks_detached"), 1);
    assert_eq!(field_num(&report, "tasks_failed"), 0);
    let stderr = workers.stderr_text();
    assert!(
        stderr.contains("task `stubborn` (thread task:stubborn) still running at the deadline"),
        "the stubborn worker is not named on stderr\n{}",
        workers.dump()
    );
    for worker in ["Worker-1", "Worker-2", "Worker-3"] {
        assert!(
            stderr.contains(&format!("[{worker}] finished")),
            "{worker} did not stop on the trigger\n{}",
            workers.dump()
        );
    }
    // The budget is 1 s; allow for a loaded machine, but not for a second budget.
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}\n{}",
        workers.dump()
    );
}

#[test]
fn workers_second_signal_stops_waiting_and_exits_130() {
    let mut workers = start("workers", &["--deadline", "60s"]);
    workers.signal("TERM");
    // Two signals sent back to back may merge into one; wait until the first is seen,
    // and until the three workers that heed it have stopped: the force then leaves
    // exactly the stubborn one behind. In whatever order: the handler triggers
    // before it logs, so a worker may finish before "signal received" is written.
    let (mut seen_signal, mut finished) = (false, 0);
    while !seen_signal || finished < 3 {
        let line = workers.wait_stderr("");
        seen_signal |= line.contains("signal received");
        finished += usize::from(line.contains("] finished after"));
    }
    workers.signal("TERM");
    let forced = Instant::now();
    let (code, report) = finish_with_report(&mut workers);

    assert_eq!(code, Some(130), "{}", workers.dump());
    assert_eq!(field(&report, "outcome"), "forced");
    assert_eq!(field_num(&report, "tasks_detached"), 1);
    // Far less than the 50 s drain deadline: the second signal cut the wait short.
    assert!(
        forced.elapsed() < Duration::from_secs(10),
        "{}",
        workers.dump()
    );
}

#[test]
fn embed_sigterm_exits_0_with_a_clean_report_and_closes_the_ledger_last() {
    let mut embed = start("embed", &[]);
    // Let it record at least one batch, so the ledger has something to close with.
    embed.wait_stderr("batch 1 recorded");
    embed.signal("TERM");
    let (code, report) = finish_with_report(&mut embed);

    assert_eq!(code, Some(0), "{}", embed.dump());
    assert_eq!(field(&report, "reason"), "signal");
    assert_eq!(field(&report, "outcome"), "clean");
    assert_eq!(field_num(&report, "detached_threads"), 0);
    assert_eq!(field_num(&report, "resources"), 1);
    assert_eq!(field_num(&report, "resources_failed"), 0);
    let stderr = embed.stderr_text();
    let position = |needle: &str| {
        stderr
            .lines()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` on stderr\n{stderr}"))
    };
    assert!(position("progress: stopping") < position("ledger closed with"));
    assert!(
        !stderr.contains("lost"),
        "a batch met a closed ledger\n{stderr}"
    );
}

#[test]
fn workers_rejects_a_bad_option_with_exit_2() {
    let mut workers = Process::spawn(&example("workers"), &["--deadline", "soon"]);
    let (status, last) = workers.finish();
    assert_eq!(status.code(), Some(2), "{}", workers.dump());
    assert!(last.is_empty(), "{}", workers.dump());
    assert!(
        workers.stderr_text().contains("--deadline soon"),
        "{}",
        workers.dump()
    );
}
