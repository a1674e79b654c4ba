//! Streaming bodies both ways with bounded memory: a 256 MiB generated response and a
//! 256 MiB upload each cost the server a buffer, not their size, and a client that
//! reads slowly holds only that buffer. The server runs in a child process of its own
//! (this test binary started again, see `stream_server`), so that its memory is
//! measured alone, from /proc. Every wait has a deadline; the one sleep is what makes
//! a client slow on purpose.
//!
//! Over 400 lines: the child server, its byte pattern and the clients that check it
//! are shared by the memory tests and the real-client tests, so they stay together.
#![cfg(target_os = "linux")]

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lameduck::protocol::http::http::{Method, StatusCode};
use lameduck::protocol::http::{text, Body, Context, Error, Http, Request, Response};
use lameduck::{signals, Server, Shutdown};
use support::http::read_reply;
use support::Process;

/// Set in the environment of the child process that serves.
const CHILD: &str = "LAMEDUCK_TEST_STREAM_SERVER";

const MIB: u64 = 1 << 20;

/// Memory the server may grow by while streaming 256 MiB either way.
const STREAM_BOUND_KIB: u64 = 16 * 1024;

// ---------------------------------------------------------------------------------
// The pattern: byte `i` of every body is `i % 251`, so a byte out of place or missing
// shows; it is copied from a table, so generating and checking cost a memcpy.

const PERIOD: usize = 251;
const PIECE: usize = 64 * 1024;

fn table() -> Vec<u8> {
    (0..PIECE + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

/// A reader of `len` pattern bytes.
struct Pattern {
    table: Vec<u8>,
    at: u64,
    len: u64,
}

impl Pattern {
    fn new(len: u64) -> Pattern {
        Pattern {
            table: table(),
            at: 0,
            len,
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.len - self.at).unwrap_or(usize::MAX);
        let n = buf.len().min(PIECE).min(left);
        let from = (self.at % PERIOD as u64) as usize;
        buf[..n].copy_from_slice(&self.table[from..from + n]);
        self.at += n as u64;
        Ok(n)
    }
}

/// Checks that a stream continues the pattern.
struct Checker {
    table: Vec<u8>,
    at: u64,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            table: table(),
            at: 0,
        }
    }

    fn check(&mut self, bytes: &[u8]) -> bool {
        let mut ok = true;
        for piece in bytes.chunks(PIECE) {
            let from = (self.at % PERIOD as u64) as usize;
            ok &= piece == &self.table[from..from + piece.len()];
            self.at += piece.len() as u64;
        }
        ok
    }
}

// ---------------------------------------------------------------------------------
// The server, in a child process.

/// The routes: `GET /sized/N` and `GET /chunked/N` send N pattern bytes (with
/// `Content-Length`, or chunked); `PUT /upload` (or POST) reads a pattern body as a
/// stream and answers `<bytes> ok` or `<bytes> bad`.
fn routes(mut req: Request<'_>, _: &Context) -> Result<Response, Error> {
    let path = req.uri().path().to_owned();
    let size = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    match *req.method() {
        Method::GET if size("/sized/").is_some() => {
            let len = size("/sized/").unwrap_or(0);
            Ok(Response::new(Body::sized_reader(Pattern::new(len), len)))
        }
        Method::GET if size("/chunked/").is_some() => {
            let len = size("/chunked/").unwrap_or(0);
            Ok(Response::new(Body::reader(Pattern::new(len))))
        }
        Method::PUT | Method::POST if path == "/upload" => {
            let mut checker = Checker::new();
            let mut buf = vec![0; PIECE];
            let mut ok = true;
            loop {
                let n = req.body_mut().read(&mut buf)?;
                if n == 0 {
                    break;
                }
                ok &= checker.check(&buf[..n]);
            }
            let verdict = if ok { "ok" } else { "bad" };
            Ok(text(StatusCode::OK, format!("{} {verdict}\n", checker.at)))
        }
        _ => Ok(text(StatusCode::NOT_FOUND, "not found\n")),
    }
}

/// Not a test of its own: the server the tests below start in a child process (this
/// binary again, with `CHILD` set). Without `CHILD` it returns at once.
#[test]
#[ignore = "the server of the other tests, started by them"]
fn stream_server() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let shutdown = Shutdown::new();
    signals::install(&shutdown).expect("signals");
    let server = Server::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .workers(4)
        .start(Http::new(routes).max_body(1 << 30), &shutdown)
        .expect("server starts");
    server.announce().expect("stdout");
    let report = server.join();
    println!("{report}");
}

/// The child server, and its address.
fn start_child() -> (Process, SocketAddr) {
    let exe = std::env::current_exe().expect("own path");
    let mut process = Process::spawn_with_env(
        &exe,
        &["--ignored", "--exact", "stream_server", "--nocapture"],
        &[(CHILD, "1")],
    );
    let line = process.stdout_line_starting("listening on ");
    let addr = line["listening on ".len()..].parse().expect("an address");
    (process, addr)
}

/// A memory field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
}

/// Runs `transfer` against the child and returns how far the child's peak resident
/// memory rose above its resident memory before it, in KiB.
fn growth_during(process: &Process, transfer: impl FnOnce()) -> u64 {
    let pid = process.pid();
    // Resets the peak to the current resident size (Linux 4.0 and later), so the
    // peak read afterwards is this transfer's.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let before = status_kib(pid, "VmRSS:");
    transfer();
    let growth = status_kib(pid, "VmHWM:").saturating_sub(before);
    eprintln!("server memory: {before} KiB resident before, grew by {growth} KiB at most");
    growth
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    BufReader::with_capacity(PIECE, stream)
}

/// Downloads `path` and checks its body against the pattern; returns its length.
fn download(addr: SocketAddr, path: &str, mut pace: impl FnMut()) -> u64 {
    let mut client = connect(addr);
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    client.get_mut().write_all(request.as_bytes()).unwrap();
    let reply = read_reply(&mut client, true);
    assert_eq!(reply.status, 200);
    let mut checker = Checker::new();
    let mut buf = vec![0; PIECE];
    if reply.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut line = String::new();
            client.read_line(&mut line).unwrap();
            let mut left = usize::from_str_radix(line.trim_end(), 16).expect("chunk size");
            if left == 0 {
                break;
            }
            while left > 0 {
                let n = client.read(&mut buf[..left.min(PIECE)]).unwrap();
                assert!(n > 0, "the body was cut");
                assert!(checker.check(&buf[..n]), "pattern at {}", checker.at);
                left -= n;
                pace();
            }
            client.read_line(&mut line).unwrap();
        }
    } else {
        let len: u64 = reply.header("content-length").unwrap().parse().unwrap();
        while checker.at < len {
            let want = usize::try_from(len - checker.at)
                .unwrap_or(PIECE)
                .min(PIECE);
            let n = client.read(&mut buf[..want]).unwrap();
            assert!(n > 0, "the body was cut at {}", checker.at);
            assert!(checker.check(&buf[..n]), "pattern at {}", checker.at);
            pace();
        }
    }
    checker.at
}

/// Uploads `len` pattern bytes, with `Content-Length` or chunked; returns the
/// server's answer.
fn upload(addr: SocketAddr, len: u64, chunked: bool) -> String {
    let mut client = connect(addr);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    let head = format!("PUT /upload HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n");
    client.get_mut().write_all(head.as_bytes()).unwrap();
    let mut pattern = Pattern::new(len);
    let mut buf = vec![0; PIECE];
    loop {
        let n = pattern.read(&mut buf).unwrap();
        let stream = client.get_mut();
        if chunked {
            stream.write_all(format!("{n:x}\r\n").as_bytes()).unwrap();
        }
        stream.write_all(&buf[..n]).unwrap();
        if chunked {
            stream.write_all(b"\r\n").unwrap();
        }
        if n == 0 {
            break;
        }
    }
    let reply = read_reply(&mut client, false);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[test]
fn a_256_mib_response_costs_the_server_a_buffer() {
    let (process, addr) = start_child();
    for path in ["/sized/268435456", "/chunked/268435456"] {
        let mut received = 0;
        let growth = growth_during(&process, || received = download(addr, path, || {}));
        assert_eq!(received, 256 * MIB, "{path}");
        assert!(
            growth < STREAM_BOUND_KIB,
            "{path}: the server grew by {growth} KiB\n{}",
            process.dump()
        );
    }
}

#[test]
fn a_256_mib_upload_costs_the_server_a_buffer() {
    let (process, addr) = start_child();
    for chunked in [false, true] {
        let mut answer = String::new();
        let growth = growth_during(&process, || answer = upload(addr, 256 * MIB, chunked));
        assert_eq!(answer, format!("{} ok\n", 256 * MIB), "chunked: {chunked}");
        assert!(
            growth < STREAM_BOUND_KIB,
            "chunked {chunked}: the server grew by {growth} KiB\n{}",
            process.dump()
        );
    }
}

#[test]
fn a_slow_reader_holds_only_the_servers_buffer() {
    let (process, addr) = start_child();
    // 32 MiB at about 16 MiB/s: the server could produce it a hundred times faster,
    // so without backpressure it would hold most of it.
    let mut received = 0;
    let growth = growth_during(&process, || {
        received = download(addr, "/sized/33554432", || {
            std::thread::sleep(Duration::from_millis(4));
        });
    });
    assert_eq!(received, 32 * MIB);
    assert!(
        growth < 4 * 1024,
        "the server grew by {growth} KiB for a slow reader\n{}",
        process.dump()
    );
}

// ---------------------------------------------------------------------------------
// Real clients: curl and Python's standard library, against the child server.

/// Runs `program` with `args` (and `stdin`), or fails saying the tool is missing.
fn run_tool(program: &str, args: &[&str], stdin: Option<Vec<u8>>) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("{program} is needed by this test and cannot be run ({err}): install it")
        });
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || pipe.write_all(&bytes))
    });
    let output = child.wait_with_output().expect("the tool finishes");
    if let Some(feeder) = feeder {
        feeder.join().unwrap().expect("fed the tool");
    }
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn pattern_bytes(len: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    Pattern::new(len).read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn curl_uploads_with_t_from_a_file_and_from_stdin() {
    let (_process, addr) = start_child();
    let url = format!("http://{addr}/upload");
    let file = std::env::temp_dir().join(format!("lameduck-upload-{}", std::process::id()));
    std::fs::write(&file, pattern_bytes(16 * MIB)).unwrap();
    let path = file.to_string_lossy().into_owned();
    // A file goes with Content-Length (and Expect: 100-continue, being large).
    let answer = run_tool(
        "curl",
        &["-sS", "--max-time", "30", "-T", &path, &url],
        None,
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(answer, format!("{} ok\n", 16 * MIB));
    // Standard input goes chunked.
    let answer = run_tool(
        "curl",
        &["-sS", "--max-time", "30", "-T", "-", &url],
        Some(pattern_bytes(3 * MIB + 17)),
    );
    assert_eq!(answer, format!("{} ok\n", 3 * MIB + 17));
    // And a chunked download, checked byte for byte.
    let url = format!("http://{addr}/chunked/{}", MIB + 5);
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", &url])
        .output()
        .expect("curl runs (it did above)");
    assert!(curl.status.success());
    assert_eq!(curl.stdout.len() as u64, MIB + 5);
    assert!(Checker::new().check(&curl.stdout));
}

/// Python's `http.client` (keep-alive, chunked both ways, HEAD) and `urllib`.
const PYTHON_CLIENTS: &str = r#"
import http.client, sys, urllib.request
host, port = sys.argv[1], int(sys.argv[2])
def pattern(n):
    return (bytes(range(251)) * (n // 251 + 1))[:n]
conn = http.client.HTTPConnection(host, port, timeout=30)
conn.request("GET", "/chunked/3000000")
r = conn.getresponse()
body = r.read()
print("chunked-download", r.status, r.getheader("Transfer-Encoding"), body == pattern(3000000))
def pieces():
    data = pattern(2000000)
    for at in range(0, len(data), 65536):
        yield data[at:at + 65536]
conn.request("PUT", "/upload", body=pieces(), encode_chunked=True)
r = conn.getresponse()
print("chunked-upload", r.status, r.read().decode().strip())
conn.request("HEAD", "/sized/1000")
r = conn.getresponse()
print("head", r.status, r.getheader("Content-Length"), len(r.read()))
conn.close()
url = "http://%s:%d" % (host, port)
with urllib.request.urlopen(url + "/sized/5000000") as r:
    print("urllib-download", r.status, r.read() == pattern(5000000))
req = urllib.request.Request(url + "/upload", data=pattern(1000000), method="POST")
with urllib.request.urlopen(req) as r:
    print("urllib-upload", r.status, r.read().decode().strip())
"#;

#[test]
fn python_http_client_and_urllib_speak_to_it() {
    let (_process, addr) = start_child();
    let output = run_tool(
        "python3",
        &[
            "-c",
            PYTHON_CLIENTS,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ],
        None,
    );
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines,
        [
            "chunked-download 200 chunked True",
            "chunked-upload 200 2000000 ok",
            "head 200 1000 0",
            "urllib-download 200 True",
            "urllib-upload 200 1000000 ok",
        ],
        "{output}"
    );
}
