//! Hostile stdio: a stdout whose reader has gone, a stdout or stderr nobody reads,
//! a SIGHUP ignored by `nohup`. None of them may hang, crash or stop the server.
//!
//! "Nobody reads" is made deterministic with a FIFO the test fills itself: the
//! server writes into a pipe whose 64 KiB the test has already taken, through a
//! descriptor of its own (non-blocking, so the test knows when the pipe is full),
//! and the server's own descriptor stays blocking, as a real pipe's would be.
#![cfg(unix)]

use crate::support;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use support::{binary, field, Client, End, Process, GOODBYE, PATIENCE};

/// The shutdown budget the servers here are given (`--drain-timeout 2s
/// --cleanup-timeout 1s`): the contract is an exit within it, plus the one second
/// the last log records may take to reach a stderr that is stuck.
const BUDGET_ARGS: [&str; 4] = ["--drain-timeout", "2s", "--cleanup-timeout", "1s"];
const BUDGET: Duration = Duration::from_secs(3);
const STDIO_BOUND: Duration = Duration::from_secs(1);

/// A named pipe in a directory of its own, removed on drop.
struct Fifo {
    dir: PathBuf,
    path: PathBuf,
}

impl Fifo {
    fn new(name: &str) -> Fifo {
        let dir = std::env::temp_dir().join(format!("lameduck-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the FIFO's directory");
        let path = dir.join("pipe");
        let status = Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo {} failed", path.display());
        Fifo { dir, path }
    }

    /// The test's end: opened for reading and writing, so the open never waits for
    /// a peer and the server's writes never see a pipe without a reader (EPIPE).
    fn reader(&self) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .expect("open the FIFO's reading end")
    }

    /// The server's end, blocking. Open a [`Fifo::reader`] first.
    fn writer(&self) -> File {
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open the FIFO's writing end")
    }

    /// Writes into the pipe until it is full, through a descriptor of its own made
    /// non-blocking (the server's stays blocking); the bytes written.
    fn fill(&self) -> usize {
        let socket = socket2::Socket::from(OwnedFd::from(self.writer()));
        socket
            .set_nonblocking(true)
            .expect("make the filler non-blocking");
        let mut filler = File::from(OwnedFd::from(socket));
        let chunk = [b'x'; 4096];
        let mut filled = 0;
        loop {
            match filler.write(&chunk) {
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return filled,
                Err(err) => panic!("filling the FIFO: {err}"),
            }
        }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server with whatever stdio the test gives it, killed by PID on drop.
struct Spawned {
    pid: u32,
    exited: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    stderr: Option<Lines>,
}

/// Lines of a stream as they arrive, and a copy of all of them for failure dumps.
struct Lines {
    lines: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    fn new(stream: impl Read + Send + 'static) -> Lines {
        let (tx, lines) = crossbeam_channel::unbounded();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let copy = Arc::clone(&seen);
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                copy.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { lines, seen }
    }

    #[track_caller]
    fn next(&self, what: &str) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no {what} within {PATIENCE:?}:\n{}", self.text()))
    }

    #[track_caller]
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line containing {needle:?}:\n{}", self.text()),
            }
        }
    }

    fn text(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

impl Spawned {
    /// Starts `lameduck echo` on a free port with `args`, `RUST_LOG` as given, and
    /// the given stdout and stderr; returns the pipes the caller asked for.
    fn start(
        args: &[&str],
        rust_log: &str,
        stdout: Stdio,
        stderr: Stdio,
    ) -> (Spawned, Option<ChildStdout>, Option<ChildStderr>) {
        let mut child = Command::new(binary())
            .args(["echo", "--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", rust_log)
            .env_remove("RUST_BACKTRACE")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start lameduck");
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let pid = child.id();
        let (exited_tx, exited) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exited_tx.send(status);
            }
        });
        let spawned = Spawned {
            pid,
            exited,
            status: None,
            stderr: None,
        };
        (spawned, out, err)
    }

    fn signal(&self, name: &str) {
        support::kill(name, self.pid);
    }

    /// Waits for the exit within `PATIENCE`; the status and the time it took.
    #[track_caller]
    fn wait_exit(&mut self) -> (ExitStatus, Duration) {
        let start = Instant::now();
        let status = self.exited.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!(
                "no exit within {PATIENCE:?}; stderr:\n{}",
                self.stderr_text()
            )
        });
        self.status = Some(status);
        (status, start.elapsed())
    }

    fn stderr_text(&self) -> String {
        self.stderr.as_ref().map(Lines::text).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            support::kill("KILL", self.pid);
        }
    }
}

/// Reads one line from `reader` on a thread, and hands back the line and the reader
/// (the caller decides when the pipe loses its reader).
fn first_line<R: Read + Send + 'static>(mut reader: R) -> Receiver<(String, R)> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8];
        // Byte by byte: nothing past the line may be taken from the pipe.
        while reader.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let _ = tx.send((String::from_utf8_lossy(&line).into_owned(), reader));
    });
    rx
}

fn listening_addr(line: &str) -> SocketAddr {
    line.strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first stdout line is {line:?}"))
        .parse()
        .unwrap_or_else(|err| panic!("bad address in {line:?}: {err}"))
}

/// `lameduck echo | head -n1`: the reader of stdout goes away after the first line.
#[test]
fn a_stdout_closed_after_listening_on_costs_only_the_report() {
    let (mut server, stdout, stderr) =
        Spawned::start(&BUDGET_ARGS, "info", Stdio::piped(), Stdio::piped());
    server.stderr = stderr.map(Lines::new);
    let (line, stdout) = first_line(stdout.expect("piped stdout"))
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| {
            panic!(
                "no `listening on`:
{}",
                server.stderr_text()
            )
        });
    let addr = listening_addr(&line);
    drop(stdout); // what `head -n1` does once it has its line

    let mut client = Client::connect(addr);
    client.send(b"still serving\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: still serving\r\n");
    terminate_and_expect_goodbye(&server, client);

    let (status, _) = server.wait_exit();
    let stderr = server.stderr.as_ref().expect("stderr is read");
    let lost = stderr.wait_for("is lost");
    assert!(
        lost.contains("stopped reason=signal outcome=clean"),
        "{lost}"
    );
    assert_eq!(status.code(), Some(0), "stderr:\n{}", stderr.text());
    // The pump ends with the process's stderr: everything it wrote is in.
    let deadline = Instant::now() + PATIENCE;
    while stderr.lines.recv_deadline(deadline).is_ok() {}
    let text = stderr.text();
    // "panicked at": the report's `tasks_panicked=0` is no panic.
    assert!(!text.contains("panicked at"), "stderr:\n{text}");
    assert!(!text.contains("stack backtrace"), "stderr:\n{text}");
}

/// A log consumer that stalls: the server's stderr is a pipe nobody reads, full
/// before the server starts, and the logs are at their most verbose.
#[test]
fn a_stderr_nobody_reads_never_delays_serving_or_the_shutdown() {
    let fifo = Fifo::new("stderr-full");
    let _pipe = fifo.reader();
    let filled = fifo.fill();
    assert!(filled >= 4096, "the pipe took only {filled} bytes");
    let mut args = vec!["--workers", "1", "--queue", "0"];
    args.extend(BUDGET_ARGS);
    let (mut server, stdout, _) =
        Spawned::start(&args, "debug", Stdio::piped(), Stdio::from(fifo.writer()));
    let stdout = Lines::new(stdout.expect("piped stdout"));
    let addr = listening_addr(&stdout.next("`listening on`"));

    // One worker, no queue: every other client is refused as busy, each with a
    // warning on the log — the acceptor must not stop at the first.
    let mut served = Client::connect(addr);
    served.send(b"one\n").unwrap();
    assert_eq!(served.expect_line(), "Echo: one\r\n");
    for round in 0..3 {
        let mut refused = Client::connect(addr);
        assert_eq!(
            refused.expect_line(),
            "Error: server busy\r\n",
            "busy client {round}"
        );
    }

    let signalled = terminate_and_expect_goodbye(&server, served);
    let report = stdout.next("the report");
    let (status, _) = server.wait_exit();
    let took = signalled.elapsed();
    assert!(report.starts_with("stopped "), "{report}");
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert_eq!(field(&report, "refused_busy"), "3", "{report}");
    assert_eq!(status.code(), Some(0), "{report}");
    assert_within_budget(took);
}

/// The supervisor stops reading stdout after `listening on`, and the pipe fills.
#[test]
fn a_full_stdout_never_delays_the_shutdown() {
    let fifo = Fifo::new("stdout-full");
    let reader = fifo.reader();
    let (mut server, _, stderr) = Spawned::start(
        &BUDGET_ARGS,
        "info",
        Stdio::from(fifo.writer()),
        Stdio::piped(),
    );
    server.stderr = stderr.map(Lines::new);
    let (line, _reader) = first_line(reader)
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("no `listening on`:\n{}", server.stderr_text()));
    let addr = listening_addr(&line);
    fifo.fill();

    let mut client = Client::connect(addr);
    client.send(b"hello\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: hello\r\n");
    let signalled = terminate_and_expect_goodbye(&server, client);
    let (status, _) = server.wait_exit();
    let took = signalled.elapsed();
    let stderr = server.stderr.as_ref().expect("stderr is read");
    let queued = stderr.wait_for("stays queued");
    assert!(queued.contains("stopped reason=signal"), "{queued}");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", stderr.text());
    assert_within_budget(took);
}

/// Stdout is full before the server starts: it serves anyway, and `listening on`
/// reaches the reader once it catches up.
#[test]
fn a_full_stdout_at_start_delays_only_the_listening_line() {
    let fifo = Fifo::new("stdout-full-at-start");
    let mut reader = fifo.reader();
    let filled = fifo.fill();
    let (mut server, _, stderr) = Spawned::start(
        &BUDGET_ARGS,
        "info",
        Stdio::from(fifo.writer()),
        Stdio::piped(),
    );
    let stderr = Lines::new(stderr.expect("piped stderr"));
    // The address from the log, since stdout cannot carry it yet.
    let serving = stderr.wait_for("serving on ");
    let addr: SocketAddr = serving
        .split("serving on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {serving:?}"));
    stderr.wait_for("stays queued");
    let mut client = Client::connect(addr);
    client.send(b"before anyone reads stdout\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: before anyone reads stdout\r\n");
    server.stderr = Some(stderr);

    // The reader catches up: the filler first, then the line that waited.
    let (tx, lines) = crossbeam_channel::unbounded();
    thread::spawn(move || {
        let mut skipped = vec![0u8; filled];
        if reader.read_exact(&mut skipped).is_err() {
            return;
        }
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("`listening on` never came:\n{}", server.stderr_text()));
    assert_eq!(first, format!("listening on {addr}"));

    terminate_and_expect_goodbye(&server, client);
    let report = lines
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("no report:\n{}", server.stderr_text()));
    assert!(report.starts_with("stopped reason=signal"), "{report}");
    let (status, _) = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{report}");
}

/// `nohup lameduck echo`: SIGHUP ignored at start stays ignored; SIGTERM drains.
#[test]
fn sighup_ignored_at_start_stays_ignored() {
    let script = r#"trap "" HUP; exec "$0" echo --addr 127.0.0.1:0"#;
    let bin = binary();
    let bin = bin.to_str().expect("a UTF-8 path to the binary");
    let mut server = Process::spawn(Path::new("sh"), &["-c", script, bin]);
    let addr = server.listening_addr();
    #[cfg(target_os = "linux")]
    {
        // The kernel's view, read after `listening on` (the handlers are installed):
        // SIGHUP (bit 0) still ignored and not caught, SIGTERM (bit 14) caught.
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
            .expect("read /proc/<pid>/status");
        let mask = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .unwrap_or_else(|| panic!("no {key} in {status}"))
        };
        assert_eq!(mask("SigIgn:") & 1, 1, "SIGHUP no longer ignored");
        assert_eq!(mask("SigCgt:") & 1, 0, "SIGHUP caught");
        assert_ne!(mask("SigCgt:") & (1 << 14), 0, "SIGTERM not caught");
    }

    let mut client = Client::connect(addr);
    client.send(b"after the hangup\n").unwrap();
    assert_eq!(client.expect_line(), "Echo: after the hangup\r\n");
    server.signal("HUP");
    server.signal("TERM");
    // Had the SIGHUP counted, it would be the first signal named here, and the
    // SIGTERM a second one forcing the exit.
    let first = server.wait_stderr("signal received");
    assert!(first.contains("(SIGTERM)"), "{first}");
    let (rest, end) = client.rest();
    assert_eq!(
        (String::from_utf8_lossy(&rest).as_ref(), end),
        (GOODBYE, End::Eof)
    );
    drop(client);
    let (status, report) = server.finish();
    assert_eq!(status.code(), Some(0), "{}", server.dump());
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert!(
        !server.stderr_text().contains("second signal"),
        "{}",
        server.dump()
    );
}

/// SIGTERM → exit within the shutdown budget plus the bound given to stdio at exit;
/// prints the figure the README quotes (`-- --nocapture` shows it).
#[track_caller]
fn assert_within_budget(took: Duration) {
    eprintln!("SIGTERM → exit: {took:?}");
    assert!(
        took <= BUDGET + STDIO_BOUND,
        "SIGTERM → exit took {took:?}, over the budget {BUDGET:?} + {STDIO_BOUND:?}"
    );
}

/// SIGTERM, then the client's goodbye and a clean EOF; returns when the signal went.
#[track_caller]
fn terminate_and_expect_goodbye(server: &Spawned, mut client: Client) -> Instant {
    let signalled = Instant::now();
    server.signal("TERM");
    let (rest, end) = client.rest();
    assert_eq!(
        (String::from_utf8_lossy(&rest).as_ref(), end),
        (GOODBYE, End::Eof)
    );
    signalled
}
