//! The examples of a protocol of one's own: `own_loop` (a key-value store with its own
//! accept loop, on lameduck's kit) and `custom_handler` (a `Handler` served by
//! `Server`), run as real processes and stopped with a real SIGTERM. Their clients
//! must read every reply, then the goodbye, then EOF; the process exits 0 with a
//! clean report that counts them as drained.
// Signals are sent with kill(1).
#![cfg(unix)]

use crate::support;

use support::{example, expect_report, field, field_num, Client, End, Process};

const BYE: &str = "BYE shutting down\r\n";

#[track_caller]
fn expect_goodbye_then_eof(client: &mut Client) {
    let (rest, end) = client.rest();
    assert_eq!(String::from_utf8_lossy(&rest), BYE);
    assert_eq!(end, End::Eof);
}

#[test]
fn own_loop_serves_a_line_in_progress_then_says_goodbye_to_everyone() {
    let mut store = Process::spawn(&example("own_loop"), &["127.0.0.1:0"]);
    let addr = store.listening_addr();

    let mut idle = Client::connect(addr);
    idle.send(b"SET colour blue\n").unwrap();
    assert_eq!(idle.expect_line(), "OK\r\n");
    idle.send(b"GET colour\n").unwrap();
    assert_eq!(idle.expect_line(), "blue\r\n");
    idle.send(b"GET shape\n").unwrap();
    assert_eq!(idle.expect_line(), "NOT FOUND\r\n");

    // Half a command on the wire when the drain begins: it is finished and answered.
    let mut midway = Client::connect(addr);
    midway.send(b"SET shape round\n").unwrap();
    assert_eq!(midway.expect_line(), "OK\r\n");
    midway.send(b"GET sha").unwrap();

    store.signal("TERM");
    expect_goodbye_then_eof(&mut idle);
    midway.send(b"pe\n").unwrap();
    assert_eq!(midway.expect_line(), "round\r\n");
    expect_goodbye_then_eof(&mut midway);
    drop((idle, midway));

    let report = expect_report(&mut store, 0);
    assert_eq!(field(&report, "reason"), "signal", "{report}");
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert_eq!(field_num(&report, "drained"), 2, "{report}");
    assert_eq!(field_num(&report, "forced"), 0, "{report}");
}

#[test]
fn custom_handler_answers_through_bufread_and_write_then_says_its_goodbye() {
    let mut server = Process::spawn(&example("custom_handler"), &["127.0.0.1:0"]);
    let addr = server.listening_addr();

    let mut idle = Client::connect(addr);
    idle.send(b"hello\n").unwrap();
    assert_eq!(idle.expect_line(), "1: HELLO\r\n");
    idle.send(b"two lines\nat once\n").unwrap();
    assert_eq!(idle.expect_line(), "2: TWO LINES\r\n");
    assert_eq!(idle.expect_line(), "3: AT ONCE\r\n");

    let mut midway = Client::connect(addr);
    midway.send(b"par").unwrap();

    server.signal("TERM");
    // Idle between lines: the server dismisses it with the handler's goodbye.
    expect_goodbye_then_eof(&mut idle);
    // In the middle of a line: the line is finished, answered, then the goodbye.
    midway.send(b"tial\n").unwrap();
    assert_eq!(midway.expect_line(), "1: PARTIAL\r\n");
    expect_goodbye_then_eof(&mut midway);
    drop((idle, midway));

    let report = expect_report(&mut server, 0);
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert_eq!(field_num(&report, "drained"), 2, "{report}");
    assert_eq!(field_num(&report, "forced"), 0, "{report}");
}
