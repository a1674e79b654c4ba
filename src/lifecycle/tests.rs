//! Unit tests of the lifecycle: order of startup and close, unwinding, bounds, budget.
//! (Over 400 lines: every phase and bound of the lifecycle has its own test here.)

use super::*;
use crate::supervisor::TaskOutcome;
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
            .run_startup_hook(name, || {
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
        life.run_startup_hook(name, || Ok::<_, io::Error>(()))
            .unwrap();
        life.resource(name, SECOND, events.closer(&format!("close {name}")));
    }
    let err = life
        .run_startup_hook("queue", || {
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
        .run_startup_hook("cache", || Err::<(), _>("cache unreachable"))
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
    assert_eq!(report.outcome, Outcome::Clean, "the drain itself was clean");
    assert_eq!(
        report.exit_code(),
        1,
        "but a resource was not closed properly"
    );
}

#[test]
fn a_clean_close_after_a_clean_drain_exits_0() {
    let shutdown = Shutdown::new();
    let mut life = Lifecycle::new(&shutdown);
    life.resource("fine", SECOND, || Ok(()));
    shutdown.trigger();
    assert_eq!(life.run().exit_code(), 0);
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
    assert_eq!(keys[9], "write_timeouts", "{line}");
}

/// Holds its connection until the server forces it, as a long request would.
struct Hold(crossbeam_channel::Sender<()>);

impl crate::Handler for Hold {
    fn handle(&self, conn: &mut crate::Connection) -> io::Result<()> {
        let _ = self.0.send(());
        conn.wait_forced_until(Instant::now() + Duration::from_secs(60));
        Ok(())
    }

    fn busy_reply(&self) -> &[u8] {
        b"busy\n"
    }
}

/// Serves one connection that never finishes with `builder`, takes the server down
/// with [`Lifecycle::serve`] under `budget` and `reserve`, and returns the report.
fn serve_a_held_connection(
    builder: crate::ServerBuilder,
    budget: Duration,
    reserve: Duration,
) -> LifecycleReport {
    let shutdown = Shutdown::new();
    let life = Lifecycle::new(&shutdown)
        .with_budget(budget)
        .with_cleanup_reserve(reserve);
    let (held_tx, held) = crossbeam_channel::bounded(1);
    let server = builder
        .addr("127.0.0.1:0".parse().unwrap())
        .start(Hold(held_tx), &shutdown)
        .unwrap();
    let _client = std::net::TcpStream::connect(server.local_addr()).unwrap();
    held.recv_timeout(Duration::from_secs(10))
        .expect("a worker holds the connection");
    shutdown.trigger();
    life.serve(server)
}

#[test]
fn serve_holds_the_server_to_the_lifecycles_drain_deadline() {
    let (budget, reserve) = (Duration::from_millis(500), Duration::from_millis(100));
    let report = serve_a_held_connection(crate::Server::builder(), budget, reserve);
    let drain = report
        .drain
        .duration
        .expect("the server measures its drain");
    // Without it the server would wait for its own default, 30 s.
    assert!(drain >= budget - reserve, "{report}");
    assert!(drain < Duration::from_secs(5), "{report}");
    assert_eq!(
        (report.drain.forced, report.drain.outcome),
        (1, Outcome::Deadline)
    );
    assert_eq!(report.exit_code(), 124);
}

#[test]
fn a_shorter_drain_timeout_set_on_the_server_still_wins() {
    let (budget, reserve) = (Duration::from_secs(20), Duration::from_secs(1));
    let short = Duration::from_millis(150);
    let builder = crate::Server::builder().drain_timeout(short);
    let report = serve_a_held_connection(builder, budget, reserve);
    let drain = report
        .drain
        .duration
        .expect("the server measures its drain");
    assert!(drain >= short, "{report}");
    assert!(drain < budget - reserve, "{report}");
    assert_eq!(report.drain.forced, 1, "{report}");
}
