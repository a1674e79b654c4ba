//! Upgrades without downtime, measured on the real release binary: a chain
//! of `lameduck echo` (then `lameduck http`) processes, each started by its predecessor
//! on SIGUSR2, under closed-loop load from 64 clients that follow the protocol.
//!
//! What is counted over the whole run: refused connects, resets, requests that got no
//! response (EOF or an error before the answer, without a goodbye), corrupted replies,
//! and — echo only, allowed — requests that crossed the goodbye and were sent again.
//! Per upgrade: SIGUSR2 → the new process ready (its `READY=1`, its `listening on`,
//! the old one's `MAINPID=`) and → the old process gone (its `stopped reason=upgrade`
//! line, `/proc/<pid>`). Throughput in 100 ms buckets around each upgrade against the
//! steady rate outside them.
//!
//! The clients are 64 plain threads with blocking sockets (not the `mio` load
//! generator: it speaks neither HTTP nor reconnects). Their CPU is measured and
//! printed next to the results, since they share the two cores with the servers.
//!
//! ```text
//! cargo bench --bench upgrade               # 20 upgrades per protocol
//! cargo bench --bench upgrade -- --quick    # 5 upgrades per protocol
//! ```
//!
//! Console tables, and the same in `target/upgrade.md`.

use figures::median;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

// Each bench uses some of these.
#[allow(dead_code)]
#[path = "support/figures.rs"]
mod figures;

// Only the `/proc` readers and the machine line of the shared harness are used here.
#[allow(dead_code)]
#[path = "support/procfs.rs"]
mod procfs;

/// Closed-loop client connections (one thread each).
const CLIENTS: usize = 64;
/// Width of a throughput bucket.
const BUCKET: Duration = Duration::from_millis(100);
/// Load before anything is counted: connects and first requests.
const WARMUP: Duration = Duration::from_millis(500);
/// Steady load after the warm-up and before the first upgrade.
const BASELINE: Duration = Duration::from_secs(3);
/// Steady load after the last upgrade.
const TAIL: Duration = Duration::from_secs(1);
/// An upgrade window: from this long before SIGUSR2 ...
const WINDOW_BEFORE: Duration = Duration::from_millis(500);
/// ... to this long after it (or to the old process's exit, if that is later).
const WINDOW_AFTER: Duration = Duration::from_secs(1);
/// Steady load after the old process is gone, before the next SIGUSR2 ...
const SETTLE: Duration = Duration::from_millis(300);
/// ... and at least this between two SIGUSR2s, so windows never overlap and steady
/// buckets separate them.
const SPACING: Duration = Duration::from_secs(2);
/// Longest wait for any one event of an upgrade (the server's own upgrade timeout
/// is 10 s).
const PATIENCE: Duration = Duration::from_secs(15);
/// A client read or write blocked this long is a stall (counted, then reconnected).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

const GOODBYE: &str = "Server is shutting down. Goodbye!\r\n";
const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const HTTP_BODY: &[u8] = b"Hello, World!";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Echo,
    Http,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::Http => "http",
        }
    }
}

// ---------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------

/// A failure worth a line in the report: when (since the load began) and what.
#[derive(Clone, Debug)]
struct Event {
    at: Duration,
    kind: Kind,
    detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Refused,
    Reset,
    Unanswered,
    Corrupt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Refused => "refused",
            Kind::Reset => "reset",
            Kind::Unanswered => "no response",
            Kind::Corrupt => "corrupt",
        }
    }
}

/// What the clients saw; each thread keeps its own, merged at the end.
#[derive(Debug, Default)]
struct Tally {
    answered: u64,
    connects: u64,
    refused: u64,
    resets: u64,
    /// EOF or an error before the answer, without a goodbye (stalls included).
    unanswered: u64,
    /// Of `unanswered`: the read or write blocked for `IO_TIMEOUT`.
    stalled: u64,
    corrupt: u64,
    /// Echo: the goodbye came instead of the answer; the request went again on a new
    /// connection.
    crossed: u64,
    /// Echo goodbye lines and HTTP `Connection: close` responses.
    goodbyes: u64,
    /// After a goodbye, the server did not close within `IO_TIMEOUT`.
    slow_close: u64,
    /// Requests answered per `BUCKET` since the load began.
    buckets: Vec<u64>,
    events: Vec<Event>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.answered += other.answered;
        self.connects += other.connects;
        self.refused += other.refused;
        self.resets += other.resets;
        self.unanswered += other.unanswered;
        self.stalled += other.stalled;
        self.corrupt += other.corrupt;
        self.crossed += other.crossed;
        self.goodbyes += other.goodbyes;
        self.slow_close += other.slow_close;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (sum, n) in self.buckets.iter_mut().zip(&other.buckets) {
            *sum += n;
        }
        self.events.extend(other.events);
    }

    fn event(&mut self, t0: Instant, kind: Kind, detail: String) {
        match kind {
            Kind::Refused => self.refused += 1,
            Kind::Reset => self.resets += 1,
            Kind::Unanswered => self.unanswered += 1,
            Kind::Corrupt => self.corrupt += 1,
        }
        self.events.push(Event {
            at: t0.elapsed(),
            kind,
            detail,
        });
    }

    fn answered_at(&mut self, t0: Instant) {
        self.answered += 1;
        let index = bucket_of(t0.elapsed());
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, 0);
        }
        self.buckets[index] += 1;
    }
}

fn bucket_of(since_t0: Duration) -> usize {
    (since_t0.as_nanos() / BUCKET.as_nanos()) as usize
}

/// How one request ended on a connection that is still usable or cleanly closing.
enum Reply {
    /// Answered; `closing` when the server said it closes the connection after it
    /// (HTTP `Connection: close`).
    Answered { closing: bool },
    /// Echo's goodbye instead of the answer: the request crossed it.
    Goodbye,
}

/// How one request failed.
enum Failure {
    Reset(String),
    Unanswered(String),
    Stalled(String),
    Corrupt(String),
}

fn failure(err: &io::Error, doing: &str) -> Failure {
    let detail = format!("{doing}: {err}");
    match err.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Failure::Reset(detail)
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Failure::Stalled(detail),
        _ => Failure::Unanswered(detail),
    }
}

fn connect(addr: SocketAddr) -> io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// `ping <seq>\n` → `Echo: ping <seq>\r\n`, or the goodbye.
fn echo_exchange(conn: &mut BufReader<TcpStream>, seq: u64) -> Result<Reply, Failure> {
    conn.get_mut()
        .write_all(format!("ping {seq}\n").as_bytes())
        .map_err(|err| failure(&err, "write"))?;
    let mut line = String::new();
    conn.read_line(&mut line)
        .map_err(|err| failure(&err, "read"))?;
    if line == format!("Echo: ping {seq}\r\n") {
        // The goodbye often arrives with the last reply: a client that reads what it
        // already has before sending again sees it, and sends nothing that could
        // cross it. Only a line sent before the goodbye arrived counts as crossed.
        let closing = conn.buffer().starts_with(GOODBYE.as_bytes());
        if closing {
            line.clear();
            conn.read_line(&mut line)
                .map_err(|err| failure(&err, "read the goodbye"))?;
        }
        Ok(Reply::Answered { closing })
    } else if line == GOODBYE {
        Ok(Reply::Goodbye)
    } else if line.is_empty() {
        Err(Failure::Unanswered("EOF before the reply".into()))
    } else if !line.ends_with('\n') {
        Err(Failure::Unanswered(format!(
            "EOF inside the reply {line:?}"
        )))
    } else {
        Err(Failure::Corrupt(format!("{line:?} for ping {seq}")))
    }
}

/// A keep-alive `GET /` → `200` with `Hello, World!`.
fn http_exchange(conn: &mut BufReader<TcpStream>) -> Result<Reply, Failure> {
    conn.get_mut()
        .write_all(HTTP_REQUEST)
        .map_err(|err| failure(&err, "write"))?;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = conn
            .read_line(&mut line)
            .map_err(|err| failure(&err, "read"))?;
        if n == 0 {
            return Err(Failure::Unanswered(if head.is_empty() {
                "EOF before the response".into()
            } else {
                format!("EOF inside the head {head:?}")
            }));
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
        if head.len() > 16 * 1024 {
            return Err(Failure::Corrupt(format!("endless head {:?}", &head[..200])));
        }
    }
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(Failure::Corrupt(format!("head {head:?}")));
    }
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    if length != Some(HTTP_BODY.len()) {
        return Err(Failure::Corrupt(format!("head {head:?}")));
    }
    let mut body = [0u8; HTTP_BODY.len()];
    conn.read_exact(&mut body).map_err(|err| {
        if err.kind() == ErrorKind::UnexpectedEof {
            Failure::Unanswered("EOF inside the body".into())
        } else {
            failure(&err, "read body")
        }
    })?;
    if body != HTTP_BODY {
        return Err(Failure::Corrupt(format!(
            "body {:?}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(Reply::Answered {
        closing: lower.contains("\r\nconnection: close\r\n"),
    })
}

/// After a goodbye: read to EOF, as the protocol asks. Anything more is corrupt.
fn read_to_eof(conn: &mut BufReader<TcpStream>, tally: &mut Tally, t0: Instant) {
    let mut rest = Vec::new();
    match conn.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => {}
        Ok(_) => tally.event(
            t0,
            Kind::Corrupt,
            format!("after the goodbye: {:?}", String::from_utf8_lossy(&rest)),
        ),
        Err(err) => match failure(&err, "read after the goodbye") {
            Failure::Reset(detail) => tally.event(t0, Kind::Reset, detail),
            Failure::Stalled(_) => tally.slow_close += 1,
            // Every request here was answered; an odd error is still worth a line.
            Failure::Unanswered(detail) | Failure::Corrupt(detail) => {
                tally.event(t0, Kind::Corrupt, detail)
            }
        },
    }
}

/// One closed-loop client: request after request on one connection; after a goodbye
/// it reads EOF and reconnects, sending again the request that crossed it; after a
/// failure it counts it and reconnects.
fn client(protocol: Protocol, addr: SocketAddr, t0: Instant, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let current = match conn.as_mut() {
            Some(current) => current,
            None => match connect(addr) {
                Ok(fresh) => {
                    tally.connects += 1;
                    conn.insert(fresh)
                }
                Err(err) => {
                    let kind = if err.kind() == ErrorKind::ConnectionRefused {
                        Kind::Refused
                    } else {
                        Kind::Unanswered
                    };
                    tally.event(t0, kind, format!("connect: {err}"));
                    // A client's back-off, so a closed port is not a busy loop.
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let reply = match protocol {
            Protocol::Echo => echo_exchange(current, seq),
            Protocol::Http => http_exchange(current),
        };
        match reply {
            Ok(Reply::Answered { closing }) => {
                tally.answered_at(t0);
                seq += 1;
                if closing {
                    tally.goodbyes += 1;
                    read_to_eof(current, &mut tally, t0);
                    conn = None;
                }
            }
            Ok(Reply::Goodbye) => {
                tally.goodbyes += 1;
                tally.crossed += 1;
                read_to_eof(current, &mut tally, t0);
                conn = None;
            }
            Err(failed) => {
                match failed {
                    Failure::Reset(detail) => tally.event(t0, Kind::Reset, detail),
                    Failure::Unanswered(detail) => tally.event(t0, Kind::Unanswered, detail),
                    Failure::Stalled(detail) => {
                        tally.stalled += 1;
                        tally.event(t0, Kind::Unanswered, detail);
                    }
                    Failure::Corrupt(detail) => tally.event(t0, Kind::Corrupt, detail),
                }
                conn = None;
            }
        }
    }
    tally
}

// ---------------------------------------------------------------------------------
// The chain of server processes
// ---------------------------------------------------------------------------------

/// A line or datagram, stamped when it arrived.
type Stamped = (Instant, String);

/// Every process of one chain: the first (our child) and each successor (not our
/// children: their parent is the process they replaced). Dropping it kills by PID
/// whichever still runs our copy of the binary, so nothing outlives the bench.
struct Chain {
    binary: PathBuf,
    pids: Vec<u32>,
    first_exit: Receiver<()>,
    stdout: Receiver<Stamped>,
    notify: Receiver<Stamped>,
    notify_stop: Arc<AtomicBool>,
    /// Everything the chain said, stamped: stdout lines, notifications, and stderr
    /// (warnings, and the deploy module's few info lines that time an upgrade's steps).
    journal: Journal,
}

/// Where a journal entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Stdout,
    Stderr,
    Notify,
}

type Journal = Arc<Mutex<Vec<(Instant, Source, String)>>>;

fn record(journal: &Journal, source: Source, text: &str) -> Instant {
    let at = Instant::now();
    if let Ok(mut entries) = journal.lock() {
        if entries.len() < 50_000 {
            entries.push((at, source, text.to_string()));
        }
    }
    at
}

/// Reads `stream` line by line (bytes that are not UTF-8 do not end it) until EOF.
fn read_lines(stream: impl Read, mut each: impl FnMut(String) -> bool) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                if !each(text.trim_end_matches(['\r', '\n']).to_string()) {
                    return;
                }
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl Chain {
    fn start(protocol: Protocol, binary: &Path, dir: &Path) -> Result<(Chain, SocketAddr), String> {
        let socket_path = dir.join(format!("notify-{}.sock", protocol.name()));
        let _ = fs::remove_file(&socket_path);
        let socket = UnixDatagram::bind(&socket_path)
            .map_err(|err| format!("bind {}: {err}", socket_path.display()))?;
        // A short timeout so the reader notices the end of the run.
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|err| err.to_string())?;
        let journal: Journal = Arc::new(Mutex::new(Vec::new()));
        let notify_stop = Arc::new(AtomicBool::new(false));
        let (notify_tx, notify) = crossbeam_channel::unbounded();
        let stopping = Arc::clone(&notify_stop);
        let notes = Arc::clone(&journal);
        spawn_named("bench-notify", move || {
            let mut buf = [0u8; 4096];
            while !stopping.load(Ordering::Relaxed) {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let at = record(&notes, Source::Notify, &text.replace('\n', " | "));
                        if notify_tx.send((at, text)).is_err() {
                            return;
                        }
                    }
                    Err(err)
                        if matches!(
                            err.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(err) => {
                        record(&notes, Source::Notify, &format!("(reader stopped: {err})"));
                        return;
                    }
                }
            }
        })?;

        let mut command = Command::new(binary);
        command
            .args([protocol.name(), "--addr", "127.0.0.1:0"])
            .env("NOTIFY_SOCKET", &socket_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none() {
            // Per-connection logs would measure the pipe; the deploy module's lines
            // (a few per upgrade) time its steps.
            command.env("RUST_LOG", "warn,lameduck::deploy=info");
        }
        let mut child = command
            .spawn()
            .map_err(|err| format!("start {}: {err}", binary.display()))?;
        let pid = child.id();
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no stdout/stderr pipe".into());
        };
        // Successors inherit these pipes: the readers see every process's lines, and
        // end when the last process of the chain has exited.
        let (stdout_tx, stdout) = crossbeam_channel::unbounded();
        let lines = Arc::clone(&journal);
        spawn_named("bench-stdout", move || {
            read_lines(out, |line| {
                let at = record(&lines, Source::Stdout, &line);
                stdout_tx.send((at, line)).is_ok()
            });
        })?;
        let lines = Arc::clone(&journal);
        spawn_named("bench-stderr", move || {
            read_lines(err, |line| {
                record(&lines, Source::Stderr, &line);
                true
            });
        })?;
        let (exit_tx, first_exit) = crossbeam_channel::bounded(1);
        spawn_named("bench-wait", move || {
            let _ = child.wait();
            let _ = exit_tx.send(());
        })?;

        let chain = Chain {
            binary: binary.to_path_buf(),
            pids: vec![pid],
            first_exit,
            stdout,
            notify,
            notify_stop,
            journal,
        };
        let deadline = Instant::now() + PATIENCE;
        let (_, line) = chain.line_starting("listening on ", deadline)?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|addr| addr.trim().parse().ok())
            .ok_or_else(|| chain.failure(&format!("first line {line:?}")))?;
        chain.datagram_with("READY=1", deadline)?;
        Ok((chain, addr))
    }

    /// The next stdout line starting with `prefix`, by `deadline`; other lines are
    /// skipped (there are none in a healthy run).
    fn line_starting(&self, prefix: &str, deadline: Instant) -> Result<Stamped, String> {
        loop {
            match self.stdout.recv_deadline(deadline) {
                Ok((at, line)) if line.starts_with(prefix) => return Ok((at, line)),
                Ok((_, line)) => eprintln!("  (unexpected stdout line: {line})"),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("no `{prefix}` line in time")))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.failure(&format!("stdout closed before `{prefix}`")))
                }
            }
        }
    }

    /// The next notification with a line starting with `key`, by `deadline`; returns
    /// when it arrived and the rest of that line.
    fn datagram_with(&self, key: &str, deadline: Instant) -> Result<Stamped, String> {
        loop {
            match self.notify.recv_deadline(deadline) {
                Ok((at, text)) => {
                    if let Some(value) = text.lines().find_map(|line| line.strip_prefix(key)) {
                        return Ok((at, value.to_string()));
                    }
                }
                Err(_) => return Err(self.failure(&format!("no `{key}` notification in time"))),
            }
        }
    }

    /// Polls `/proc/<pid>` until the process is gone or a zombie, by `deadline`.
    /// Successors are not our children, so there is no `wait` for them, and stable
    /// std has no pidfd; a 1 ms poll is the resolution of this one figure.
    fn gone(&self, pid: u32, deadline: Instant) -> Result<Instant, String> {
        if Some(&pid) == self.pids.first() {
            return match self.first_exit.recv_deadline(deadline) {
                Ok(()) => Ok(Instant::now()),
                Err(_) => Err(self.failure(&format!("pid {pid} still running"))),
            };
        }
        loop {
            let now = Instant::now();
            if !running(pid) {
                return Ok(now);
            }
            if now >= deadline {
                return Err(self.failure(&format!("pid {pid} still running")));
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// `what`, then the last entries of the journal (relative to the last one) and
    /// every process running our binary: what a failed upgrade needs to be read.
    fn failure(&self, what: &str) -> String {
        let mut out = what.to_string();
        if let Ok(entries) = self.journal.lock() {
            let tail = &entries[entries.len().saturating_sub(16)..];
            if let Some((last, _, _)) = tail.last() {
                let _ = write!(
                    out,
                    "\n  last of what the servers said (ms before the last):"
                );
                for (at, source, text) in tail {
                    let _ = write!(out, "\n    -{:>6.1} {source:?}: {text}", ms(*last - *at));
                }
            }
        }
        let _ = write!(out, "\n  processes running {}:", self.binary.display());
        for pid in ours(&self.binary) {
            let _ = write!(out, "\n    {}", describe(pid));
        }
        out
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.journal
            .lock()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(_, source, _)| *source == Source::Stderr)
                    .map(|(_, _, line)| line.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When the first stderr line after `since` containing `text` arrived.
    fn stderr_after(&self, since: Instant, text: &str) -> Option<Instant> {
        let entries = self.journal.lock().ok()?;
        entries
            .iter()
            .find(|(at, source, line)| {
                *source == Source::Stderr && *at >= since && line.contains(text)
            })
            .map(|(at, _, _)| *at)
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // Every PID of the chain we know of, and any other process running our copy
        // of the binary (a successor whose MAINPID never came): the path is this
        // run's own, so nothing else matches, and a PID reused since does not.
        let mut pids = ours(&self.binary);
        pids.extend(self.pids.iter().copied().filter(|&pid| {
            fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == self.binary)
        }));
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            if running(pid) {
                signal("KILL", pid);
            }
        }
        let _ = self.first_exit.recv_timeout(Duration::from_secs(2));
        self.notify_stop.store(true, Ordering::Relaxed);
    }
}

/// PIDs of the processes whose executable is `binary`.
fn ours(binary: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
        .collect()
}

/// `pid ppid state`, and where its threads wait, for a failure message.
fn describe(pid: u32) -> String {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|end| stat[end + 1..].split_whitespace().take(2).collect())
        .unwrap_or_default();
    let mut waits = std::collections::BTreeMap::<String, usize>::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let wchan = fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
            let name = name.trim().trim_end_matches(|c: char| c.is_ascii_digit());
            *waits.entry(format!("{name}@{}", wchan.trim())).or_default() += 1;
        }
    }
    format!(
        "pid {pid} state {} ppid {} threads: {}",
        fields.first().unwrap_or(&"?"),
        fields.get(1).unwrap_or(&"?"),
        waits
            .iter()
            .map(|(what, n)| format!("{n}×{what}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Whether `pid` exists and is not a zombie (an exited successor waits as a zombie
/// until whoever adopted it reaps it).
fn running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends signals through one `/bin/sh` started up front, whose `kill` is a builtin:
/// starting `kill(1)` for each upgrade would fork and exec under full load, which
/// took up to seconds here and would be counted as the server's time.
struct Signaller {
    pid: u32,
    commands: std::process::ChildStdin,
    replies: Receiver<String>,
    exited: Receiver<()>,
}

impl Signaller {
    fn start() -> Result<Signaller, String> {
        let mut child = Command::new("/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start /bin/sh: {err}"))?;
        let pid = child.id();
        let (Some(commands), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("/bin/sh: no pipes".into());
        };
        let (reply_tx, replies) = crossbeam_channel::unbounded();
        spawn_named("bench-signaller", move || {
            read_lines(out, |line| reply_tx.send(line).is_ok());
        })?;
        let (exit_tx, exited) = crossbeam_channel::bounded(1);
        spawn_named("bench-signaller-wait", move || {
            let _ = child.wait();
            let _ = exit_tx.send(());
        })?;
        Ok(Signaller {
            pid,
            commands,
            replies,
            exited,
        })
    }

    /// `kill -<sig> <pid>` in the shell; true once it says the signal was sent.
    fn send(&mut self, sig: &str, pid: u32) -> bool {
        let command = format!("kill -{sig} {pid} 2>/dev/null && echo sent || echo failed\n");
        if self
            .commands
            .write_all(command.as_bytes())
            .and_then(|()| self.commands.flush())
            .is_err()
        {
            return false;
        }
        self.replies
            .recv_timeout(PATIENCE)
            .is_ok_and(|reply| reply == "sent")
    }
}

impl Drop for Signaller {
    fn drop(&mut self) {
        // Our child: ended by its PID, and reaped by its waiter thread.
        signal("KILL", self.pid);
        let _ = self.exited.recv_timeout(Duration::from_secs(2));
    }
}

/// `kill -<sig> <pid>` with `kill(1)`; true if it was delivered.
fn signal(sig: &str, pid: u32) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|err| format!("cannot spawn thread {name}: {err}"))
}

/// `key=value` out of a report line.
fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or("?")
}

// ---------------------------------------------------------------------------------
// One protocol's run
// ---------------------------------------------------------------------------------

/// One upgrade's timeline, relative to its SIGUSR2: the instant the command went to
/// the signalling shell, so each figure includes the shell's wake-up.
#[derive(Debug)]
struct Upgrade {
    signalled: Instant,
    old_pid: u32,
    new_pid: u32,
    /// The shell's `kill -USR2` answered: the signal is sent.
    signal_sent: Duration,
    /// The old process logged that it started the new one (fork and exec done).
    spawned: Option<Duration>,
    /// The new process logged that it took the inherited socket (early in `main`).
    inherited: Option<Duration>,
    /// The new process's `READY=1` (sent right after it listens).
    ready: Duration,
    /// The new process's `listening on` line.
    listening: Duration,
    /// The old process's `MAINPID=<new>`: it heard the new one is ready.
    mainpid: Duration,
    /// The old process's `stopped` line.
    report_line: Duration,
    /// The old process gone (exited, or a zombie waiting to be reaped).
    gone: Duration,
    report: String,
}

#[derive(Debug)]
struct ProtocolRun {
    protocol: Protocol,
    upgrades: Vec<Upgrade>,
    tally: Tally,
    /// Start of the load, and when it was told to stop.
    t0: Instant,
    stopped: Instant,
    /// The bench process's CPU (the clients, essentially) and the whole machine's,
    /// over the load, in cores.
    bench_cores: f64,
    machine_cores: f64,
    final_report: String,
    stderr: Vec<String>,
    /// The 1, 5, 15 minute load averages when the load stopped (the machine is shared).
    loadavg: String,
    /// Clients that had not returned within their deadline.
    stuck_clients: usize,
}

fn run_protocol(
    protocol: Protocol,
    upgrades: usize,
    binary: &Path,
    dir: &Path,
) -> Result<ProtocolRun, String> {
    let (mut chain, addr) = Chain::start(protocol, binary, dir)?;
    let mut signaller = Signaller::start()?;

    let tck = procfs::clk_tck() as f64;
    let bench_before = procfs::cpu_ticks(None);
    let machine_before = procfs::machine_busy_ticks();
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done) = crossbeam_channel::unbounded();
    for id in 0..CLIENTS {
        let stop = Arc::clone(&stop);
        let done_tx = done_tx.clone();
        spawn_named(&format!("client-{id}"), move || {
            let _ = done_tx.send(client(protocol, addr, t0, &stop));
        })?;
    }
    drop(done_tx);
    // Collects the clients on every path out of here: a failed upgrade still
    // reports what they saw so far.
    let finish_clients = |stop: &AtomicBool| {
        stop.store(true, Ordering::Relaxed);
        let stopped = Instant::now();
        let deadline = stopped + IO_TIMEOUT + Duration::from_secs(2);
        let mut tally = Tally::default();
        let mut returned = 0;
        while returned < CLIENTS {
            match done.recv_deadline(deadline) {
                Ok(one) => {
                    tally.merge(one);
                    returned += 1;
                }
                Err(_) => break,
            }
        }
        (tally, stopped, CLIENTS - returned)
    };

    thread::sleep(WARMUP + BASELINE); // steady load being measured, not a wait
    let mut done_upgrades = Vec::with_capacity(upgrades);
    let mut current = chain.pids[0];
    let mut failed = None;
    for round in 1..=upgrades {
        match upgrade_once(&mut chain, &mut signaller, current, addr) {
            Ok(upgrade) => {
                current = upgrade.new_pid;
                let next =
                    (upgrade.signalled + upgrade.gone + SETTLE).max(upgrade.signalled + SPACING);
                done_upgrades.push(upgrade);
                // Steady load between upgrades: part of what is measured.
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Err(err) => {
                failed = Some(format!("{} upgrade {round}: {err}", protocol.name()));
                break;
            }
        }
    }
    if failed.is_none() {
        thread::sleep(TAIL); // steady load after the last upgrade
    }
    let (tally, stopped, stuck_clients) = finish_clients(&stop);
    let bench_cores = match (bench_before, procfs::cpu_ticks(None)) {
        (Some(a), Some(b)) => (b - a) as f64 / tck / (stopped - t0).as_secs_f64(),
        _ => f64::NAN,
    };
    let machine_cores = match (machine_before, procfs::machine_busy_ticks()) {
        (Some(a), Some(b)) => (b - a) as f64 / tck / (stopped - t0).as_secs_f64(),
        _ => f64::NAN,
    };
    if let Some(err) = failed {
        // Requests answered per 500 ms over the last 20 s: shows whether the load
        // stopped with the upgrade (the server) or not (the bench side).
        let halves: Vec<String> = tally
            .buckets
            .chunks(5)
            .map(|chunk| chunk.iter().sum::<u64>().to_string())
            .collect();
        let recent = &halves[halves.len().saturating_sub(40)..];
        return Err(format!(
            "{err}\n  clients: answered={} refused={} resets={} unanswered={} \
             (stalled {}) not returned={stuck_clients}\n  answered per 500 ms, last 20 s: {}",
            tally.answered,
            tally.refused,
            tally.resets,
            tally.unanswered,
            tally.stalled,
            recent.join(" ")
        ));
    }

    // The last process of the chain stops the ordinary way.
    let final_report = if signaller.send("TERM", current) {
        chain
            .line_starting("stopped ", Instant::now() + PATIENCE)
            .map(|(_, line)| line)
            .unwrap_or_else(|err| format!("(none: {err})"))
    } else {
        format!("(kill -TERM {current} failed)")
    };
    let _ = chain.gone(current, Instant::now() + PATIENCE);
    Ok(ProtocolRun {
        protocol,
        upgrades: done_upgrades,
        tally,
        t0,
        stopped,
        bench_cores,
        machine_cores,
        final_report,
        stderr: chain.stderr_lines(),
        loadavg: procfs::loadavg(),
        stuck_clients,
    })
}

/// SIGUSR2 to `old`, then every event of the hand-over, each by a deadline.
fn upgrade_once(
    chain: &mut Chain,
    signaller: &mut Signaller,
    old: u32,
    addr: SocketAddr,
) -> Result<Upgrade, String> {
    // Nothing should be pending; anything that is belongs to an earlier step.
    for (_, line) in chain.stdout.try_iter() {
        eprintln!("  (unexpected stdout line: {line})");
    }
    let _ = chain.notify.try_iter().count();

    let signalled = Instant::now();
    if !signaller.send("USR2", old) {
        return Err(format!("kill -USR2 {old} failed"));
    }
    let signal_sent = signalled.elapsed();
    // Each event by its own deadline, counted once the signal is out.
    let deadline = Instant::now() + PATIENCE;
    let (ready_at, _) = chain.datagram_with("READY=1", deadline)?;
    let (mainpid_at, new_pid) = chain.datagram_with("MAINPID=", deadline)?;
    let new_pid: u32 = new_pid
        .trim()
        .parse()
        .map_err(|_| format!("MAINPID={new_pid}"))?;
    chain.pids.push(new_pid);
    let (listening_at, line) = chain.line_starting("listening on ", deadline)?;
    if line != format!("listening on {addr}") {
        return Err(format!("the new process says {line:?}, not {addr}"));
    }
    let (report_at, report) = chain.line_starting("stopped ", deadline)?;
    let gone_at = chain.gone(old, deadline)?;
    // The log lines are written before the events above; give their reader a moment
    // in case it was scheduled after them (bounded, and only if they are missing).
    let logged = |text: &str| {
        let until = Instant::now() + Duration::from_millis(200);
        loop {
            let found = chain.stderr_after(signalled, text);
            if found.is_some() || Instant::now() >= until {
                return found.map(|at| at - signalled);
            }
            thread::sleep(Duration::from_millis(5));
        }
    };
    let spawned = logged("upgrade: started");
    let inherited = logged("serving the inherited socket");
    Ok(Upgrade {
        signalled,
        old_pid: old,
        new_pid,
        signal_sent,
        spawned,
        inherited,
        ready: ready_at - signalled,
        listening: listening_at - signalled,
        mainpid: mainpid_at - signalled,
        report_line: report_at - signalled,
        gone: gone_at - signalled,
        report,
    })
}

// ---------------------------------------------------------------------------------
// Analysis and report
// ---------------------------------------------------------------------------------

/// Throughput around the upgrades.
#[derive(Debug)]
struct Rates {
    /// Requests per bucket: median over counted buckets outside every window.
    steady: f64,
    steady_buckets: usize,
    /// Per upgrade: the worst bucket in its window, and how many were zero.
    worst: Vec<u64>,
    zeros: Vec<usize>,
    /// Per upgrade: requests missing against the steady rate over the window, in
    /// milliseconds of steady load.
    dip_ms: Vec<f64>,
}

fn rates(run: &ProtocolRun) -> Rates {
    let buckets = &run.tally.buckets;
    let first = bucket_of(WARMUP);
    // Only whole buckets before the clients were told to stop.
    let end = bucket_of(run.stopped - run.t0).min(buckets.len());
    let windows: Vec<(Duration, Duration)> = run
        .upgrades
        .iter()
        .map(|u| {
            let at = u.signalled - run.t0;
            (
                at.saturating_sub(WINDOW_BEFORE),
                (at + WINDOW_AFTER).max(at + u.gone),
            )
        })
        .collect();
    let overlaps = |i: usize, (from, to): (Duration, Duration)| {
        let start = BUCKET * i as u32;
        start < to && start + BUCKET > from
    };
    let count = |i: usize| buckets.get(i).copied().unwrap_or(0);
    let outside: Vec<f64> = (first..end)
        .filter(|&i| !windows.iter().any(|&w| overlaps(i, w)))
        .map(|i| count(i) as f64)
        .collect();
    let steady = median(outside.clone());
    let mut worst = Vec::new();
    let mut zeros = Vec::new();
    let mut dip_ms = Vec::new();
    for &w in &windows {
        let inside: Vec<u64> = (first..end)
            .filter(|&i| overlaps(i, w))
            .map(count)
            .collect();
        worst.push(inside.iter().copied().min().unwrap_or(0));
        zeros.push(inside.iter().filter(|&&n| n == 0).count());
        let missing: f64 = inside.iter().map(|&n| (steady - n as f64).max(0.0)).sum();
        dip_ms.push(missing / steady * BUCKET.as_secs_f64() * 1000.0);
    }
    Rates {
        steady,
        steady_buckets: outside.len(),
        worst,
        zeros,
        dip_ms,
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn check(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// Which upgrade window (1-based) an instant since the load began falls in, if any.
fn window_of(run: &ProtocolRun, at: Duration) -> Option<usize> {
    run.upgrades.iter().position(|u| {
        let sig = u.signalled - run.t0;
        at + WINDOW_BEFORE >= sig && at <= (sig + WINDOW_AFTER).max(sig + u.gone)
    })
}

/// The protocol's section, in markdown (which reads well on a console too).
fn section(run: &ProtocolRun) -> String {
    let mut out = String::new();
    let t = &run.tally;
    let r = rates(run);
    let n = run.upgrades.len();
    let secs = (run.stopped - run.t0).as_secs_f64();
    let _ = writeln!(
        out,
        "## `lameduck {}`: {n} upgrades under {CLIENTS} closed-loop keep-alive clients\n",
        run.protocol.name()
    );
    let _ = writeln!(
        out,
        "Load {secs:.1} s; {} requests answered, {} connects. Clients: {CLIENTS} std threads, \
         blocking sockets; the bench process used {:.2} cores, the whole machine {:.2} of {} \
         (load average at the end: {}). Upgrades one after the other: the next SIGUSR2 \
         {} ms after the old process is gone and at least {} s after the previous one.\n",
        t.answered,
        t.connects,
        run.bench_cores,
        run.machine_cores,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        run.loadavg,
        SETTLE.as_millis(),
        SPACING.as_secs(),
    );

    let _ = writeln!(out, "| whole run | count | target |");
    let _ = writeln!(out, "|---|---:|---|");
    let _ = writeln!(
        out,
        "| refused connects | {} | 0 {} |",
        t.refused,
        check(t.refused == 0)
    );
    let _ = writeln!(
        out,
        "| resets | {} | 0 {} |",
        t.resets,
        check(t.resets == 0)
    );
    let _ = writeln!(
        out,
        "| requests without a response | {} | 0 {} |",
        t.unanswered,
        check(t.unanswered == 0)
    );
    if t.stalled > 0 {
        let _ = writeln!(
            out,
            "| of which stalled {}s | {} | |",
            IO_TIMEOUT.as_secs(),
            t.stalled
        );
    }
    let _ = writeln!(
        out,
        "| corrupted replies | {} | 0 {} |",
        t.corrupt,
        check(t.corrupt == 0)
    );
    match run.protocol {
        Protocol::Echo => {
            let _ = writeln!(
                out,
                "| crossed the goodbye, sent again | {} | allowed |",
                t.crossed
            );
            let _ = writeln!(out, "| goodbye lines | {} | |", t.goodbyes);
        }
        Protocol::Http => {
            let _ = writeln!(
                out,
                "| answered with `Connection: close` | {} | |",
                t.goodbyes
            );
        }
    }
    if t.slow_close > 0 {
        let _ = writeln!(
            out,
            "| no EOF within {}s of a goodbye | {} | |",
            IO_TIMEOUT.as_secs(),
            t.slow_close
        );
    }
    let zero_total: usize = r.zeros.iter().sum();
    let worst_ratio: Vec<f64> = r.worst.iter().map(|&w| w as f64 / r.steady).collect();
    let (worst_at, worst_min) = worst_ratio
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or((0, f64::NAN), |(i, &v)| (i + 1, v));
    let _ = writeln!(
        out,
        "| 100 ms buckets at zero in upgrade windows | {zero_total} | 0 {} |",
        check(zero_total == 0)
    );
    let _ = writeln!(out);

    let _ = writeln!(out, "| per upgrade (n = {n}) | median | max |");
    let _ = writeln!(out, "|---|---:|---:|");
    let row = |out: &mut String, label: &str, values: Vec<f64>| {
        let _ = writeln!(
            out,
            "| {label} | {:.1} ms | {:.1} ms |",
            median(values.clone()),
            max(&values)
        );
    };
    let each = |f: fn(&Upgrade) -> Duration| -> Vec<f64> {
        run.upgrades.iter().map(|u| ms(f(u))).collect()
    };
    row(
        &mut out,
        "SIGUSR2 → the shell's `kill -USR2` answered (signal sent)",
        each(|u| u.signal_sent),
    );
    let logged = |f: fn(&Upgrade) -> Option<Duration>| -> Vec<f64> {
        run.upgrades.iter().filter_map(|u| f(u).map(ms)).collect()
    };
    row(
        &mut out,
        "SIGUSR2 → old process logged the new one started (exec done)",
        logged(|u| u.spawned),
    );
    row(
        &mut out,
        "SIGUSR2 → new process logged its inherited socket",
        logged(|u| u.inherited),
    );
    row(
        &mut out,
        "SIGUSR2 → new process `READY=1` (listening)",
        each(|u| u.ready),
    );
    row(
        &mut out,
        "SIGUSR2 → new process `listening on` line",
        each(|u| u.listening),
    );
    row(
        &mut out,
        "SIGUSR2 → `MAINPID=<new>` (old one heard ready)",
        each(|u| u.mainpid),
    );
    row(
        &mut out,
        "SIGUSR2 → old `stopped reason=upgrade` line",
        each(|u| u.report_line),
    );
    row(&mut out, "SIGUSR2 → old process exited", each(|u| u.gone));
    let drain: Vec<f64> = run
        .upgrades
        .iter()
        .filter_map(|u| field(&u.report, "drain_ms").parse().ok())
        .collect();
    row(&mut out, "old process's `drain_ms`", drain);
    row(
        &mut out,
        "throughput dip (requests missing vs steady, as ms of steady load)",
        r.dip_ms.clone(),
    );
    let _ = writeln!(out);

    let _ = writeln!(out, "| throughput, 100 ms buckets | |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(
        out,
        "| steady: median bucket outside upgrade windows | {:.0} req/s ({} buckets) |",
        r.steady * 10.0,
        r.steady_buckets
    );
    let _ = writeln!(
        out,
        "| worst bucket in any upgrade window | {worst_min:.2} × steady (upgrade {worst_at}) |"
    );
    let _ = writeln!(
        out,
        "| per-upgrade worst bucket, median | {:.2} × steady |",
        median(worst_ratio.clone())
    );
    let _ = writeln!(
        out,
        "| window | {} ms before SIGUSR2 to {} ms after, or to the old process's exit if later |",
        WINDOW_BEFORE.as_millis(),
        WINDOW_AFTER.as_millis()
    );
    let _ = writeln!(out);

    let mut per_window = vec![(0u64, 0u64, 0u64, 0u64); n];
    let mut outside = (0u64, 0u64, 0u64, 0u64);
    for event in &t.events {
        let slot = match window_of(run, event.at) {
            Some(i) => &mut per_window[i],
            None => &mut outside,
        };
        match event.kind {
            Kind::Refused => slot.0 += 1,
            Kind::Reset => slot.1 += 1,
            Kind::Unanswered => slot.2 += 1,
            Kind::Corrupt => slot.3 += 1,
        }
    }
    let _ = writeln!(
        out,
        "| # | old → new pid | ready | old exited | drained | outcome | worst bucket | refused/reset/no-resp/corrupt |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---|---:|---|");
    for (i, u) in run.upgrades.iter().enumerate() {
        let e = per_window[i];
        let _ = writeln!(
            out,
            "| {} | {} → {} | {:.1} ms | {:.1} ms | {} | {} {} | {:.2} | {}/{}/{}/{} |",
            i + 1,
            u.old_pid,
            u.new_pid,
            ms(u.ready),
            ms(u.gone),
            field(&u.report, "drained"),
            field(&u.report, "reason"),
            field(&u.report, "outcome"),
            worst_ratio[i],
            e.0,
            e.1,
            e.2,
            e.3,
        );
    }
    if outside != (0, 0, 0, 0) {
        let _ = writeln!(
            out,
            "| – | outside upgrade windows | | | | | | {}/{}/{}/{} |",
            outside.0, outside.1, outside.2, outside.3
        );
    }
    let _ = writeln!(out);
    let unclean: Vec<String> = run
        .upgrades
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            field(&u.report, "reason") != "upgrade"
                || field(&u.report, "outcome") != "clean"
                || field(&u.report, "forced") != "0"
        })
        .map(|(i, u)| format!("upgrade {}: {}", i + 1, u.report))
        .collect();
    if unclean.is_empty() {
        let _ = writeln!(
            out,
            "Every old process reported `reason=upgrade outcome=clean forced=0`."
        );
    } else {
        let _ = writeln!(out, "Old processes that did not stop clean:");
        for line in unclean {
            let _ = writeln!(out, "- {line}");
        }
    }
    let _ = writeln!(out, "Last process, on SIGTERM: `{}`", run.final_report);
    if run.stuck_clients > 0 {
        let _ = writeln!(
            out,
            "{} clients had not returned {}s after the stop (detached).",
            run.stuck_clients,
            IO_TIMEOUT.as_secs() + 2
        );
    }
    if !t.events.is_empty() {
        let mut events: Vec<&Event> = t.events.iter().collect();
        events.sort_by_key(|event| event.at);
        let _ = writeln!(out, "\nFirst failures (time since the load began):");
        for event in events.into_iter().take(8) {
            let window = window_of(run, event.at).map_or_else(
                || "outside windows".to_string(),
                |i| format!("upgrade {}", i + 1),
            );
            let _ = writeln!(
                out,
                "- {:.3} s ({window}) {}: {}",
                event.at.as_secs_f64(),
                event.kind.name(),
                event.detail
            );
        }
    }
    let noteworthy: Vec<&String> = run
        .stderr
        .iter()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    if !noteworthy.is_empty() {
        let _ = writeln!(
            out,
            "\nServer warnings and errors ({} lines; first 5):",
            noteworthy.len()
        );
        for line in noteworthy.iter().take(5) {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// `target/upgrade.md`; a failure to write is reported, not fatal.
fn write_markdown(text: &str) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = dir.join("upgrade.md");
    match fs::write(&path, text) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(err) => eprintln!("cannot write {}: {err}", path.display()),
    }
}

/// A directory of the bench's own, removed at the end.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we know,
    // and gets the quick run.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let upgrades = if quick { 5 } else { 20 };

    let dir = TempDir(
        std::env::temp_dir().join(format!("lameduck-upgrade-bench-{}", std::process::id())),
    );
    let _ = fs::remove_dir_all(&dir.0);
    // A stable path of our own: the upgrades start the file found there.
    let binary = dir.0.join("lameduck");
    let copied = fs::create_dir_all(&dir.0)
        .and_then(|()| fs::copy(env!("CARGO_BIN_EXE_lameduck"), &binary))
        .and_then(|_| fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)));
    if let Err(err) = copied {
        eprintln!("cannot copy the binary to {}: {err}", binary.display());
        return std::process::ExitCode::FAILURE;
    }

    let machine = procfs::Machine::detect();
    let mut text = format!(
        "# Upgrades under load ({} mode: {upgrades} SIGUSR2 upgrades per protocol)\n\n{}\n\
         load average before: {}\n\n",
        if quick { "quick" } else { "full" },
        machine.line(),
        procfs::loadavg()
    );
    print!("{text}");
    let mut failed = false;
    for protocol in [Protocol::Echo, Protocol::Http] {
        match run_protocol(protocol, upgrades, &binary, &dir.0) {
            Ok(run) => {
                let part = section(&run);
                print!("{part}");
                println!();
                text.push_str(&part);
                text.push('\n');
            }
            Err(err) => {
                failed = true;
                let part = format!("## `lameduck {}`: FAILED\n\n{err}\n\n", protocol.name());
                print!("{part}");
                text.push_str(&part);
            }
        }
    }
    write_markdown(&text);
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
