//! `lameduck http` end to end (SPEC §5): the real binary, real sockets, real signals.
//!
//! Well-formed traffic goes through `ureq` (and `curl` when installed); malformed,
//! slow and pipelined traffic through raw sockets. Every wait is an event with a
//! deadline; the only sleeps are the ones that make a client slow on purpose.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::http::{
    assert_clean_exit, assert_eof, connect, expect_refusal, read_reply, send, url,
};
use support::{Process, PATIENCE};

/// Starts `lameduck http --addr 127.0.0.1:0` with a short linger plus `args`, and
/// waits for its `listening on` line. The tick stays at its default (1 s): every
/// timeout and drain here must be prompt without a short tick.
#[track_caller]
fn http_server(args: &[&str]) -> (Process, SocketAddr) {
    let mut full = vec!["http", "--addr", "127.0.0.1:0", "--linger", "300ms"];
    full.extend_from_slice(args);
    let mut server = Process::spawn_with_env(&support::binary(), &full, &[("RUST_LOG", "debug")]);
    let addr = server.listening_addr();
    (server, addr)
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(PATIENCE).build()
}

/// The status of a ureq call, 4xx and 5xx included.
fn status_of(result: Result<ureq::Response, ureq::Error>) -> (u16, Option<ureq::Response>) {
    match result {
        Ok(response) => (response.status(), Some(response)),
        Err(ureq::Error::Status(code, response)) => (code, Some(response)),
        Err(err) => panic!("transport error: {err}"),
    }
}

#[test]
fn routes_answer_get_head_and_refuse_other_methods() {
    let (mut server, addr) = http_server(&[]);
    let agent = agent();
    let hello = agent.get(&url(addr, "/")).call().expect("GET /");
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.header("content-length"), Some("13"));
    assert_eq!(hello.into_string().unwrap(), "Hello, World!");

    let (code, health) = status_of(agent.get(&url(addr, "/healthz")).call());
    assert_eq!(code, 200);
    assert_eq!(health.unwrap().into_string().unwrap(), "ok\n");

    let (code, head) = status_of(agent.head(&url(addr, "/")).call());
    assert_eq!(code, 200);
    assert_eq!(head.unwrap().header("content-length"), Some("13"));

    assert_eq!(status_of(agent.get(&url(addr, "/missing")).call()).0, 404);
    let (code, refused) = status_of(agent.post(&url(addr, "/")).send_string("x"));
    assert_eq!(code, 405);
    assert_eq!(refused.unwrap().header("allow"), Some("GET, HEAD"));
    assert_eq!(
        status_of(agent.delete(&url(addr, "/healthz")).call()).0,
        405
    );

    server.signal("TERM");
    assert_clean_exit(&mut server);
}

#[test]
fn keep_alive_connection_close_and_http10() {
    let (_server, addr) = http_server(&[]);
    let mut client = connect(addr);
    for _ in 0..3 {
        send(&mut client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let reply = read_reply(&mut client, false);
        assert_eq!(reply.text(), "Hello, World!");
        assert_eq!(reply.header("connection"), None, "1.1 keeps the connection");
    }
    send(
        &mut client,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        read_reply(&mut client, false).header("connection"),
        Some("close")
    );
    assert_eof(&mut client);

    let mut old = connect(addr);
    send(
        &mut old,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(
        read_reply(&mut old, false).header("connection"),
        Some("keep-alive")
    );
    send(&mut old, b"HEAD / HTTP/1.0\r\n\r\n");
    let head = read_reply(&mut old, true);
    assert_eq!(head.header("content-length"), Some("13"));
    assert_eq!(head.header("connection"), Some("close"));
    assert_eof(&mut old);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_server, addr) = http_server(&[]);
    let mut client = connect(addr);
    let mut batch = Vec::new();
    for path in ["/", "/healthz", "/nope", "/"] {
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(
        b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    send(&mut client, &batch);
    let statuses: Vec<u16> = (0..6)
        .map(|_| read_reply(&mut client, false).status)
        .collect();
    assert_eq!(statuses, [200, 200, 404, 200, 404, 200]);
    assert_eof(&mut client);
}

#[test]
fn malformed_requests_get_400_and_a_close() {
    let (_server, addr) = http_server(&[]);
    for bad in [
        &b"this is not http\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
        // RFC 9112 §3.2: exactly one valid Host.
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
    ] {
        expect_refusal(addr, bad, 400);
    }
}

#[test]
fn header_limits_get_431() {
    let (_server, addr) = http_server(&[]);
    let mut many = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..64 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    expect_refusal(addr, &many, 431);

    // The server answers once it has seen too much, before the head even ends.
    let mut huge = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat(b'a').take(20 * 1024));
    expect_refusal(addr, &huge, 431);
}

#[test]
fn bodies_over_the_limit_get_413() {
    let (_server, addr) = http_server(&["--max-body", "1KiB"]);
    expect_refusal(
        addr,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n",
        413,
    );
    let mut chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend(std::iter::repeat(b'z').take(0x200));
        chunked.extend_from_slice(b"\r\n");
    }
    expect_refusal(addr, &chunked, 413);
    // Within the limit the body is read, and the route answers.
    let (code, _) = status_of(agent().post(&url(addr, "/")).send_bytes(&[b'a'; 1024]));
    assert_eq!(code, 405);
}

#[test]
fn slow_clients_get_408_and_silent_ones_are_dropped() {
    let (_server, addr) = http_server(&["--header-timeout", "300ms", "--body-timeout", "300ms"]);
    let started = Instant::now();
    let mut silent = connect(addr);
    let mut slow_head = connect(addr);
    // Slowloris: a byte at a time, never finishing the head.
    for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ".iter() {
        send(&mut slow_head, &[*byte]);
    }
    let reply = read_reply(&mut slow_head, false);
    assert_eq!(reply.status, 408);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut slow_head);

    let mut slow_body = connect(addr);
    send(
        &mut slow_body,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab",
    );
    assert_eq!(read_reply(&mut slow_body, false).status, 408);
    assert_eof(&mut slow_body);

    // A connection that never sent a byte is closed without a word.
    assert_eof(&mut silent);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_full_pool_answers_503_with_retry_after() {
    let (_server, addr) = http_server(&["--workers", "1", "--queue", "0"]);
    let mut holder = connect(addr);
    send(&mut holder, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_reply(&mut holder, false).status, 200);
    // The only worker now holds `holder`, idle between requests.
    let reply = expect_refusal(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
}

#[test]
fn a_request_in_flight_finishes_with_connection_close_on_sigterm() {
    let (mut server, addr) = http_server(&["--work-delay", "500ms"]);
    let mut client = connect(addr);
    send(&mut client, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_reply(&mut client, false).status, 200);
    let mut idle = connect(addr);
    send(&mut idle, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_reply(&mut idle, false).status, 200);

    send(&mut client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let sent = Instant::now();
    server.signal("TERM");
    server.wait_stderr("stopped accepting");
    // The idle keep-alive connection is closed within a few ticks of the drain...
    assert_eof(&mut idle);
    let idle_closed = sent.elapsed();
    // ...while the slow request runs to the end and says goodbye.
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello, World!");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(sent.elapsed() >= Duration::from_millis(450), "the work ran");
    assert!(
        idle_closed < Duration::from_millis(450),
        "idle closed before the slow request ended ({idle_closed:?})"
    );
    assert_eof(&mut client);

    assert!(TcpStream::connect(addr).is_err(), "listener closed");
    let report = assert_clean_exit(&mut server);
    assert!(report.contains(" drained=2 "), "{report}");
}

#[test]
fn healthz_is_503_during_the_drain_delay_then_connects_are_refused() {
    let (mut server, addr) = http_server(&["--drain-delay", "600ms"]);
    let agent = agent();
    assert_eq!(status_of(agent.get(&url(addr, "/healthz")).call()).0, 200);
    server.signal("TERM");
    server.wait_stderr("not ready: still accepting");
    // Still serving, new connections included, but reporting not ready.
    let (code, health) = status_of(agent.get(&url(addr, "/healthz")).call());
    assert_eq!(code, 503);
    assert_eq!(health.unwrap().into_string().unwrap(), "draining\n");
    let fresh = ureq::AgentBuilder::new().timeout(PATIENCE).build();
    assert_eq!(status_of(fresh.get(&url(addr, "/")).call()).0, 200);

    server.wait_stderr("stopped accepting");
    assert!(TcpStream::connect(addr).is_err(), "listener closed");
    assert_clean_exit(&mut server);
}

#[test]
fn curl_speaks_to_it() {
    if let Err(err) = Command::new("curl").arg("--version").output() {
        panic!("curl is needed by this test and cannot be run ({err}): install it");
    }
    let (mut server, addr) = http_server(&[]);
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-i", &url(addr, "/")])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nHello, World!"), "{text}");

    // A chunked upload (curl sends Expect: 100-continue for it) reaches the route.
    let mut upload = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@-",
            &url(addr, "/nope"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run curl");
    upload
        .stdin
        .take()
        .expect("stdin")
        .write_all(&[b'c'; 5000])
        .expect("feed curl");
    let output = upload.wait_with_output().expect("curl finishes");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "404");

    server.signal("INT");
    assert_clean_exit(&mut server);
}

#[test]
fn a_second_signal_cuts_work_short_and_exits_130() {
    let (mut server, addr) = http_server(&["--work-delay", "20s"]);
    let mut client = connect(addr);
    send(&mut client, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_reply(&mut client, false).status, 200);
    send(&mut client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let started = Instant::now();
    server.signal("TERM");
    server.wait_stderr("stopped accepting");
    server.signal("TERM");
    let (status, report) = server.finish();
    assert_eq!(status.code(), Some(130), "{}", server.dump());
    assert!(report.contains("outcome=forced"), "{report}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the work was cut short"
    );
}

#[test]
fn work_past_the_drain_deadline_is_forced_and_exits_124() {
    let (mut server, addr) = http_server(&["--work-delay", "20s", "--drain-timeout", "300ms"]);
    let mut client = connect(addr);
    send(&mut client, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_reply(&mut client, false).status, 200);
    send(&mut client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let started = Instant::now();
    server.signal("TERM");
    let (status, report) = server.finish();
    assert_eq!(status.code(), Some(124), "{}", server.dump());
    assert!(report.contains("outcome=deadline"), "{report}");
    assert!(report.contains(" forced=1 "), "{report}");
    assert!(report.contains(" detached_threads=0 "), "{report}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The readiness delay is part of the budget, not added to it: with a 3 s budget,
/// 1 s of it kept for cleanup and a 1 s delay, stuck work is forced at 2 s and the
/// report comes within the 3 s (it used to come at 4 s and more).
#[test]
fn the_drain_delay_counts_inside_the_shutdown_budget() {
    let (mut server, addr) = http_server(&[
        "--work-delay",
        "20s",
        "--drain-delay",
        "1s",
        "--shutdown-timeout",
        "3s",
        "--cleanup-timeout",
        "1s",
    ]);
    let mut client = connect(addr);
    send(&mut client, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_reply(&mut client, false).status, 200);
    send(&mut client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    server.signal("TERM");
    let (status, report) = server.finish();
    assert_eq!(status.code(), Some(124), "{}", server.dump());
    let drain = support::field_num(&report, "drain_ms");
    let total = support::field_num(&report, "total_ms");
    assert!(
        (2000..2600).contains(&drain),
        "forced at the 2 s drain deadline: {report}"
    );
    assert!(total <= 3100, "within the 3 s budget: {report}");
}

/// How a closed-loop client's run ended: the responses it read, or what went wrong.
type LoopEnd = Result<usize, String>;

/// A keep-alive client that sends its next request as soon as it has read a
/// response, on one connection, until a response carries `Connection: close`; then
/// it expects a clean EOF. Every response read is reported on `progress`.
fn closed_loop_client(addr: SocketAddr, progress: crossbeam_channel::Sender<()>) -> LoopEnd {
    use std::io::{BufRead, Read};
    let mut client = connect(addr);
    let deadline = Instant::now() + PATIENCE;
    for answered in 0.. {
        if Instant::now() > deadline {
            return Err(format!("no `Connection: close` within {PATIENCE:?}"));
        }
        client
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .map_err(|err| format!("request {answered}: write failed: {err}"))?;
        match client.fill_buf() {
            Ok([]) => return Err(format!("request {answered}: EOF instead of a response")),
            Ok(_) => {}
            Err(err) => return Err(format!("request {answered}: {err}")),
        }
        let reply = read_reply(&mut client, false);
        if reply.status != 200 || reply.text() != "Hello, World!" {
            return Err(format!("request {answered}: {reply:?}"));
        }
        let _ = progress.send(());
        if reply.header("connection") == Some("close") {
            let mut rest = Vec::new();
            return match client.read_to_end(&mut rest) {
                Ok(0) => Ok(answered + 1),
                Ok(_) => Err(format!("bytes after the last response: {rest:?}")),
                Err(err) => Err(format!("after the last response: {err}")),
            };
        }
    }
    unreachable!("the loop returns")
}

#[test]
fn closed_loop_keep_alive_clients_lose_no_request_to_sigterm() {
    const CLIENTS: usize = 16;
    // The grace must outlast the longest a client thread waits for a core between
    // reading a response and sending the next request. A second covers a loaded CI
    // machine; the figures for the default are the bench's (benches/keepalive_grace.rs).
    let (mut server, addr) = http_server(&["--keepalive-grace", "1s"]);
    let (progress_tx, progress) = crossbeam_channel::unbounded();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let progress = progress_tx.clone();
            std::thread::spawn(move || closed_loop_client(addr, progress))
        })
        .collect();
    drop(progress_tx);
    let deadline = Instant::now() + PATIENCE;
    for _ in 0..CLIENTS * 20 {
        progress
            .recv_deadline(deadline)
            .expect("the clients make progress before the signal");
    }
    server.signal("TERM");
    let ends: Vec<LoopEnd> = clients
        .into_iter()
        .map(|client| client.join().expect("a client thread"))
        .collect();
    let failures: Vec<&String> = ends.iter().filter_map(|end| end.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "every request sent got a response, the last with `Connection: close`, then \
         EOF; instead: {failures:#?}"
    );
    let report = assert_clean_exit(&mut server);
    assert_eq!(
        support::field_num(&report, "drained"),
        CLIENTS as u64,
        "{report}"
    );
}

#[test]
fn a_request_within_the_keep_alive_grace_is_answered_with_connection_close() {
    let (mut server, addr) = http_server(&["--keepalive-grace", "3s"]);
    let mut client = connect(addr);
    send(&mut client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_reply(&mut client, false).status, 200);
    server.signal("TERM");
    server.wait_stderr("stopped accepting");
    // Draining has begun, and the connection is idle but within its grace: a request
    // that arrives now is still answered, as the last one.
    send(&mut client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut client);
    let report = assert_clean_exit(&mut server);
    assert!(report.contains(" drained=1 "), "{report}");
}

#[test]
fn a_long_idle_connection_is_closed_at_once_despite_the_grace() {
    let grace = Duration::from_secs(1);
    let (mut server, addr) = http_server(&["--keepalive-grace", "1s"]);
    let mut idle = connect(addr);
    send(&mut idle, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_reply(&mut idle, false).status, 200);
    // The client idles on purpose, longer than the grace; the server meanwhile
    // keeps the connection open and says nothing.
    support::expect_silence(idle.get_ref(), grace * 2);
    let signalled = Instant::now();
    server.signal("TERM");
    assert_eof(&mut idle);
    let closed = signalled.elapsed();
    drop(idle);
    assert_clean_exit(&mut server);
    let exited = signalled.elapsed();
    // The linger is 300 ms (see `http_server`), and the client closes at EOF.
    assert!(
        closed < grace / 2,
        "closed {closed:?} after the signal, not at once"
    );
    assert!(
        exited < grace,
        "the server exited {exited:?} after the signal: the grace held it"
    );
}
