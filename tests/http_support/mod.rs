//! Support for the HTTP integration tests: the real `lameduck http` binary as a child
//! process whose stdout and stderr are read line by line on threads, so that every
//! wait is a channel receive with a deadline; raw-socket HTTP helpers for what a
//! well-behaved client library will not send.
//!
//! A [`Child`] guard kills its process by PID if the test did not see it exit, and
//! prints everything the server wrote when the test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// How long any single event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running `lameduck http`.
pub struct Child {
    pub pid: u32,
    pub addr: SocketAddr,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    exit: Receiver<ExitStatus>,
    /// Every line seen so far, for the failure dump.
    seen: Arc<Mutex<Vec<String>>>,
    exited: Option<ExitStatus>,
}

fn pump(
    stream: impl Read + Send + 'static,
    tag: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
) -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut seen) = seen.lock() {
                seen.push(format!("{tag}: {line}"));
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Child {
    /// Starts `lameduck http --addr 127.0.0.1:0` with a short linger plus `args`, and
    /// waits for its `listening on` line. The tick stays at its default (1 s): every
    /// timeout and drain here must be prompt without a short tick.
    #[track_caller]
    pub fn http(args: &[&str]) -> Child {
        let mut full = vec!["http", "--addr", "127.0.0.1:0", "--linger", "300ms"];
        full.extend_from_slice(args);
        Child::spawn(Path::new(env!("CARGO_BIN_EXE_lameduck")), &full)
    }

    /// Starts `program` with `args` and waits for its `listening on` line.
    #[track_caller]
    pub fn spawn(program: &Path, args: &[&str]) -> Child {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the server");
        let pid = child.id();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stdout = pump(child.stdout.take().expect("stdout"), "stdout", seen.clone());
        let stderr = pump(child.stderr.take().expect("stderr"), "stderr", seen.clone());
        let (exit_tx, exit) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut server = Child {
            pid,
            addr: "0.0.0.0:0".parse().unwrap(),
            stdout,
            stderr,
            exit,
            seen,
            exited: None,
        };
        let first = server
            .stdout
            .recv_timeout(WAIT)
            .expect("a `listening on` line in time");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stdout line was {first:?}"));
        server.addr = addr.parse().expect("an address");
        server
    }

    /// `http://addr`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a signal by PID (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid);
    }

    /// Waits for a stderr line containing `text`.
    #[track_caller]
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.stderr.recv_deadline(deadline) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?} within {WAIT:?}"),
            }
        }
    }

    /// Waits for the process to exit; returns its code and the rest of its stdout.
    #[track_caller]
    pub fn wait_exit(&mut self) -> (Option<i32>, Vec<String>) {
        let status = self
            .exit
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("lameduck did not exit within {WAIT:?}"));
        self.exited = Some(status);
        let mut lines = Vec::new();
        let deadline = Instant::now() + WAIT;
        // The pump ends at EOF, which follows the exit: collect until it hangs up.
        loop {
            match self.stdout.recv_deadline(deadline) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stdout not closed after exit"),
            }
        }
        (status.code(), lines)
    }

    /// Asserts a graceful exit 0 with a clean report as the last stdout line, and
    /// returns that line.
    #[track_caller]
    pub fn assert_clean_exit(&mut self) -> String {
        let (code, lines) = self.wait_exit();
        assert_eq!(code, Some(0), "exit code; stdout {lines:?}");
        let last = lines.last().cloned().unwrap_or_default();
        assert!(
            last.starts_with("stopped reason=signal outcome=clean "),
            "report line: {last:?}"
        );
        for key in [
            "drained=",
            "forced=0",
            "refused_busy=",
            "detached_threads=0",
            "drain_ms=",
            "total_ms=",
        ] {
            assert!(last.contains(key), "{key} missing from {last:?}");
        }
        last
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exited.is_none() && self.exit.try_recv().is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        if std::thread::panicking() {
            // Give the pumps a moment to collect the last lines of a dying server.
            let _ = self.exit.recv_timeout(Duration::from_secs(1));
            eprintln!("---- lameduck http (pid {}) output ----", self.pid);
            if let Ok(seen) = self.seen.lock() {
                for line in seen.iter() {
                    eprintln!("{line}");
                }
            }
            eprintln!("---- end of output ----");
        }
    }
}

/// The path of example `name`, which `cargo test` builds beside the binary.
#[track_caller]
pub fn example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_lameduck"))
        .parent()
        .map(|dir| dir.join("examples").join(name))
        .unwrap_or_default();
    assert!(
        path.exists(),
        "example {name} not built at {}: run through `cargo test`, which builds examples",
        path.display()
    );
    path
}

/// A raw client connection with a read deadline.
pub fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    BufReader::new(stream)
}

/// Writes raw bytes.
pub fn send(client: &mut BufReader<TcpStream>, bytes: &[u8]) {
    client.get_mut().write_all(bytes).expect("write");
}

/// One response as read off a raw connection.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header named `name`, without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response; `head_only` for the answer to a HEAD.
#[track_caller]
pub fn read_reply(reader: &mut BufReader<TcpStream>, head_only: bool) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        let (name, value) = field.split_once(':').expect("a header field");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let length: usize = reply
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .expect("a length");
        reply.body = vec![0; length];
        reader.read_exact(&mut reply.body).expect("body");
    }
    reply
}

/// Asserts the server closed the connection cleanly: EOF, no extra bytes, no reset.
#[track_caller]
pub fn assert_eof(reader: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("a clean EOF, not a reset");
    assert!(
        rest.is_empty(),
        "unexpected bytes {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Sends `request` on a fresh connection and expects `status`, `Connection: close`
/// and a clean close.
#[track_caller]
pub fn expect_refusal(addr: SocketAddr, request: &[u8], status: u16) -> Reply {
    let mut client = connect(addr);
    send(&mut client, request);
    let reply = read_reply(&mut client, false);
    assert_eq!(
        reply.status,
        status,
        "for {:?}: {reply:?}",
        String::from_utf8_lossy(&request[..request.len().min(80)])
    );
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut client);
    reply
}
