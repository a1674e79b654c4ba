//! The library as an embedding program uses it: a custom handler, a programmatic
//! trigger, and the report from `join`.

mod in_process;

use std::io;

use in_process::{Client, End, GOODBYE};
use lameduck::{Connection, Handler, Outcome, Reason, Received, Server, Shutdown};

/// Echoes raw bytes back, and panics when a client sends `boom`.
struct Fragile;

impl Handler for Fragile {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        let mut buf = [0u8; 1024];
        loop {
            if conn.is_draining() {
                return conn.write_all(b"bye\n");
            }
            match conn.read(&mut buf)? {
                Received::Data(n) if buf[..n].starts_with(b"boom") => panic!("asked to"),
                Received::Data(n) => conn.write_all(&buf[..n])?,
                Received::Eof => return Ok(()),
                Received::Quiet | Received::Deadline | Received::Draining | Received::Dismissed => {
                }
            }
        }
    }

    fn busy_reply(&self) -> &[u8] {
        b"busy\n"
    }
}

#[test]
fn a_panicking_handler_closes_its_connection_and_the_worker_lives_on() {
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .start(Fragile, &shutdown)
        .unwrap();
    let addr = server.local_addr();

    let mut victim = Client::connect(addr);
    victim.send(b"boom\n").unwrap();
    let (rest, _end) = victim.rest();
    assert!(rest.is_empty(), "a panicked handler sends nothing more");

    // The pool has one worker: if the panic had killed it, nobody would answer.
    let mut next = Client::connect(addr);
    next.send(b"ping\n").unwrap();
    assert_eq!(next.expect_line(), "ping\n");

    server.trigger();
    let (rest, end) = next.rest();
    assert_eq!(rest, b"bye\n");
    assert_eq!(end, End::Eof);
    let report = server.join();
    assert_eq!(report.panics, 1);
    assert_eq!(report.reason, Reason::Trigger);
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.drained, 1);
    assert_eq!(report.accepted, 2);
    assert!(report.detached.is_empty());
}

#[test]
fn force_cuts_the_drain_short() {
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .tick(std::time::Duration::from_millis(20))
        .start(Fragile, &shutdown)
        .unwrap();
    let mut client = Client::connect(server.local_addr());
    client.send(b"x").unwrap();
    assert_eq!(client.stream().peek(&mut [0u8; 1]).unwrap(), 1);
    shutdown.force();
    let report = server.join();
    assert_eq!(report.outcome, Outcome::Forced);
    assert_eq!(report.exit_code(), 130);
}

/// Answers nothing: after the first bytes it blocks where no force can reach it (a
/// lock, a database call), until the test lets it go.
struct Stuck {
    entered: crossbeam_channel::Sender<()>,
    release: crossbeam_channel::Receiver<()>,
}

impl Handler for Stuck {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        let mut buf = [0u8; 64];
        while !matches!(conn.read_request(&mut buf)?, Received::Data(_)) {}
        let _ = self.entered.send(());
        let _ = self.release.recv();
        Ok(())
    }

    fn busy_reply(&self) -> &[u8] {
        b"busy\n"
    }
}

/// A handler stuck past the drain deadline: its client is force-closed, and the
/// report says so — one connection forced, none drained, its worker detached — and
/// the drain lasted until that force, not until the last thread that did end.
#[test]
fn a_handler_stuck_past_the_deadline_is_reported_forced_and_its_worker_detached() {
    let (entered_tx, entered) = crossbeam_channel::bounded(1);
    let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
    let shutdown = Shutdown::new();
    let drain_timeout = std::time::Duration::from_millis(300);
    let server = Server::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .tick(std::time::Duration::from_millis(20))
        .drain_timeout(drain_timeout)
        .start(
            Stuck {
                entered: entered_tx,
                release,
            },
            &shutdown,
        )
        .unwrap();
    let mut client = Client::connect(server.local_addr());
    client.send(b"work\n").unwrap();
    entered
        .recv_timeout(in_process::PATIENCE)
        .expect("the handler got the request");
    shutdown.trigger();
    let report = server.join();
    let (rest, _end) = client.rest();
    assert!(rest.is_empty(), "force-closed without a reply: {rest:?}");
    assert_eq!(report.outcome, Outcome::Deadline);
    assert_eq!(report.exit_code(), 124);
    assert_eq!((report.forced, report.drained), (1, 0), "{report}");
    assert_eq!(report.detached, ["lameduck-worker-0"], "{report}");
    assert!(report.drain >= drain_timeout, "{report}");
    drop(release_tx);
}

/// A program that already has its listener (socket activation, an upgrade, a port it
/// bound itself) hands it to the server; an upgrade's drain leaves the backlog alone.
#[test]
fn a_server_serves_a_listener_the_program_already_has() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .listener(listener)
        .start(lameduck::protocol::echo::Echo::new(), &shutdown)
        .unwrap();
    assert_eq!(server.local_addr(), addr);
    let mut client = Client::connect(addr);
    client.send(b"mine\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: mine\r\n");
    shutdown.trigger_with(Reason::Upgrade);
    assert_eq!(client.expect_line(), GOODBYE);
    let report = server.join();
    assert_eq!(report.reason, Reason::Upgrade);
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.exit_code(), 0);
}

/// Reads lines through `BufRead`, answers with `write!`, and after its first line
/// waits for the drain to begin before answering — so the drain finds it busy, not
/// idle, and the server cannot say the goodbye for it.
struct LinesUntilDrain {
    got_first: crossbeam_channel::Sender<()>,
}

impl Handler for LinesUntilDrain {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        use std::io::{BufRead, BufReader, Write};
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        let mut first = true;
        while reader.read_line(&mut line)? > 0 {
            if std::mem::take(&mut first) {
                let _ = self.got_first.send(());
                let deadline = std::time::Instant::now() + in_process::PATIENCE;
                while !reader.get_ref().is_draining() && std::time::Instant::now() < deadline {
                    std::thread::yield_now();
                }
            }
            write!(reader.get_mut(), "{}\r\n", line.trim().to_uppercase())?;
            line.clear();
        }
        Ok(())
    }

    fn busy_reply(&self) -> &[u8] {
        b"busy\r\n"
    }

    fn goodbye(&self) -> &[u8] {
        b"bye\r\n"
    }
}

/// A handler written with `BufReader` and `write!` is told nothing about the drain,
/// yet the line it has already received is answered and its goodbye said: the read
/// that finds the drain takes what waits in the socket once, then says the goodbye
/// and returns `Ok(0)`.
#[test]
fn an_io_read_handler_answers_what_was_sent_then_says_its_goodbye() {
    let shutdown = Shutdown::new();
    let (got_first, first_seen) = crossbeam_channel::bounded(1);
    let server = Server::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .start(LinesUntilDrain { got_first }, &shutdown)
        .unwrap();
    let mut client = Client::connect(server.local_addr());
    client.send(b"first\n").unwrap();
    first_seen
        .recv_timeout(in_process::PATIENCE)
        .expect("the handler read the first line");
    // Sent before the drain: owed an answer, although the handler reads it only
    // once draining has begun.
    client.send(b"second\n").unwrap();
    shutdown.trigger();
    assert_eq!(client.expect_line(), "FIRST\r\n");
    assert_eq!(client.expect_line(), "SECOND\r\n");
    let (rest, end) = client.rest();
    assert_eq!(String::from_utf8_lossy(&rest), "bye\r\n");
    assert_eq!(end, End::Eof);
    drop(client);
    let report = server.join();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.drained, 1);
}
