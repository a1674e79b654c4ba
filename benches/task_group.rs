//! A task group that runs a task per connection for the life of a process must not
//! grow with every task it has run: 100,000 short tasks spawned and finished on one
//! `TaskGroup` keep its memory flat (target: resident memory grows by less than
//! 1 MiB).
//!
//! ```text
//! cargo bench --bench task_group
//! ```
//!
//! Measured in this process (VmRSS of `/proc/self/status`, Linux only), after a
//! warm-up that lets the allocator and the C library's thread-stack cache reach
//! their steady state. The comparison, in the same run: the same number of plain
//! `std::thread` spawns and joins without a group — the memory any thread-per-task
//! program pays — so the group's own cost is the difference. Each task is spawned
//! once the previous one has run, as a connection loop would spawn them.

use std::fs;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use lameduck::{OnFailure, Shutdown, TaskGroup};

const TASKS: usize = 100_000;
const WARM_UP: usize = 5_000;
const TARGET_KIB: i64 = 1024;

fn rss_kib() -> Option<i64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `count` short tasks on `group`, one after the other; returns the most tasks
/// the group held at once.
fn run_on_group(group: &mut TaskGroup, count: usize) -> usize {
    let (ran_tx, ran_rx) = crossbeam_channel::bounded(1);
    let mut most_held = 0;
    for _ in 0..count {
        let ran_tx = ran_tx.clone();
        group
            .spawn_with("conn", OnFailure::Report, move |_| {
                let _ = ran_tx.send(());
                Ok(())
            })
            .expect("spawn a task");
        ran_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the task ran");
        most_held = most_held.max(group.len());
    }
    most_held
}

/// The same tasks as plain threads, each joined before the next starts.
fn run_plain(count: usize) {
    for _ in 0..count {
        thread::Builder::new()
            .name("task:conn".into())
            .spawn(|| ())
            .expect("spawn a thread")
            .join()
            .expect("the thread ran");
    }
}

fn main() -> ExitCode {
    let Some(start) = rss_kib() else {
        eprintln!("task_group: needs /proc/self/status (Linux)");
        return ExitCode::FAILURE;
    };

    run_plain(WARM_UP);
    let before_plain = rss_kib().unwrap_or(start);
    let began = Instant::now();
    run_plain(TASKS);
    let plain_took = began.elapsed();
    let plain_growth = rss_kib().unwrap_or(before_plain) - before_plain;

    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    run_on_group(&mut group, WARM_UP);
    let before_group = rss_kib().unwrap_or(start);
    let began = Instant::now();
    let first_tenth = run_on_group(&mut group, TASKS / 10);
    let after_tenth = rss_kib().unwrap_or(before_group);
    let rest = run_on_group(&mut group, TASKS - TASKS / 10);
    let group_took = began.elapsed();
    let after_group = rss_kib().unwrap_or(after_tenth);
    let held_at_end = group.len();
    let report = group.stop(Instant::now() + Duration::from_secs(10));

    let group_growth = after_group - before_group;
    let own_cost = group_growth - plain_growth;
    println!("task_group: {TASKS} short tasks, one at a time, after {WARM_UP} to warm up");
    println!(
        "  plain std::thread spawn+join: RSS {before_plain} -> {} KiB (growth {plain_growth} KiB), {:.1} µs/task",
        before_plain + plain_growth,
        plain_took.as_secs_f64() * 1e6 / TASKS as f64
    );
    println!(
        "  one TaskGroup:                RSS {before_group} -> {after_group} KiB (growth {group_growth} KiB; \
         {} KiB after the first {}), {:.1} µs/task",
        after_tenth - before_group,
        TASKS / 10,
        group_took.as_secs_f64() * 1e6 / TASKS as f64
    );
    println!(
        "  the group's own cost: {own_cost} KiB over {TASKS} tasks; time {:.2}x plain",
        group_took.as_secs_f64() / plain_took.as_secs_f64()
    );
    println!(
        "  tasks held at once: at most {} (then {held_at_end} at the end); report: {report}",
        first_tenth.max(rest)
    );
    let counted = report.total() == WARM_UP + TASKS && report.finished() == WARM_UP + TASKS;
    let flat = group_growth < TARGET_KIB;
    println!(
        "  target: growth < {TARGET_KIB} KiB: {}; every task counted in the report: {}",
        if flat { "met" } else { "MISSED" },
        if counted { "yes" } else { "NO" }
    );
    if flat && counted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
