//! Test support: run a program, read its output line by line against deadlines, send
//! it signals by PID, and wait for its exit with a deadline. Nothing here sleeps to
//! synchronise: lines arrive on channels filled by reader threads, and every wait has
//! a named deadline whose failure message dumps what the program printed.
//!
//! Shared by the integration tests and the benchmarks (`#[path]`), so it stays generic:
//! no knowledge of lameduck's output.
#![allow(dead_code)] // each test binary uses a different subset

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// One output stream of the child: lines as they arrive, and all seen so far.
struct Stream {
    name: &'static str,
    lines: Receiver<String>,
    seen: Vec<String>,
    closed: bool,
}

impl Stream {
    fn start<R: Read + Send + 'static>(name: &'static str, source: R) -> Stream {
        let (line_tx, lines) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name(format!("test-read-{name}"))
            .spawn(move || {
                let mut reader = BufReader::new(source);
                let mut buffer = Vec::new();
                loop {
                    buffer.clear();
                    match reader.read_until(b'\n', &mut buffer) {
                        Ok(0) | Err(_) => break, // EOF: dropping line_tx tells the reader
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buffer);
                            let line = line.trim_end_matches(['\n', '\r']).to_owned();
                            if line_tx.send(line).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .expect("cannot start a reader thread");
        Stream {
            name,
            lines,
            seen: Vec::new(),
            closed: false,
        }
    }

    /// Next line before `deadline`: Ok(Some(line)), Ok(None) at EOF, Err on timeout.
    fn next_line(&mut self, deadline: Instant) -> Result<Option<String>, ()> {
        if self.closed {
            return Ok(None);
        }
        match self.lines.recv_deadline(deadline) {
            Ok(line) => {
                self.seen.push(line.clone());
                Ok(Some(line))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Ok(None)
            }
            Err(RecvTimeoutError::Timeout) => Err(()),
        }
    }
}

/// What a finished program left behind.
#[derive(Debug)]
pub struct Exit {
    /// Its exit status.
    pub status: ExitStatus,
    /// Every line it wrote to stdout.
    pub stdout: Vec<String>,
    /// Every line it wrote to stderr.
    pub stderr: Vec<String>,
}

impl Exit {
    /// The exit code (None if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The last line of stdout, or "" if there was none.
    pub fn last_stdout_line(&self) -> &str {
        self.stdout.last().map(String::as_str).unwrap_or("")
    }

    /// True if some stderr line contains `needle`.
    pub fn stderr_contains(&self, needle: &str) -> bool {
        self.stderr.iter().any(|line| line.contains(needle))
    }

    /// Both streams, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout.join("\n"),
            self.stderr.join("\n")
        )
    }
}

/// A running program, killed by PID when dropped unless it has exited.
pub struct Process {
    label: String,
    child: Child,
    stdout: Stream,
    stderr: Stream,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `program` with `args`, stdout and stderr piped, stdin closed.
    #[track_caller]
    pub fn spawn(program: &Path, args: &[&str]) -> Process {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()));
        let stdout = Stream::start("stdout", child.stdout.take().expect("piped stdout"));
        let stderr = Stream::start("stderr", child.stderr.take().expect("piped stderr"));
        Process {
            label: format!("{} {}", program.display(), args.join(" ")),
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    /// The operating system's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout until a line satisfies `wanted`, and returns it. Panics, with
    /// everything printed so far, if stdout closes or `within` passes first.
    #[track_caller]
    pub fn wait_for_stdout(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_for_line(true, what, within, wanted)
    }

    /// Like [`Process::wait_for_stdout`], for stderr.
    #[track_caller]
    pub fn wait_for_stderr(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_for_line(false, what, within, wanted)
    }

    #[track_caller]
    fn wait_for_line(
        &mut self,
        from_stdout: bool,
        what: &str,
        within: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let stream = if from_stdout {
                &mut self.stdout
            } else {
                &mut self.stderr
            };
            let name = stream.name;
            match stream.next_line(deadline) {
                Ok(Some(line)) if wanted(&line) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!("{name} closed before {what}\n{}", self.dump()),
                Err(()) => panic!("no {what} on {name} within {within:?}\n{}", self.dump()),
            }
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, `KILL`) with the `kill` command.
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|err| panic!("cannot run kill: {err}"));
        assert!(
            status.success(),
            "kill -{name} {} failed: {status}",
            self.pid()
        );
    }

    /// Waits for the program to close its output and exit, up to `within`, and returns
    /// what it printed. Panics with its output if it is still running then.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> Exit {
        let deadline = Instant::now() + within;
        // Output closes when the process exits (no lameduck example hands its pipes to
        // children), so reading to EOF is the wait; no polling.
        for from_stdout in [true, false] {
            loop {
                let stream = if from_stdout {
                    &mut self.stdout
                } else {
                    &mut self.stderr
                };
                let name = stream.name;
                match stream.next_line(deadline) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(()) => panic!("{name} still open after {within:?}\n{}", self.dump()),
                }
            }
        }
        // The pipes are closed, so the process is exiting; reaping it takes at most a
        // few scheduler ticks. This bounded poll is the one place a short wait is used,
        // since std offers no wait-with-timeout on a child.
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                Ok(None) => panic!("still running after {within:?}\n{}", self.dump()),
                Err(err) => panic!("cannot wait for the process: {err}"),
            }
        };
        self.status = Some(status);
        Exit {
            status,
            stdout: self.stdout.seen.clone(),
            stderr: self.stderr.seen.clone(),
        }
    }

    /// Everything printed so far, for failure messages.
    pub fn dump(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "process: {} (pid {})", self.label, self.pid());
        let _ = writeln!(text, "--- stdout ---\n{}", self.stdout.seen.join("\n"));
        let _ = write!(text, "--- stderr ---\n{}", self.stderr.seen.join("\n"));
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGKILL by PID (Child::kill) cannot be ignored; then reap within a bound so a
        // failing test leaves neither a running process nor a zombie behind.
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => thread::sleep(Duration::from_millis(1)),
                _ => break,
            }
        }
    }
}
