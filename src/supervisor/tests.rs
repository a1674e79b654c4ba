//! Unit tests of the task group: finish, error, panic, deadline, detach, propagation.

use super::*;
use std::io;
use std::thread;
use std::time::Duration;

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[test]
fn tasks_that_stop_on_trigger_finish() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    for name in ["a", "b", "c"] {
        group
            .spawn(name, |shutdown| {
                while !shutdown.wait_timeout(Duration::from_millis(5)) {}
                Ok(())
            })
            .unwrap();
    }
    assert_eq!(group.names(), ["a", "b", "c"]);
    let report = group.stop(soon());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.finished(), 3);
    assert_eq!(shutdown.reason(), Some(Reason::Trigger));
    assert_eq!(report.to_string().split(' ').count(), 6);
}

#[test]
fn threads_are_named_after_tasks() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    let (name_tx, name_rx) = crossbeam_channel::bounded(1);
    group
        .spawn("namer", move |_| {
            let _ = name_tx.send(thread::current().name().map(str::to_owned));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        name_rx.recv_deadline(soon()).unwrap().as_deref(),
        Some("task:namer")
    );
    assert!(group.join(soon()).is_clean());
}

#[test]
fn an_error_is_reported_with_its_cause() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    group
        .spawn_with("loader", OnFailure::Report, |_| {
            Err(io::Error::new(io::ErrorKind::NotFound, "no such table").into())
        })
        .unwrap();
    let report = group.join(soon());
    assert_eq!(report.failed(), 1);
    match report.outcome("loader") {
        Some(TaskOutcome::Failed(err)) => assert_eq!(err.to_string(), "no such table"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // Report-only: the application keeps running.
    assert!(!shutdown.is_triggered());
}

#[test]
fn an_error_can_shut_the_application_down() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    group
        .spawn("waits", |shutdown| {
            shutdown.wait();
            Ok(())
        })
        .unwrap();
    group.spawn("fails", |_| Err("disk full".into())).unwrap();
    // Nobody triggers: the failing task must, which lets "waits" finish.
    let report = group.join(soon());
    assert_eq!(shutdown.reason(), Some(Reason::Error));
    assert_eq!(report.finished(), 1);
    assert_eq!(report.failed(), 1);
    assert!(matches!(
        report.outcome("waits"),
        Some(TaskOutcome::Finished)
    ));
}

#[test]
fn a_panic_is_caught_and_reported_with_its_message() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    group
        .spawn_with("crasher", OnFailure::Report, |_| {
            panic!("index {} out of range", 7)
        })
        .unwrap();
    group
        .spawn_with("static", OnFailure::Report, |_| panic!("plain"))
        .unwrap();
    let report = group.join(soon());
    assert_eq!(report.panicked(), 2);
    match report.outcome("crasher") {
        Some(TaskOutcome::Panicked(message)) => assert_eq!(message, "index 7 out of range"),
        other => panic!("expected a panic, got {other:?}"),
    }
    match report.outcome("static") {
        Some(TaskOutcome::Panicked(message)) => assert_eq!(message, "plain"),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(!shutdown.is_triggered());
}

#[test]
fn a_panic_shuts_down_by_default() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    group.spawn("crasher", |_| panic!("boom")).unwrap();
    let report = group.join(soon());
    assert_eq!(report.panicked(), 1);
    assert_eq!(shutdown.reason(), Some(Reason::Error));
}

#[test]
fn a_task_that_ignores_the_token_is_detached_at_the_deadline() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    // The stubborn task blocks on a channel the test holds, so the test can let
    // it go afterwards instead of leaking a thread.
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    group
        .spawn("stubborn", move |_| {
            let _ = release_rx.recv();
            Ok(())
        })
        .unwrap();
    group
        .spawn("polite", |shutdown| {
            shutdown.wait();
            Ok(())
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(100);
    let report = group.stop(deadline);
    let waited_past_deadline = Instant::now().saturating_duration_since(deadline);
    assert!(
        waited_past_deadline < Duration::from_millis(500),
        "join overran its deadline by {waited_past_deadline:?}"
    );
    assert_eq!(report.detached_names(), ["stubborn"]);
    assert!(matches!(
        report.outcome("polite"),
        Some(TaskOutcome::Finished)
    ));
    assert!(!report.is_clean());
    drop(release_tx);
}

#[test]
fn forcing_ends_the_join_early() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    group
        .spawn("stubborn", move |_| {
            let _ = release_rx.recv();
            Ok(())
        })
        .unwrap();
    shutdown.force();
    let started = Instant::now();
    let report = group.join(Instant::now() + Duration::from_secs(60));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.aborted_by_force);
    assert_eq!(report.detached(), 1);
    drop(release_tx);
}

#[test]
fn a_group_forgets_ended_tasks_and_still_counts_them() {
    let shutdown = Shutdown::new();
    let mut group = TaskGroup::new(&shutdown);
    let (ran_tx, ran_rx) = crossbeam_channel::bounded(1);
    let runs = 1000;
    let mut most_held = 0;
    for i in 0..runs {
        let ran_tx = ran_tx.clone();
        let fails = i % 100 == 0;
        group
            .spawn_with("conn", OnFailure::Report, move |_| {
                let _ = ran_tx.send(());
                if fails {
                    return Err(format!("task {i} failed").into());
                }
                Ok(())
            })
            .unwrap();
        ran_rx.recv_deadline(soon()).expect("the task ran");
        most_held = most_held.max(group.len());
    }
    // Each spawn forgets the tasks that ended before it: the group holds the one
    // that just ran and the few whose end was not reported yet, never all of them.
    assert!(most_held < 50, "the group grew to {most_held} tasks");
    let report = group.join(soon());
    assert_eq!(report.total(), runs);
    assert_eq!(report.finished(), runs - 10);
    assert_eq!(report.failed(), 10);
    assert!(!report.is_clean());
    assert!(report
        .to_string()
        .starts_with("tasks=1000 finished=990 failed=10 "));
    // The failures are listed with their errors, the finished ones only counted.
    assert!(
        report.tasks.len() < 10 + 50,
        "{} listed",
        report.tasks.len()
    );
    let errors: Vec<String> = report
        .tasks
        .iter()
        .filter_map(|task| match &task.outcome {
            TaskOutcome::Failed(err) => Some(err.to_string()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("task {} failed", i * 100))
        .collect();
    assert_eq!(errors, expected);
}
