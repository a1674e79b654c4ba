//! A server short of file descriptors (EMFILE): the drain takes the whole backlog as
//! descriptors free up, failing accepts back off and are logged once a second, and a
//! drain that cannot finish says what it left behind. The real binary, run under
//! `ulimit -n`, with real clients and real signals.

use crate::support;

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::Instant;

use support::http::{connect, read_reply, send};
use support::{binary, field, field_num, finish_with_report, Client, End, Process, GOODBYE};

/// Starts `lameduck <args>` with at most `limit` open descriptors and waits for its
/// `listening on` line. `exec` keeps the PID the server's, for signals and kills.
fn limited_server(limit: u32, args: &[&str]) -> (Process, SocketAddr) {
    let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
    let binary = binary();
    let binary = binary.to_str().expect("a UTF-8 path to the binary");
    let mut argv = vec!["-c", script.as_str(), binary];
    argv.extend_from_slice(args);
    let mut process = Process::spawn(Path::new("sh"), &argv);
    let addr = process.listening_addr();
    (process, addr)
}

/// `count` echo clients, each connected and its line sent, most of them left in the
/// backlog of a server that has only a few dozen descriptors.
fn echo_clients(addr: SocketAddr, count: usize) -> Vec<Client> {
    (0..count)
        .map(|i| {
            let mut client = Client::connect(addr);
            client.send(format!("line {i}\n").as_bytes()).unwrap();
            client
        })
        .collect()
}

/// Reads every client to its end on a thread each (a client is served only once
/// others have closed, so reading them one by one would serialise the drain on the
/// test), and returns what went wrong, one line per client that was not answered
/// with `expected(i)` then a clean EOF.
fn conversations<C: Send>(
    clients: Vec<C>,
    read: impl Fn(usize, C) -> Result<(), String> + Sync,
) -> Vec<String> {
    thread::scope(|scope| {
        let read = &read;
        let readers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| scope.spawn(move || read(i, client)))
            .collect();
        readers
            .into_iter()
            .enumerate()
            .filter_map(|(i, reader)| match reader.join() {
                Ok(Ok(())) => None,
                Ok(Err(problem)) => Some(format!("client {i}: {problem}")),
                Err(_) => Some(format!("client {i}: reader panicked")),
            })
            .collect()
    })
}

#[test]
fn a_drain_out_of_descriptors_serves_the_whole_backlog() {
    // A tick longer than the clients' patience: a connection left out of the
    // registry for want of a descriptor would notice the drain only at its tick.
    let (mut server, addr) =
        limited_server(64, &["echo", "--addr", "127.0.0.1:0", "--tick", "20s"]);
    let clients = echo_clients(addr, 200);
    // The server has run out: most clients wait in the backlog now.
    server.wait_stderr("accept failed");
    server.signal("TERM");
    let problems = conversations(clients, |i, mut client| {
        let (rest, end) = client.rest();
        let expected = format!("Echo: line {i}\r\n{GOODBYE}");
        match (String::from_utf8_lossy(&rest), end) {
            (rest, End::Eof) if rest == expected => Ok(()),
            (rest, end) => Err(format!("read {rest:?} then {end:?}")),
        }
    });
    assert!(
        problems.is_empty(),
        "{} of 200 clients not answered:\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        server.dump()
    );
    let (code, report) = finish_with_report(&mut server);
    // For figures: `cargo test --test cli descriptors:: -- --nocapture`.
    eprintln!("200 echo clients under ulimit -n 64: {report}");
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert_eq!(field_num(&report, "drained"), 200, "{report}");
    assert_eq!(field_num(&report, "forced"), 0, "{report}");
    assert_eq!(field_num(&report, "backlog_left"), 0, "{report}");
    assert_eq!(field_num(&report, "refused_busy"), 0, "{report}");
}

#[test]
fn an_http_drain_out_of_descriptors_answers_every_request() {
    let (mut server, addr) = limited_server(128, &["http", "--addr", "127.0.0.1:0"]);
    let clients: Vec<_> = (0..300)
        .map(|_| {
            let mut client = connect(addr);
            send(&mut client, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            client
        })
        .collect();
    server.wait_stderr("accept failed");
    server.signal("TERM");
    let problems = conversations(clients, |_, mut client| {
        let reply = read_reply(&mut client, false);
        if reply.status != 200 || reply.text() != "Hello, World!" {
            return Err(format!("got {} {:?}", reply.status, reply.text()));
        }
        let mut rest = Vec::new();
        match client.read_to_end(&mut rest) {
            Ok(_) if rest.is_empty() => Ok(()),
            Ok(_) => Err(format!("more after the response: {rest:?}")),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => Err("reset".into()),
            Err(err) => Err(format!("reading to the end: {err}")),
        }
    });
    assert!(
        problems.is_empty(),
        "{} of 300 clients not answered:\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        server.dump()
    );
    let (code, report) = finish_with_report(&mut server);
    eprintln!("300 HTTP clients under ulimit -n 128: {report}");
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert_eq!(field_num(&report, "drained"), 300, "{report}");
    assert_eq!(field_num(&report, "backlog_left"), 0, "{report}");
}

#[test]
fn failing_accepts_are_logged_once_a_second_and_serving_resumes() {
    // A connection takes two descriptors (the socket and the registry's handle):
    // with a limit of the other parity than the tests above, the one that runs out
    // is the other of the two.
    let (mut server, addr) = limited_server(65, &["echo", "--addr", "127.0.0.1:0"]);
    let clients = echo_clients(addr, 100);
    server.wait_stderr("accept failed");
    let starved = Instant::now();
    // A summary line comes once the failures have gone on for a second: the server
    // kept retrying all that time, and said so once.
    let summary = server.wait_stderr("times in the last");
    let repeats: u64 = summary
        .split("accept failed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {summary:?}"));
    assert!(repeats >= 1, "{summary}");
    // Descriptors free up as the clients go: the rest of the backlog is taken, and
    // a new client is served as usual.
    drop(clients);
    let mut fresh = Client::connect(addr);
    fresh.send(b"after\n").unwrap();
    assert_eq!(fresh.expect_line(), "Echo: after\r\n");
    let starved_for = starved.elapsed();
    server.signal("TERM");
    let (rest, end) = fresh.rest();
    assert_eq!(
        (String::from_utf8_lossy(&rest).as_ref(), end),
        (GOODBYE, End::Eof)
    );
    drop(fresh);
    let (code, report) = finish_with_report(&mut server);
    assert_eq!(code, Some(0), "{report}\n{}", server.dump());
    // One line as the failures start, then at most one a second (rounded up), and
    // one for repeats still uncounted when the drain ends.
    let lines = server
        .stderr_text()
        .lines()
        .filter(|line| line.contains("accept failed"))
        .count() as u64;
    let bound = 2 + starved_for.as_secs() + 1;
    assert!(
        lines <= bound,
        "{lines} lines about failed accepts in {starved_for:?} (at most {bound})\n{}",
        server.dump()
    );
}

#[test]
fn a_backlog_left_at_the_deadline_is_counted_and_exits_124() {
    // Served clients never close, and the linger outlasts the drain: no descriptor
    // frees up before the deadline, so most of the backlog cannot be taken.
    let (mut server, addr) = limited_server(
        64,
        &[
            "echo",
            "--addr",
            "127.0.0.1:0",
            "--drain-timeout",
            "1s",
            "--linger",
            "20s",
        ],
    );
    let clients = echo_clients(addr, 200);
    server.wait_stderr("accept failed");
    server.signal("TERM");
    let (code, report) = finish_with_report(&mut server);
    eprintln!("200 echo clients, descriptors held past a 1 s drain: {report}");
    assert_eq!(code, Some(124), "{report}\n{}", server.dump());
    assert_eq!(field(&report, "outcome"), "deadline", "{report}");
    let left = field_num(&report, "backlog_left");
    assert!(left > 0, "{report}");
    // Every client is accounted for: closed gracefully, force-closed once accepted,
    // or left in the backlog.
    let drained = field_num(&report, "drained");
    let forced = field_num(&report, "forced");
    assert_eq!(drained + forced + left, 200, "{report}");
    // Those left in the backlog were never answered: the count is not inflated.
    let unanswered = clients
        .into_iter()
        .filter_map(|mut client| match client.line() {
            Ok(Some(_)) => None,
            Ok(None) | Err(_) => Some(()),
        })
        .count() as u64;
    assert!(unanswered >= left, "{unanswered} unanswered; {report}");
}
