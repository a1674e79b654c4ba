//! A server under test as a child process: how to start it (`ServerSpec`), and a handle
//! (`ServerProc`) that waits for its `listening on` line, signals it by PID with
//! `kill(1)`, times its exit, collects its report line and keeps the tail of its stderr
//! for failure dumps. Dropping the handle kills a server that is still running, so a
//! hung server cannot outlive the bench.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// How to start one contender.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Name in tables: `lameduck` or `tokio`.
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Pool size passed to the server, if it has one (for the table).
    pub workers: Option<usize>,
}

/// Lines of stderr kept for a failure dump.
const STDERR_TAIL: usize = 40;

/// How the server's process ended.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// Exit code, or `None` when a signal killed it.
    pub code: Option<i32>,
    pub at: Instant,
}

/// A running server process.
#[derive(Debug)]
pub struct ServerProc {
    pub label: String,
    pub pid: u32,
    pub addr: SocketAddr,
    lines: Receiver<String>,
    exit_rx: Receiver<Exit>,
    exit: Option<Exit>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    report: Option<String>,
}

impl ServerProc {
    /// Starts the server and waits up to `timeout` for `listening on <addr>`.
    pub fn start(spec: &ServerSpec, timeout: Duration) -> Result<ServerProc, String> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Both contenders run quiet unless the user asks otherwise: per-connection
        // info logs would measure the terminal, not the server.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{}: cannot start {:?}: {e}", spec.label, spec.program))?;
        let pid = child.id();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{}: no stdout/stderr pipe", spec.label));
        };

        let (line_tx, lines) = crossbeam_channel::unbounded();
        spawn_named(format!("bench-{}-stdout", spec.label), move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        })?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        spawn_named(format!("bench-{}-stderr", spec.label), move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        })?;
        let (exit_tx, exit_rx) = crossbeam_channel::bounded(1);
        spawn_named(format!("bench-{}-wait", spec.label), move || {
            let code = child.wait().ok().and_then(|s| s.code());
            let _ = exit_tx.send(Exit {
                code,
                at: Instant::now(),
            });
        })?;

        let mut proc = ServerProc {
            label: spec.label.clone(),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
            exit_rx,
            exit: None,
            stderr_tail,
            report: None,
        };
        let first = match proc.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(proc.failure(&format!("no `listening on` line within {timeout:?}")))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(proc.failure("exited before `listening on`"))
            }
        };
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok());
        match addr {
            Some(addr) => proc.addr = addr,
            None => return Err(proc.failure(&format!("first stdout line was {first:?}"))),
        }
        Ok(proc)
    }

    /// Sends `sig` (`TERM`, `INT`, `KILL`) by PID; returns the instant just before
    /// `kill(1)` was started, so exit times include its ~1 ms of process start.
    pub fn signal(&self, sig: &str) -> io::Result<Instant> {
        let at = Instant::now();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(at)
        } else {
            Err(io::Error::other(format!("kill -{sig} {} failed", self.pid)))
        }
    }

    /// Waits for the process to exit, until `deadline`.
    pub fn wait_exit(&mut self, deadline: Instant) -> Option<Exit> {
        if self.exit.is_none() {
            self.exit = self.exit_rx.recv_deadline(deadline).ok();
        }
        self.exit
    }

    /// The `stopped ...` report: the last stdout line, read until stdout closes or
    /// `deadline`.
    pub fn report(&mut self, deadline: Instant) -> Option<String> {
        while let Ok(line) = self.lines.recv_deadline(deadline) {
            if line.starts_with("stopped ") {
                self.report = Some(line);
            }
        }
        self.report.clone()
    }

    /// SIGTERM, then wait for exit and report within `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> Result<(Exit, String), String> {
        self.signal("TERM")
            .map_err(|e| self.failure(&format!("SIGTERM: {e}")))?;
        let deadline = Instant::now() + timeout;
        let exit = self
            .wait_exit(deadline)
            .ok_or_else(|| self.failure(&format!("did not exit within {timeout:?} of SIGTERM")))?;
        let report = self
            .report(deadline)
            .ok_or_else(|| self.failure("exited without a `stopped` report line"))?;
        Ok((exit, report))
    }

    /// Last lines of stderr, for a failure message.
    pub fn stderr_tail(&self) -> String {
        match self.stderr_tail.lock() {
            Ok(tail) => tail.iter().cloned().collect::<Vec<_>>().join("\n"),
            Err(_) => String::new(),
        }
    }

    fn failure(&self, what: &str) -> String {
        let tail = self.stderr_tail();
        if tail.is_empty() {
            format!("{} (pid {}): {what}", self.label, self.pid)
        } else {
            format!(
                "{} (pid {}): {what}; stderr tail:\n{tail}",
                self.label, self.pid
            )
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if self.exit.is_some() || self.exit_rx.try_recv().is_ok() {
            return;
        }
        // Still running: the bench is failing or was interrupted. SIGKILL by PID (the
        // waiter thread has not reaped it, so the PID is still ours) and wait briefly.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.exit_rx.recv_timeout(Duration::from_secs(2));
    }
}

fn spawn_named(name: String, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map(drop)
        .map_err(|e| format!("cannot spawn thread {name}: {e}"))
}
