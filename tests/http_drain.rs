//! Streams and the drain, in process: a response being streamed when the drain
//! begins goes on to its end; one still going at the drain deadline is cut by the
//! force, counted `forced`, and the client can tell the body is cut — whether the
//! worker was blocked writing a reader's bytes or in `sendfile`. Every wait has a
//! deadline.

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use lameduck::protocol::http::http::StatusCode;
use lameduck::protocol::http::{text, Body, Context, Error, Http, Request, Response};
use lameduck::{Server, ServerHandle, Shutdown};
use support::http::{read_reply, Reply};

const WAIT: Duration = Duration::from_secs(10);

/// Far more than the sockets' buffers hold: a client that stops reading blocks the
/// server long before the end.
const LARGE: u64 = 256 << 20;

/// A sparse file of `LARGE` bytes, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("lameduck-{name}-{}", std::process::id()));
        File::create(&path).unwrap().set_len(LARGE).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `/sized` and `/chunked` stream `len` zeros from a reader, `/file` sends `file`.
fn service(len: u64, file: std::path::PathBuf) -> Http<impl lameduck::protocol::http::Service> {
    Http::new(
        move |req: Request<'_>, _: &Context| -> Result<Response, Error> {
            let zeros = std::io::repeat(0).take(len);
            Ok(match req.uri().path() {
                "/sized" => Response::new(Body::sized_reader(zeros, len)),
                "/chunked" => Response::new(Body::reader(zeros)),
                "/file" => Response::new(Body::file(File::open(&file)?, 0, len)),
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            })
        },
    )
}

fn start(
    http: Http<impl lameduck::protocol::http::Service>,
    drain: Duration,
) -> (ServerHandle, Shutdown) {
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .workers(4)
        .tick(Duration::from_millis(50))
        .linger(Duration::from_millis(200))
        .drain_timeout(drain)
        .start(http, &shutdown)
        .expect("server starts");
    (server, shutdown)
}

/// Sends `GET path` and reads the response head and the first bytes of its body:
/// the stream is in flight.
fn start_download(server: &ServerHandle, path: &str) -> (BufReader<TcpStream>, Reply) {
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut client = BufReader::new(stream);
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    client.get_mut().write_all(request.as_bytes()).unwrap();
    let reply = read_reply(&mut client, true);
    assert_eq!(reply.status, 200);
    assert!(!client.fill_buf().unwrap().is_empty(), "the body has begun");
    (client, reply)
}

/// Reads the rest of a body; returns the body bytes received (the framing of a
/// chunked body taken off) and whether the body was complete.
fn read_rest(client: &mut BufReader<TcpStream>, reply: &Reply) -> (u64, bool) {
    if reply.header("transfer-encoding") == Some("chunked") {
        let mut received = 0;
        loop {
            let mut line = String::new();
            if client.read_line(&mut line).unwrap_or(0) == 0 {
                return (received, false);
            }
            let size = u64::from_str_radix(line.trim_end(), 16).expect("a chunk size");
            if size == 0 {
                return (received, true);
            }
            let got = std::io::copy(&mut client.by_ref().take(size + 2), &mut std::io::sink())
                .unwrap_or(0);
            received += got.min(size);
            if got < size + 2 {
                return (received, false);
            }
        }
    }
    let len: u64 = reply.header("content-length").unwrap().parse().unwrap();
    // A forced close may come as a reset after the last bytes: what was read counts.
    let mut received = 0;
    let mut buf = vec![0; 64 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return (received, received == len),
            Ok(n) => received += n as u64,
        }
    }
}

#[test]
fn a_stream_in_flight_when_the_drain_begins_goes_on_to_its_end() {
    let file = TempFile::new("drain-end");
    let (server, shutdown) = start(service(LARGE, file.0.clone()), WAIT * 3);
    let paths = ["/sized", "/chunked", "/file"];
    let mut downloads: Vec<_> = paths.iter().map(|p| start_download(&server, p)).collect();
    // The clients have stopped reading: each worker is blocked in a write (or in
    // sendfile) with most of its body still to go.
    shutdown.trigger();
    let started = Instant::now();
    for ((client, reply), path) in downloads.iter_mut().zip(paths) {
        let (received, complete) = read_rest(client, reply);
        assert!(complete, "{path}: the whole body, not {received} bytes");
    }
    let report = server.join();
    assert_eq!(report.exit_code(), 0, "a clean drain: {report}");
    assert_eq!((report.drained, report.forced), (3, 0), "{report}");
    assert!(started.elapsed() < WAIT * 3);
}

#[test]
fn a_stream_past_the_drain_deadline_is_cut_counted_forced_and_seen_cut() {
    let file = TempFile::new("drain-cut");
    let drain = Duration::from_millis(500);
    let (server, shutdown) = start(service(LARGE, file.0.clone()), drain);
    let paths = ["/sized", "/chunked", "/file"];
    let mut downloads: Vec<_> = paths.iter().map(|p| start_download(&server, p)).collect();
    let triggered = Instant::now();
    shutdown.trigger();
    // Nobody reads: no stream can end before the deadline.
    let report = server.join();
    assert!(triggered.elapsed() >= drain);
    assert_eq!(report.exit_code(), 124, "the deadline passed: {report}");
    assert_eq!((report.forced, report.drained), (3, 0), "{report}");
    for ((client, reply), path) in downloads.iter_mut().zip(paths) {
        let (received, complete) = read_rest(client, reply);
        assert!(!complete, "{path}: the client sees the cut");
        assert!(received < LARGE, "{path}");
    }
}
