//! `lameduck echo` end to end: the real binary, real sockets, real signals.

use crate::support;

use std::io::ErrorKind;
use std::net::{Shutdown as Direction, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

use support::{expect_report, field, field_num, Client, End, Process, GOODBYE, PATIENCE};

fn echo_server(extra: &[&str]) -> (Process, std::net::SocketAddr) {
    let mut args = vec!["echo", "--addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Process::server(&args)
}

/// Asserts the rest of the conversation is exactly the goodbye, then a clean EOF.
#[track_caller]
fn expect_goodbye_then_eof(client: &mut Client) {
    let (rest, end) = client.rest();
    assert_eq!(String::from_utf8_lossy(&rest), GOODBYE);
    assert_eq!(end, End::Eof);
}

#[test]
fn echoes_each_line_byte_exact() {
    let (mut server, addr) = echo_server(&[]);
    let mut client = Client::connect(addr);
    client
        .send(b"hello\n  spaced out \t\r\n\x0b\x1ctrimmed\x1f\n\n")
        .unwrap();
    assert_eq!(client.expect_line(), "Echo: hello\r\n");
    assert_eq!(client.expect_line(), "Echo: spaced out\r\n");
    assert_eq!(client.expect_line(), "Echo: trimmed\r\n");
    assert_eq!(client.expect_line(), "Echo: \r\n");
    server.signal("TERM");
    expect_goodbye_then_eof(&mut client);
    expect_report(&mut server, 0);
}

#[test]
fn invalid_utf8_is_echoed_and_the_connection_lives_on() {
    let (mut server, addr) = echo_server(&[]);
    let mut client = Client::connect(addr);
    client.send(b"\xff\xfe\xc3(\n").unwrap();
    assert_eq!(client.line().unwrap().unwrap(), b"Echo: \xff\xfe\xc3(\r\n");
    client.send(b"still here\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: still here\r\n");
    server.signal("TERM");
    expect_goodbye_then_eof(&mut client);
    expect_report(&mut server, 0);
}

#[test]
fn final_line_without_newline_is_answered_before_eof() {
    let (mut server, addr) = echo_server(&[]);
    let mut client = Client::connect(addr);
    client.send(b"first\nlast words").unwrap();
    client.stream().shutdown(Direction::Write).unwrap();
    let (rest, end) = client.rest();
    assert_eq!(rest, b"Echo: first\r\nEcho: last words\r\n");
    assert_eq!(end, End::Eof);
    server.signal("TERM");
    expect_report(&mut server, 0);
}

#[test]
fn sigterm_says_goodbye_after_the_last_reply_then_eof() {
    let (mut server, addr) = echo_server(&[]);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("client {i}\n").as_bytes()).unwrap();
        assert_eq!(client.expect_line(), format!("Echo: client {i}\r\n"));
    }
    server.signal("TERM");
    for client in &mut clients {
        expect_goodbye_then_eof(client);
    }
    let report = expect_report(&mut server, 0);
    assert_eq!(field(&report, "reason"), "signal");
    assert_eq!(field(&report, "outcome"), "clean");
    assert_eq!(field_num(&report, "drained"), 3);
    assert_eq!(field_num(&report, "forced"), 0);
    assert_eq!(field_num(&report, "detached_threads"), 0);
}

#[test]
fn sigint_drains_like_sigterm() {
    let (mut server, addr) = echo_server(&[]);
    let mut client = Client::connect(addr);
    client.send(b"ping\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: ping\r\n");
    server.signal("INT");
    expect_goodbye_then_eof(&mut client);
    let report = expect_report(&mut server, 0);
    assert_eq!(field(&report, "reason"), "signal");
    assert_eq!(field_num(&report, "drained"), 1);
}

#[test]
fn a_signal_right_after_listening_on_is_graceful() {
    let (mut server, _addr) = echo_server(&[]);
    server.signal("TERM");
    let (status, report) = server.finish();
    assert_eq!(
        status.signal(),
        None,
        "killed by the signal: handlers were late"
    );
    assert_eq!(status.code(), Some(0), "{}", server.dump());
    assert_eq!(field(&report, "outcome"), "clean");
}

#[test]
fn connects_are_refused_once_the_listener_is_closed() {
    // A client that never closes keeps the process in its linger, so the window
    // between "listener closed" and exit is wide open for the probe.
    let (mut server, addr) = echo_server(&["--linger", "3s"]);
    let mut holder = Client::connect(addr);
    holder.send(b"hold\n").unwrap();
    assert_eq!(holder.expect_line(), "Echo: hold\r\n");
    server.signal("TERM");
    server.wait_stderr("stopped accepting");
    let refused = TcpStream::connect(addr).expect_err("connect after the listener closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    expect_goodbye_then_eof(&mut holder);
    drop(holder);
    expect_report(&mut server, 0);
}

#[test]
fn queued_connections_are_served_during_the_drain() {
    let (mut server, addr) = echo_server(&["--workers", "1", "--queue", "4"]);
    let mut first = Client::connect(addr);
    first.send(b"first\n").unwrap();
    assert_eq!(first.expect_line(), "Echo: first\r\n");
    // The only worker is busy with `first`: these wait in the queue, their lines in
    // their receive buffers, owed a reply.
    let mut queued: Vec<Client> = (0..2).map(|_| Client::connect(addr)).collect();
    for (i, client) in queued.iter_mut().enumerate() {
        client.send(format!("queued {i}\n").as_bytes()).unwrap();
    }
    server.signal("TERM");
    expect_goodbye_then_eof(&mut first);
    for (i, client) in queued.iter_mut().enumerate() {
        let (rest, end) = client.rest();
        assert_eq!(
            String::from_utf8_lossy(&rest),
            format!("Echo: queued {i}\r\n{GOODBYE}")
        );
        assert_eq!(end, End::Eof);
    }
    let report = expect_report(&mut server, 0);
    assert_eq!(field_num(&report, "drained"), 3);
    assert_eq!(field_num(&report, "refused_busy"), 0);
}

#[test]
fn busy_only_when_every_worker_serves_and_the_queue_is_full() {
    let (mut server, addr) = echo_server(&["--workers", "1", "--queue", "0"]);
    let mut served = Client::connect(addr);
    served.send(b"mine\n").unwrap();
    assert_eq!(served.expect_line(), "Echo: mine\r\n");
    let mut turned_away = Client::connect(addr);
    let (rest, end) = turned_away.rest();
    assert_eq!(String::from_utf8_lossy(&rest), "Error: server busy\r\n");
    assert_eq!(end, End::Eof);
    // Once the worker is free again, the next client is served. "Free" is the
    // worker back at its queue, a moment after our close reaches it: until then a
    // newcomer may still be refused, so retry within the deadline.
    drop(served);
    let deadline = Instant::now() + PATIENCE;
    let mut refusals = 1;
    let mut next = loop {
        assert!(
            Instant::now() < deadline,
            "the freed worker never took a client"
        );
        let mut next = Client::connect(addr);
        next.send(b"my turn\n").unwrap();
        match next.expect_line().as_str() {
            "Echo: my turn\r\n" => break next,
            "Error: server busy\r\n" => refusals += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    };
    server.signal("TERM");
    expect_goodbye_then_eof(&mut next);
    let report = expect_report(&mut server, 0);
    assert_eq!(field_num(&report, "refused_busy"), refusals);
}

#[test]
fn idle_clients_are_told_and_closed() {
    let (mut server, addr) = echo_server(&["--idle-timeout", "300ms"]);
    let mut client = Client::connect(addr);
    client.send(b"one\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: one\r\n");
    let started = Instant::now();
    let (rest, end) = client.rest();
    assert_eq!(String::from_utf8_lossy(&rest), "Error: idle timeout\r\n");
    assert_eq!(end, End::Eof);
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.signal("TERM");
    expect_report(&mut server, 0);
}

#[test]
fn a_line_over_the_limit_is_refused_with_bounded_memory() {
    // A long linger: the server must keep discarding until the whole flood is sent,
    // however slow the machine, or its close would reset the error line away.
    let (mut server, addr) = echo_server(&["--max-line", "64KiB", "--linger", "10s"]);
    let before = server.peak_rss_kib();
    let mut client = Client::connect(addr);
    client.send(b"short\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: short\r\n");
    // 16 MiB without a newline: the server must cut it off, not buffer it.
    let endless = vec![b'x'; 1 << 20];
    for _ in 0..16 {
        if client.send(&endless).is_err() {
            break;
        }
    }
    let (rest, end) = client.rest();
    assert_eq!(String::from_utf8_lossy(&rest), "Error: line too long\r\n");
    assert_eq!(end, End::Eof);
    // Closing on EOF, as a client does, ends the server's linger.
    drop(client);
    if let (Some(before), Some(after)) = (before, server.peak_rss_kib()) {
        assert!(
            after < before + 4 * 1024,
            "peak RSS grew from {before} KiB to {after} KiB"
        );
    }
    server.signal("TERM");
    expect_report(&mut server, 0);
}

/// A client that floods lines and never reads, its worker stuck writing replies.
fn flood_without_reading(addr: std::net::SocketAddr) -> TcpStream {
    support::flood_without_reading(addr, b"fill the pipe with lines that are never read\n")
}

#[test]
fn the_drain_deadline_force_closes_and_exits_124() {
    let (mut server, addr) = echo_server(&["--drain-timeout", "1s", "--workers", "2"]);
    let _stuck = flood_without_reading(addr);
    let mut polite = Client::connect(addr);
    polite.send(b"hi\n").unwrap();
    assert_eq!(polite.expect_line(), "Echo: hi\r\n");
    server.signal("TERM");
    expect_goodbye_then_eof(&mut polite);
    // A client closes when it reads EOF; that ends the server's linger at once.
    drop(polite);
    let report = expect_report(&mut server, 124);
    assert_eq!(field(&report, "outcome"), "deadline");
    assert!(field_num(&report, "forced") >= 1, "{report}");
    assert_eq!(field_num(&report, "drained"), 1, "{report}");
    assert_eq!(field_num(&report, "detached_threads"), 0, "{report}");
}

#[test]
fn a_second_signal_forces_exit_130() {
    let (mut server, addr) = echo_server(&["--drain-timeout", "60s"]);
    let _stuck = flood_without_reading(addr);
    // Wait until the flood has filled the pipe both ways and the worker is stuck.
    let started = Instant::now();
    server.signal("TERM");
    server.wait_stderr("draining");
    server.signal("TERM");
    let report = expect_report(&mut server, 130);
    assert_eq!(field(&report, "outcome"), "forced");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited for the deadline"
    );
}

#[test]
fn bind_conflict_is_one_line_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut process = Process::spawn_with_env(
        &support::binary(),
        &["echo", "--addr", &addr],
        &[("RUST_LOG", "error")],
    );
    let (status, _) = process.finish();
    assert_eq!(status.code(), Some(1));
    let stderr = process.stderr_text();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("cannot listen on"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["echo", "--no-such-flag"][..],
        &[][..],
        &["echo", "--tick", "soon"][..],
    ] {
        let mut process = Process::spawn(&support::binary(), args);
        let (status, _) = process.finish();
        assert_eq!(status.code(), Some(2), "args {args:?}\n{}", process.dump());
        assert!(!process.stderr_text().contains("panicked"));
    }
}

/// Every option has a documented range: beyond it, exit 2 with one line and no
/// panic — values that used to abort on allocation, panic in a dependency, or print a
/// thread-spawn backtrace.
#[test]
fn absurd_option_values_exit_2_with_one_line() {
    for args in [
        &["echo", "--queue", "1000000000"][..],
        &["echo", "--queue", "18446744073709551615"][..],
        &["echo", "--workers", "20000"][..],
        &["echo", "--accept-poll", "0s"][..],
        &["echo", "--max-line", "1GiB"][..],
        &["echo", "--idle-timeout", "100000h"][..],
        &[
            "echo",
            "--shutdown-timeout",
            "3s",
            "--cleanup-timeout",
            "5s",
        ][..],
        &["echo", "--drain-delay", "5s", "--shutdown-timeout", "4s"][..],
        &["http", "--max-body", "2GiB"][..],
    ] {
        let mut process = Process::spawn(&support::binary(), args);
        let (status, stdout) = process.finish();
        assert_eq!(status.code(), Some(2), "args {args:?}\n{}", process.dump());
        assert!(stdout.is_empty(), "args {args:?}: nothing on stdout");
        let stderr = process.stderr_text();
        assert_eq!(stderr.lines().count(), 1, "args {args:?}: {stderr}");
        assert!(stderr.starts_with("lameduck: "), "args {args:?}: {stderr}");
    }
}

/// `--queue` is a limit, not an allocation: a million-slot queue starts in a few MiB.
#[test]
fn a_huge_queue_costs_nothing_until_it_fills() {
    let (mut server, addr) = echo_server(&["--queue", "1000000", "--workers", "4"]);
    let mut client = Client::connect(addr);
    client.send(b"small\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: small\r\n");
    let peak = server.peak_rss_kib().expect("VmHWM on Linux");
    // A preallocated channel would take about 47 MB here (47 bytes a slot).
    assert!(peak < 24 * 1024, "peak RSS {peak} KiB with --queue 1000000");
    server.signal("TERM");
    expect_goodbye_then_eof(&mut client);
    expect_report(&mut server, 0);
}

/// The drain under load: 64 clients in a closed loop, SIGTERM mid-load. Every
/// client gets a reply to every line but at most the one crossing the goodbye, then
/// the goodbye, then EOF; no resets, no corrupted lines.
#[test]
fn drain_under_load_loses_nothing() {
    const CLIENTS: usize = 64;
    for round in 0..3 {
        let (mut server, addr) = echo_server(&[]);
        let (warm_tx, warm_rx) = crossbeam_channel::bounded::<()>(CLIENTS);
        let handles: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let warm_tx = warm_tx.clone();
                thread::spawn(move || closed_loop(addr, id, warm_tx))
            })
            .collect();
        let deadline = Instant::now() + PATIENCE;
        for _ in 0..CLIENTS {
            warm_rx
                .recv_deadline(deadline)
                .expect("every client warms up");
        }
        server.signal("TERM");
        let mut unanswered_total = 0;
        for handle in handles {
            let outcome = handle.join().expect("client thread");
            assert!(outcome.unanswered <= 1, "round {round}: {outcome:?}");
            unanswered_total += outcome.unanswered;
        }
        let report = expect_report(&mut server, 0);
        assert_eq!(field_num(&report, "drained"), CLIENTS as u64, "{report}");
        assert!(unanswered_total <= CLIENTS);
    }
}

#[derive(Debug)]
struct LoopOutcome {
    unanswered: usize,
}

fn closed_loop(
    addr: std::net::SocketAddr,
    id: usize,
    warm: crossbeam_channel::Sender<()>,
) -> LoopOutcome {
    let mut client = Client::connect(addr);
    let deadline = Instant::now() + PATIENCE;
    let mut sent = 0usize;
    loop {
        assert!(
            Instant::now() < deadline,
            "client {id} never saw the goodbye"
        );
        let line = format!("client {id} line {sent}\n");
        let wrote = client.send(line.as_bytes());
        sent += 1;
        if sent == 20 {
            let _ = warm.send(());
        }
        let reply = match client.line() {
            Ok(Some(reply)) => String::from_utf8(reply).expect("replies are ASCII here"),
            Ok(None) => panic!("client {id}: EOF before the goodbye"),
            Err(err) => panic!("client {id}: {err} before the goodbye (write: {wrote:?})"),
        };
        if reply == GOODBYE {
            // The line just sent crossed the goodbye on the wire, unless the write
            // failed already; nothing else may follow but EOF.
            let (rest, end) = client.rest();
            assert!(rest.is_empty(), "client {id}: {rest:?} after the goodbye");
            assert_eq!(end, End::Eof, "client {id}");
            return LoopOutcome { unanswered: 1 };
        }
        assert_eq!(
            reply,
            format!("Echo: client {id} line {}\r\n", sent - 1),
            "client {id}"
        );
    }
}
