use super::*;
use std::thread;

#[test]
fn starts_untriggered() {
    let shutdown = Shutdown::new();
    assert!(!shutdown.is_triggered());
    assert!(!shutdown.is_forced());
    assert_eq!(shutdown.reason(), None);
    assert_eq!(shutdown.triggered_at(), None);
    assert!(!shutdown.wait_timeout(Duration::from_millis(1)));
}

#[test]
fn first_reason_wins_and_trigger_is_idempotent() {
    let shutdown = Shutdown::new();
    assert!(shutdown.trigger_with(Reason::Signal));
    assert!(!shutdown.trigger_with(Reason::Error));
    shutdown.trigger();
    assert_eq!(shutdown.reason(), Some(Reason::Signal));
    assert!(shutdown.triggered_at().is_some());
}

#[test]
fn force_implies_trigger() {
    let shutdown = Shutdown::new();
    assert!(shutdown.force_with(Reason::Error));
    assert!(!shutdown.force());
    assert!(shutdown.is_triggered());
    assert!(shutdown.is_forced());
    assert_eq!(shutdown.reason(), Some(Reason::Error));
}

#[test]
fn trigger_wakes_every_waiter_at_once() {
    let shutdown = Shutdown::new();
    let (woke_tx, woke_rx) = crossbeam_channel::unbounded();
    let waiters: Vec<_> = (0..16)
        .map(|_| {
            let shutdown = shutdown.clone();
            let woke_tx = woke_tx.clone();
            thread::spawn(move || {
                shutdown.wait();
                woke_tx.send(()).unwrap();
            })
        })
        .collect();
    shutdown.trigger();
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..16 {
        woke_rx
            .recv_deadline(deadline)
            .expect("every waiter wakes well within the deadline");
    }
    for waiter in waiters {
        waiter.join().unwrap();
    }
}

#[test]
fn select_arm_fires_on_trigger() {
    let shutdown = Shutdown::new();
    let triggered = shutdown.when_triggered();
    let (_work_tx, work_rx) = crossbeam_channel::unbounded::<u32>();
    shutdown.trigger();
    crossbeam_channel::select! {
        recv(work_rx) -> _ => panic!("no work was sent"),
        recv(triggered) -> msg => assert!(msg.is_err()),
    }
}

#[test]
fn wait_forced_times_out_until_forced() {
    let shutdown = Shutdown::new();
    shutdown.trigger();
    assert!(!shutdown.wait_forced_deadline(Instant::now() + Duration::from_millis(1)));
    shutdown.force();
    assert!(shutdown.wait_forced_deadline(Instant::now() + Duration::from_secs(5)));
}
