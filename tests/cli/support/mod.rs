//! Test support: the real binary as a child process, real signals, and clients that
//! wait for events with deadlines — never for a fixed time.
#![allow(dead_code)]

pub mod http;
// The clients that need no binary, shared with the in-process tests.
#[path = "../../in_process/mod.rs"]
mod in_process;
// Not every includer (benches/wakeup.rs) uses all of them.
#[allow(unused_imports)]
pub use in_process::{Client, End, GOODBYE, PATIENCE};

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// The `lameduck` binary cargo built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lameduck"))
}

/// An example binary built by `cargo test` beside the main one.
pub fn example(name: &str) -> PathBuf {
    let path = binary()
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

/// A child process whose stdout and stderr lines arrive on channels, killed by PID
/// when dropped.
pub struct Process {
    pid: u32,
    exited: Receiver<ExitStatus>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    stdout_seen: Vec<String>,
    stderr_seen: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

fn pump(
    stream: impl Read + Send + 'static,
    name: &str,
    copy: Option<Arc<Mutex<Vec<String>>>>,
) -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    thread::Builder::new()
        .name(format!("test-pump-{name}"))
        .spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(copy) = &copy {
                    copy.lock().unwrap().push(line.clone());
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .expect("spawn pump thread");
    rx
}

/// Receives from a pump until it hangs up at the end of its stream, handing each
/// line to `each`; false if `deadline` passes first.
fn until_eof(lines: &Receiver<String>, deadline: Instant, mut each: impl FnMut(String)) -> bool {
    loop {
        match lines.recv_deadline(deadline) {
            Ok(line) => each(line),
            Err(RecvTimeoutError::Disconnected) => return true,
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}

impl Process {
    /// Starts `program` with `args`, `RUST_LOG=info` unless the caller set it.
    pub fn spawn(program: &Path, args: &[&str]) -> Process {
        Process::spawn_with_env(program, args, &[])
    }

    pub fn spawn_with_env(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut command = Process::command(program, args);
        for (key, value) in env {
            command.env(key, value);
        }
        Process::start(command)
    }

    /// The command `spawn` runs, for a caller that adds to it (descriptors to
    /// inherit, say) before [`Process::start`].
    pub fn command(program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID");
        command
    }

    /// Starts `command` with piped stdout and stderr.
    pub fn start(mut command: Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "cannot start {}: {err}",
                command.get_program().to_string_lossy()
            )
        });
        let stderr_seen = Arc::new(Mutex::new(Vec::new()));
        let stdout = pump(child.stdout.take().expect("piped stdout"), "stdout", None);
        let stderr = pump(
            child.stderr.take().expect("piped stderr"),
            "stderr",
            Some(Arc::clone(&stderr_seen)),
        );
        let pid = child.id();
        // A thread owns the child and reports its exit: waiting for the exit is then
        // a channel receive with a deadline, and Drop kills by PID.
        let (exited_tx, exited) = crossbeam_channel::bounded(1);
        thread::Builder::new()
            .name("test-reaper".into())
            .spawn(move || {
                if let Ok(status) = child.wait() {
                    let _ = exited_tx.send(status);
                }
            })
            .expect("spawn reaper thread");
        Process {
            pid,
            exited,
            stdout,
            stderr,
            stdout_seen: Vec::new(),
            stderr_seen,
            status: None,
        }
    }

    /// Starts `lameduck` with `args` and waits for its `listening on` line.
    pub fn server(args: &[&str]) -> (Process, SocketAddr) {
        let mut process = Process::spawn(&binary(), args);
        let addr = process.listening_addr();
        (process, addr)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every stdout line read so far.
    pub fn stdout_lines(&self) -> &[String] {
        &self.stdout_seen
    }

    /// Everything printed so far, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout_seen.join("\n"),
            self.stderr_seen.lock().unwrap().join("\n")
        )
    }

    /// The next stdout line, within `PATIENCE`.
    #[track_caller]
    pub fn stdout_line(&mut self) -> Option<String> {
        match self.stdout.recv_timeout(PATIENCE) {
            Ok(line) => {
                self.stdout_seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no stdout line within {PATIENCE:?}\n{}", self.dump())
            }
        }
    }

    #[track_caller]
    pub fn listening_addr(&mut self) -> SocketAddr {
        let line = self
            .stdout_line()
            .unwrap_or_else(|| panic!("exited before `listening on`\n{}", self.dump()));
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stdout line is {line:?}\n{}", self.dump()));
        addr.parse()
            .unwrap_or_else(|err| panic!("bad address {addr:?}: {err}"))
    }

    /// Waits for a stderr line containing `needle`, within `PATIENCE`.
    #[track_caller]
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.stderr.recv_deadline(deadline) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line containing {needle:?}\n{}", self.dump()),
            }
        }
    }

    /// Sends a real signal by PID (`TERM`, `INT`, `HUP`, ...).
    pub fn signal(&self, name: &str) {
        kill(name, self.pid);
    }

    /// Reads stdout to its end (the process closing it), waits for the exit, then for
    /// the stderr pump to reach its end too, so that `stderr_text` holds everything.
    /// Returns the exit status and the last stdout line.
    #[track_caller]
    pub fn finish(&mut self) -> (ExitStatus, String) {
        self.finish_within(PATIENCE)
    }

    /// [`Process::finish`] with a bound of its own, for a process that runs a while.
    #[track_caller]
    pub fn finish_within(&mut self, patience: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + patience;
        if !until_eof(&self.stdout, deadline, |line| self.stdout_seen.push(line)) {
            panic!("process did not exit within {patience:?}\n{}", self.dump())
        }
        let status = self.wait_exit(deadline);
        // Every line is in `stderr_seen` before it is sent, and the pump hangs up
        // only after its last line: the hang-up is the event to wait for.
        if !until_eof(&self.stderr, deadline, drop) {
            panic!(
                "stderr still open {PATIENCE:?} after the exit\n{}",
                self.dump()
            )
        }
        let last = self.stdout_seen.last().cloned().unwrap_or_default();
        (status, last)
    }

    /// Waits for the exit, within `PATIENCE`, without reading stdout to its end (a
    /// successor started by an upgrade may still hold it).
    #[track_caller]
    pub fn exit_status(&mut self) -> ExitStatus {
        self.wait_exit(Instant::now() + PATIENCE)
    }

    /// The next stdout line that starts with `prefix`, within `PATIENCE`; the lines
    /// before it are kept for `dump`.
    #[track_caller]
    pub fn stdout_line_starting(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.stdout.recv_deadline(deadline) {
                Ok(line) => {
                    self.stdout_seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!("no stdout line starting {prefix:?}\n{}", self.dump()),
            }
        }
    }

    #[track_caller]
    fn wait_exit(&mut self, deadline: Instant) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        match self.exited.recv_deadline(deadline) {
            Ok(status) => {
                self.status = Some(status);
                status
            }
            Err(_) => panic!("process did not exit in time\n{}", self.dump()),
        }
    }

    /// The whole stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr_seen.lock().unwrap().join("\n")
    }

    /// Peak resident memory of the running process, in KiB (Linux).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        if thread::panicking() {
            // The test failed: collect the last lines of the (now dead) process, up to
            // its pipes closing, and show everything it wrote.
            let deadline = Instant::now() + PATIENCE;
            until_eof(&self.stdout, deadline, |line| self.stdout_seen.push(line));
            until_eof(&self.stderr, deadline, drop);
            eprintln!(
                "---- output of pid {} ----\n{}\n---- end of output ----",
                self.pid,
                self.dump()
            );
        }
    }
}

/// Asserts the server sends nothing (no byte, no EOF) on `stream` for `quiet`: the
/// wait ends early, and fails, at the first event. For tests whose client must stay
/// idle for a while on purpose. The stream's read timeout is restored afterwards.
#[track_caller]
pub fn expect_silence(stream: &TcpStream, quiet: Duration) {
    let usual = stream.read_timeout().expect("read timeout");
    stream
        .set_read_timeout(Some(quiet))
        .expect("set read timeout");
    let started = Instant::now();
    let peeked = stream.peek(&mut [0u8; 1]);
    stream
        .set_read_timeout(usual)
        .expect("restore read timeout");
    match peeked {
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!(
            "the server was to stay silent for {quiet:?}; after {:?}: {other:?}",
            started.elapsed()
        ),
    }
}

/// Sends a real signal (`TERM`, `USR2`, ...) to a process by PID: one the test did
/// not start itself, such as an upgrade's successor.
pub fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A process the test did not start (an upgrade's successor), killed by PID when
/// dropped whatever happened.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

/// Waits for the exit, asserts its code is `code`, and returns the report line.
#[track_caller]
pub fn expect_report(process: &mut Process, code: i32) -> String {
    let (status, report) = finish_with_report(process);
    assert_eq!(status, Some(code), "{}", process.dump());
    report
}

/// Waits for the exit and returns the exit code and the report line, after checking
/// the line has the contract's shape: `stopped` and at least the report's documented keys.
#[track_caller]
pub fn finish_with_report(process: &mut Process) -> (Option<i32>, String) {
    let (status, report) = process.finish();
    assert!(
        report.starts_with("stopped "),
        "last line {report:?}\n{}",
        process.dump()
    );
    for key in [
        "reason",
        "outcome",
        "drained",
        "forced",
        "refused_busy",
        "detached_threads",
        "drain_ms",
        "total_ms",
    ] {
        field(&report, key);
    }
    (status.code(), report)
}

/// Parses `key=value` fields of a report line.
pub fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .split_whitespace()
        .find_map(|pair| {
            pair.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
        })
        .unwrap_or_else(|| panic!("report {report:?} has no {key}="))
}

pub fn field_num(report: &str, key: &str) -> u64 {
    field(report, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {report:?} is not a number"))
}

/// A client that sends `request` over and over and never reads: the server's worker
/// ends up blocked writing replies into a full socket. Returns once that has
/// happened — the client's own writes stall because the worker stopped reading — so
/// the test never races it. The flood goes on from a thread until the server gives
/// the connection up or `PATIENCE` runs out.
pub fn flood_without_reading(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let (stalled_tx, stalled_rx) = crossbeam_channel::bounded(1);
    let requests = request.repeat(1 + 44_000 / request.len().max(1));
    thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            match writer.write(&requests) {
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let _ = stalled_tx.try_send(());
                }
                Err(_) => break,
            }
        }
    });
    stalled_rx
        .recv_timeout(PATIENCE)
        .expect("the flood stalls once the worker is stuck writing");
    stream
}
