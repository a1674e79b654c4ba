//! The HTTP connection loop against a real in-process server (the library as an
//! application embeds it): pipelining, HEAD, HTTP/1.0, keep-alive, timeouts and the
//! goodbye. Every wait has a deadline.

mod in_process;

use std::io::Write;
use std::time::{Duration, Instant};

use in_process::{assert_eof, read_reply, Running};
use lameduck::protocol::http::http::StatusCode;
use lameduck::protocol::http::*;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Running::start(Http::hello());
    let mut client = server.connect();
    client
        .get_mut()
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
              HEAD / HTTP/1.1\r\nHost: x\r\n\r\n\
              GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let hello = read_reply(&mut client, false);
    assert_eq!(
        (hello.status, hello.body.as_slice()),
        (200, &b"Hello, World!"[..])
    );
    assert_eq!(read_reply(&mut client, false).body, b"ok\n");
    assert_eq!(read_reply(&mut client, false).status, 404);
    let head = read_reply(&mut client, true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("13"));
    let last = read_reply(&mut client, false);
    assert_eq!(last.header("connection"), Some("close"));
    assert_eof(&mut client);
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let server = Running::start(Http::hello());
    let mut client = server.connect();
    client
        .get_mut()
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
        .unwrap();
    let first = read_reply(&mut client, false);
    assert_eq!(first.header("connection"), Some("keep-alive"));
    let second = read_reply(&mut client, false);
    assert_eq!(second.header("connection"), Some("close"));
    assert_eof(&mut client);
}

#[test]
fn chunked_bodies_reach_the_service() {
    let echo = |mut req: Request<'_>, _: &Context| -> Result<Response, Error> {
        let body = req.body_mut().to_vec()?;
        let trailer = req
            .body()
            .trailers()
            .into_iter()
            .flatten()
            // The `http` crate keeps names in lower case; this echo shows them in upper.
            .map(|(n, v)| {
                let name = n.as_str().to_ascii_uppercase();
                format!("{name}={}", String::from_utf8_lossy(v.as_bytes()))
            })
            .collect::<Vec<_>>()
            .join(",");
        Ok(http::Response::builder()
            .header("X-Trailers", trailer)
            .body(Body::from(body))?)
    };
    let server = Running::start(Http::new(echo).max_body(10));
    let mut client = server.connect();
    client
        .get_mut()
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // Split mid-size-line and mid-data, across writes the server reads separately.
    for piece in [
        &b"4;a=b\r"[..],
        b"\nwiki\r\n5\r\npe",
        b"dia\r\n0\r\nX-T: 1\r\n\r\n",
    ] {
        client.get_mut().write_all(piece).unwrap();
        client.get_mut().flush().unwrap();
    }
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.body, b"wikipedia");
    assert_eq!(reply.header("x-trailers"), Some("X-T=1"));
    client
        .get_mut()
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n")
        .unwrap();
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut client);
}

#[test]
fn expect_continue_gets_100_before_the_body() {
    let server = Running::start(Http::new(|mut req: Request<'_>, _: &Context| {
        req.body_mut()
            .to_vec()
            .map(|body| http::Response::new(Body::from(body)))
    }));
    let mut client = server.connect();
    client
        .get_mut()
        .write_all(
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        )
        .unwrap();
    let interim = read_reply(&mut client, true);
    assert_eq!(interim.status, 100);
    client.get_mut().write_all(b"hi").unwrap();
    assert_eq!(read_reply(&mut client, false).body, b"hi");
}

#[test]
fn slow_heads_get_408_and_silent_connections_are_closed() {
    let http = Http::hello().header_timeout(Duration::from_millis(150));
    let server = Running::start(http);
    let started = Instant::now();
    let mut silent = server.connect();
    let mut slow = server.connect();
    slow.get_mut().write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    let reply = read_reply(&mut slow, false);
    assert_eq!(reply.status, 408);
    assert_eof(&mut slow);
    assert_eof(&mut silent);
    assert!(started.elapsed() < WAIT);
}

#[test]
fn drain_answers_requests_already_sent_then_closes() {
    let (started_tx, started_rx) = crossbeam_channel::bounded(1);
    let service = move |req: Request<'_>, ctx: &Context| {
        if req.uri().path() == "/slow" {
            let _ = started_tx.send(());
            // Work until the drain has begun, so the goodbye comes mid-request.
            let deadline = Instant::now() + WAIT;
            while !ctx.is_draining() && Instant::now() < deadline {
                ctx.work_for(Duration::from_millis(5));
            }
        }
        text(StatusCode::OK, req.uri().path().to_owned())
    };
    // No keep-alive grace: the idle connection, answered just before the trigger,
    // is dismissed as draining begins. (With one it would close when the grace ends,
    // timed by `join`, which runs only when `Running` is dropped.)
    let server = Running::start(Http::new(service).keepalive_grace(Duration::ZERO));
    let mut idle = server.connect();
    idle.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_reply(&mut idle, false).header("connection").is_none());

    let mut busy = server.connect();
    busy.get_mut()
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    started_rx
        .recv_timeout(WAIT)
        .expect("the slow request started");
    // Sent while the worker is busy: it waits in the socket until the goodbye read.
    busy.get_mut()
        .write_all(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let triggered = Instant::now();
    server.shutdown.trigger();

    let slow = read_reply(&mut busy, false);
    assert_eq!((slow.status, slow.body.as_slice()), (200, &b"/slow"[..]));
    assert_eq!(slow.header("connection"), None, "another request follows");
    let second = read_reply(&mut busy, false);
    assert_eq!(second.body, b"/second");
    assert_eq!(second.header("connection"), Some("close"));
    assert_eof(&mut busy);
    assert_eof(&mut idle);
    assert!(
        triggered.elapsed() < Duration::from_secs(2),
        "closed within ticks"
    );
}

#[test]
fn a_panicking_service_answers_500_and_the_server_counts_it() {
    let server = Running::start(Http::new(|req: Request<'_>, _: &Context| {
        if req.uri().path() == "/boom" {
            panic!("boom");
        }
        text(StatusCode::OK, "fine")
    }));
    let mut client = server.connect();
    client
        .get_mut()
        .write_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 500);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut client);
    let mut other = server.connect();
    other
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_reply(&mut other, false).body,
        b"fine",
        "the worker lives on"
    );
    drop(other);
    assert_eq!(server.stop().panics, 1, "the panic is in the report");
}
