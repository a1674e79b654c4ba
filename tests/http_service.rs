//! Services on the `http` crate's types against a real in-process server: responses
//! built with `http::Response::builder()`, HEAD answered from GET, errors answered
//! 500 on a connection that lives on, framing headers corrected, reason phrases,
//! query pairs, JSON, and request bodies read (or not) as streams. Every wait has a
//! deadline.

mod in_process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, Once};
use std::time::Duration;

use in_process::{assert_eof, read_reply, Reply, Running};
use lameduck::protocol::http::http::{self, header, Method, StatusCode};
#[cfg(feature = "json")]
use lameduck::protocol::http::json;
use lameduck::protocol::http::{query_pairs, text, Body, Context, Error, Http, Request, Response};

fn send(client: &mut BufReader<TcpStream>, bytes: &[u8]) {
    client.get_mut().write_all(bytes).expect("send");
}

/// The log records of this test process, for the debug lines the handler writes.
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        RECORDS
            .lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        static CAPTURE: Capture = Capture;
        log::set_logger(&CAPTURE).expect("the only logger");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

fn logged(needle: &str) -> bool {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains(needle))
}

/// The routes the tests below talk to.
fn app(mut req: Request<'_>, _: &Context) -> Result<Response, Error> {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/built") => Ok(http::Response::builder()
            .status(StatusCode::CREATED)
            .header("x-one", "1")
            .header(header::SET_COOKIE, "a=1")
            .header(header::SET_COOKIE, "b=2")
            .body(Body::from("made"))?),
        (Method::GET, "/stream") => {
            let mut response = Response::new(Body::reader(&b"streamed"[..]));
            response
                .headers_mut()
                .insert("x-kind", http::HeaderValue::from_static("reader"));
            Ok(response)
        }
        (Method::GET, "/fail") => Err("the database is on fire".into()),
        (Method::GET, "/wrong-length") => Ok(http::Response::builder()
            .header(header::CONTENT_LENGTH, "99")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Body::from("ok"))?),
        (Method::GET, "/keep-alive") => Ok(http::Response::builder()
            .header(header::CONNECTION, "keep-alive")
            .body(Body::from("ok"))?),
        (Method::GET, "/close") => Ok(http::Response::builder()
            .header(header::CONNECTION, "close")
            .body(Body::from("bye"))?),
        (Method::GET, "/unsupported") => Ok(text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "no\n")),
        (Method::GET, "/query") => {
            let pairs = query_pairs(req.uri());
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Ok(text(StatusCode::OK, shown.join("|")))
        }
        #[cfg(feature = "json")]
        (Method::POST, "/json") => match req.body_mut().json::<serde_json::Value>() {
            Ok(value) => Ok(json(StatusCode::OK, &serde_json::json!({ "got": value }))),
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                Ok(text(StatusCode::BAD_REQUEST, format!("{err}\n")))
            }
            Err(err) => Err(err.into()),
        },
        (Method::POST, "/count") => {
            let n = std::io::copy(req.body_mut(), &mut std::io::sink())?;
            Ok(text(StatusCode::OK, n.to_string()))
        }
        (Method::POST, "/whole") => {
            let body = req.body_mut().to_vec()?;
            Ok(text(StatusCode::OK, body.len().to_string()))
        }
        (Method::POST, "/ignore") => Ok(text(StatusCode::OK, "ignored")),
        _ => Ok(text(StatusCode::NOT_FOUND, "not found\n")),
    }
}

fn server() -> Running {
    Running::start(Http::new(app).max_body(64 * 1024))
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

#[test]
fn a_response_built_with_the_builder_round_trips() {
    let server = server();
    let mut client = server.connect();
    send(&mut client, &get("/built"));
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("x-one"), Some("1"));
    let cookies: Vec<&str> = reply
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(reply.body, b"made");
    assert_eq!(reply.header("connection"), None, "kept alive");
}

#[test]
fn head_mirrors_get_without_a_body() {
    let server = server();
    let mut client = server.connect();
    for path in ["/built", "/stream"] {
        // HEAD then GET pipelined: a body after the HEAD's head would be read as the
        // GET's status line.
        let head = format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        send(&mut client, head.as_bytes());
        send(&mut client, &get(path));
        let head = read_reply(&mut client, true);
        let full = read_head_and_body(&mut client);
        assert_eq!(head.status, full.status, "{path}");
        assert_eq!(head.headers, full.headers, "{path}: the same headers");
    }
    send(&mut client, &get("/built"));
    assert_eq!(read_reply(&mut client, false).body, b"made");
}

/// Reads a response framed by `Content-Length` or chunked.
fn read_head_and_body(client: &mut BufReader<TcpStream>) -> Reply {
    let mut reply = read_reply(client, true);
    if reply.header("transfer-encoding") == Some("chunked") {
        let (body, complete) = read_chunked(client);
        assert!(complete, "a final chunk");
        reply.body = body;
    } else {
        let length: usize = reply.header("content-length").unwrap().parse().unwrap();
        reply.body = vec![0; length];
        client.read_exact(&mut reply.body).unwrap();
    }
    reply
}

/// Reads a chunked body; `false` if the connection ended before the last chunk.
fn read_chunked(client: &mut BufReader<TcpStream>) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).unwrap_or(0) == 0 {
            return (body, false);
        }
        let size = usize::from_str_radix(line.trim_end(), 16).expect("a chunk size");
        if size == 0 {
            let mut end = String::new();
            client.read_line(&mut end).unwrap();
            assert_eq!(end, "\r\n");
            return (body, true);
        }
        let mut chunk = vec![0; size + 2];
        if client.read_exact(&mut chunk).is_err() {
            return (body, false);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

#[test]
fn a_streamed_body_goes_out_chunked_to_http11_and_to_the_close_for_http10() {
    let server = server();
    let mut client = server.connect();
    send(&mut client, &get("/stream"));
    let reply = read_head_and_body(&mut client);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.header("content-length"), None);
    assert_eq!(reply.body, b"streamed");

    let mut old = server.connect();
    send(
        &mut old,
        b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let reply = read_reply(&mut old, true);
    assert_eq!(reply.header("transfer-encoding"), None);
    assert_eq!(reply.header("connection"), Some("close"));
    let mut body = Vec::new();
    old.read_to_end(&mut body).unwrap();
    assert_eq!(body, b"streamed", "the body ends with the connection");
}

#[test]
fn an_error_is_answered_500_and_the_connection_lives() {
    capture_logs();
    let server = server();
    let mut client = server.connect();
    send(&mut client, &get("/fail"));
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 500);
    assert_eq!(reply.header("connection"), None, "kept alive");
    assert!(logged("the database is on fire"), "the error is logged");
    send(&mut client, &get("/built"));
    assert_eq!(read_reply(&mut client, false).body, b"made");
}

#[test]
fn the_services_framing_headers_are_corrected() {
    capture_logs();
    let server = server();
    let mut client = server.connect();
    send(&mut client, &get("/wrong-length"));
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.header("content-length"), Some("2"));
    assert_eq!(reply.header("transfer-encoding"), None);
    assert_eq!(reply.body, b"ok");
    assert!(logged("Content-Length: 99"), "the replacement is logged");

    // HTTP/1.0 without keep-alive: the service's `keep-alive` would be a lie.
    let mut old = server.connect();
    send(&mut old, b"GET /keep-alive HTTP/1.0\r\n\r\n");
    let reply = read_reply(&mut old, false);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut old);

    // A service's `Connection: close` is honoured.
    send(&mut client, &get("/close"));
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(reply.body, b"bye");
    assert_eof(&mut client);
}

#[test]
fn status_lines_carry_their_reason_phrase() {
    let server = server();
    let mut client = server.connect();
    send(&mut client, &get("/unsupported"));
    let mut status = String::new();
    client.read_line(&mut status).unwrap();
    assert_eq!(status, "HTTP/1.1 415 Unsupported Media Type\r\n");
}

#[test]
fn query_pairs_are_decoded() {
    let server = server();
    let mut client = server.connect();
    send(
        &mut client,
        &get("/query?name=caf%C3%A9+cr%C3%A8me&x=a%26b&x=2"),
    );
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.text(), "name=café crème|x=a&b|x=2");
}

#[cfg(feature = "json")]
#[test]
fn json_in_and_out() {
    let server = server();
    let mut client = server.connect();
    let body = br#"{"n":[1,2]}"#;
    let request = format!(
        "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    send(&mut client, request.as_bytes());
    send(&mut client, body);
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.text(), r#"{"got":{"n":[1,2]}}"#);
    send(
        &mut client,
        b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n{x}",
    );
    assert_eq!(read_reply(&mut client, false).status, 400);
}

#[test]
fn a_streamed_upload_is_read_in_pieces_and_a_body_over_the_limit_is_413() {
    let server = server();
    let mut client = server.connect();
    send(
        &mut client,
        b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..10 {
        send(&mut client, b"1000\r\n");
        send(&mut client, &[b'u'; 0x1000]);
        send(&mut client, b"\r\n");
    }
    send(&mut client, b"0\r\n\r\n");
    assert_eq!(read_reply(&mut client, false).text(), "40960");

    // 64 KiB is the limit: the service's read fails, and the handler says 413 even
    // though the service returned its error.
    send(
        &mut client,
        b"POST /whole HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..17 {
        send(&mut client, b"1000\r\n");
        send(&mut client, &[b'u'; 0x1000]);
        send(&mut client, b"\r\n");
    }
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("connection"), Some("close"));
}

#[test]
fn a_small_unread_body_is_discarded_and_the_connection_kept() {
    let server = server();
    let mut client = server.connect();
    send(
        &mut client,
        b"POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789",
    );
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.text(), "ignored");
    assert_eq!(reply.header("connection"), None);
    send(&mut client, &get("/built"));
    assert_eq!(read_reply(&mut client, false).body, b"made");
}

#[test]
fn a_client_waiting_for_100_continue_is_answered_without_its_body_when_not_read() {
    let server = server();
    let mut client = server.connect();
    send(
        &mut client,
        b"POST /ignore HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 50000\r\n\r\n",
    );
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 200, "no 100 Continue first");
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut client);
}

/// Sends `pieces` with `gap` between them, a client slow on purpose, until the
/// server stops taking them.
fn drip(client: &mut BufReader<TcpStream>, pieces: &[&[u8]], gap: Duration) {
    for piece in pieces {
        std::thread::sleep(gap);
        if client.get_mut().write_all(piece).is_err() {
            return;
        }
    }
}

#[test]
fn the_body_timeout_bounds_each_wait_of_a_read_and_all_of_a_discard() {
    let server = Running::start(Http::new(app).body_timeout(Duration::from_millis(300)));
    let gap = Duration::from_millis(100);
    let mut reader = server.connect();
    send(
        &mut reader,
        b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n",
    );
    // A second in all, but never 300 ms without a byte: the service gets it all.
    drip(&mut reader, &[&b"0"[..]; 10], gap);
    assert_eq!(read_reply(&mut reader, false).text(), "10");

    // Nobody reads this body: the handler discards it, within 300 ms in all.
    let mut ignored = server.connect();
    send(
        &mut ignored,
        b"POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n",
    );
    let started = std::time::Instant::now();
    drip(&mut ignored, &[&b"0"[..]; 10], gap);
    let reply = read_reply(&mut ignored, false);
    assert_eq!(reply.status, 408);
    assert!(started.elapsed() >= Duration::from_millis(300));
}
