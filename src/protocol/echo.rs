//! The echo line protocol: `Echo: <line, trimmed>\r\n` for every line.
//!
//! Lines are framed on raw bytes, never decoded, so invalid UTF-8 is echoed like any
//! other byte. Replies to every complete line in one read are batched into one write.
//! The pending buffer never holds more than `max_line` bytes plus one read, whatever
//! the client sends, and a line must arrive whole within the line timeout of its
//! first byte, so a client dripping a line cannot hold a worker (HTTP's header
//! timeout, for lines).

use std::io;
use std::time::{Duration, Instant};

use crate::server::Handler;
use crate::server::{Connection, Received};

/// The reply to a line longer than the limit; the connection is then closed.
pub const LINE_TOO_LONG: &[u8] = b"Error: line too long\r\n";
/// The reply to a line not complete within the line timeout of its first byte; the
/// connection is then closed.
pub const LINE_TIMEOUT: &[u8] = b"Error: line timeout\r\n";
/// The reply to a client quiet for the idle timeout; the connection is then closed.
pub const IDLE_TIMEOUT: &[u8] = b"Error: idle timeout\r\n";
/// The reply to a client turned away because the server is full.
pub const SERVER_BUSY: &[u8] = b"Error: server busy\r\n";
/// The default goodbye line, without its `\r\n`.
pub const DEFAULT_GOODBYE: &str = "Server is shutting down. Goodbye!";

/// The default of [`Echo::line_timeout`]: HTTP's header timeout, for the same
/// attack. A person typing into `nc` sends a line whole when they press Enter, so
/// only a client that drips a line byte by byte comes near it.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// How much one read asks for.
const READ_CHUNK: usize = 8 * 1024;

/// Python's `bytes.strip()` / ASCII `str.strip()` whitespace: space, `\t`, `\n`,
/// `\v`, `\f`, `\r` and the separators `\x1c`–`\x1f`.
fn is_strip_space(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f
    )
}

/// `line` without the whitespace the tutorial's `str.strip()` removes.
pub fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|&b| !is_strip_space(b))
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|&b| !is_strip_space(b))
        .map_or(start, |i| i + 1);
    &line[start..end]
}

/// Appends the reply to `line` to `out`.
pub fn reply_to(line: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"Echo: ");
    out.extend_from_slice(trim(line));
    out.extend_from_slice(b"\r\n");
}

/// Outcome of framing the pending bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// Every complete line was answered; the rest waits for more bytes.
    Ok,
    /// A line is longer than the limit.
    TooLong,
}

struct Answered {
    /// Bytes up to and including the last `\n` answered.
    consumed: usize,
    framed: Framed,
}

/// Answers every complete line in `buf`, searching for newlines from `from` (the
/// bytes before it are known to hold none).
fn answer_lines(buf: &[u8], from: usize, max_line: usize, out: &mut Vec<u8>) -> Answered {
    let mut start = 0;
    let mut from = from;
    while let Some(offset) = buf[from..].iter().position(|&b| b == b'\n') {
        let end = from + offset;
        if end - start > max_line {
            return Answered {
                consumed: start,
                framed: Framed::TooLong,
            };
        }
        reply_to(&buf[start..end], out);
        start = end + 1;
        from = start;
    }
    Answered {
        consumed: start,
        framed: Framed::Ok,
    }
}

/// Line framing over a growing buffer: answers each complete line and keeps the
/// incomplete tail, remembering how far it has been searched so a long line arriving
/// in many reads is scanned once, not once per read.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
    searched: usize,
}

impl Lines {
    /// An empty framer.
    pub fn new() -> Lines {
        Lines::default()
    }

    /// The incomplete line received so far.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Appends `bytes`, answers every line they complete into `out`, and checks the
    /// limit: a line (without its `\n`) may be at most `max_line` bytes.
    pub fn feed(&mut self, bytes: &[u8], max_line: usize, out: &mut Vec<u8>) -> Framed {
        let framed = if self.pending.is_empty() {
            // The usual case, whole lines per read: answer them straight from the
            // read buffer and keep only the incomplete tail.
            let answered = answer_lines(bytes, 0, max_line, out);
            self.pending.extend_from_slice(&bytes[answered.consumed..]);
            answered.framed
        } else {
            self.pending.extend_from_slice(bytes);
            let answered = answer_lines(&self.pending, self.searched, max_line, out);
            self.pending.drain(..answered.consumed);
            answered.framed
        };
        self.searched = self.pending.len();
        if framed == Framed::Ok && self.pending.len() > max_line {
            return Framed::TooLong;
        }
        framed
    }

    /// Answers the final line a client sent without `\n` before closing, if any.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            reply_to(&self.pending, out);
            self.pending.clear();
            self.searched = 0;
        }
    }
}

/// When the line in progress began, to cut off one that arrives too slowly.
#[derive(Debug, Default)]
struct LineClock {
    started: Option<Instant>,
}

impl LineClock {
    /// After bytes that arrived at `now` were framed: `completed` if they ended at
    /// least one line, `pending` if part of a line is left waiting for its end.
    fn framed(&mut self, now: Instant, completed: bool, pending: bool) {
        self.started = match (pending, completed) {
            (false, _) => None,
            // The line left over began in these bytes.
            (true, true) => Some(now),
            (true, false) => self.started.or(Some(now)),
        };
    }

    /// When the line in progress runs out of time; `None` without one (or with a
    /// timeout too large to add to an instant, which is none at all).
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.started
            .and_then(|started| started.checked_add(timeout))
    }

    fn expired(&self, now: Instant, timeout: Duration) -> bool {
        self.deadline(timeout)
            .is_some_and(|deadline| now >= deadline)
    }
}

/// The echo server's handler.
#[derive(Debug, Clone)]
pub struct Echo {
    max_line: usize,
    idle_timeout: Duration,
    line_timeout: Duration,
    goodbye: Vec<u8>,
}

impl Default for Echo {
    fn default() -> Self {
        Echo::new()
    }
}

impl Echo {
    /// The default limits: 64 KiB lines, 5 minutes idle, 10 seconds per line, the
    /// tutorial's goodbye.
    pub fn new() -> Echo {
        Echo {
            max_line: 64 * 1024,
            idle_timeout: Duration::from_secs(300),
            line_timeout: DEFAULT_LINE_TIMEOUT,
            goodbye: format!("{DEFAULT_GOODBYE}\r\n").into_bytes(),
        }
    }

    /// Longest accepted line in bytes, without its `\n`. Default 64 KiB.
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// How long a client may stay quiet before it is told so and closed. Default 5 min.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a line may take to arrive whole, counted from its first byte; past
    /// it the client gets `Error: line timeout` and the connection is closed
    /// gracefully. Time between lines is the idle timeout's. Default
    /// [`DEFAULT_LINE_TIMEOUT`] (10 s).
    pub fn line_timeout(mut self, timeout: Duration) -> Self {
        self.line_timeout = timeout;
        self
    }

    /// When the next read must return: at the idle timeout, or sooner at the end
    /// of the line in progress.
    fn deadline(&self, last_heard: Instant, line: &LineClock) -> Option<Instant> {
        let idle = last_heard.checked_add(self.idle_timeout);
        match (idle, line.deadline(self.line_timeout)) {
            (Some(idle), Some(line)) => Some(idle.min(line)),
            (idle, line) => idle.or(line),
        }
    }

    /// The goodbye line sent on shutdown; `\r\n` is added. Default
    /// `Server is shutting down. Goodbye!`. [`Handler::goodbye`] returns it, with
    /// its `\r\n`, as the bytes the server sends.
    pub fn goodbye_line(mut self, text: &str) -> Self {
        self.goodbye = format!("{text}\r\n").into_bytes();
        self
    }

    fn say_goodbye(
        &self,
        conn: &mut Connection,
        lines: &mut Lines,
        chunk: &mut [u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        // Lines already in the receive buffer were sent before the goodbye could
        // reach the client: they are owed a reply. One read, not a loop, so a chatty
        // client cannot hold the drain open.
        match conn.read_pending(chunk)? {
            Received::Data(n) => {
                if lines.feed(&chunk[..n], self.max_line, out) == Framed::TooLong {
                    out.extend_from_slice(LINE_TOO_LONG);
                    return conn.write_all(out);
                }
            }
            Received::Eof => lines.finish(out),
            Received::Quiet | Received::Deadline | Received::Draining | Received::Dismissed => {}
        }
        out.extend_from_slice(&self.goodbye);
        conn.write_all(out)
    }
}

impl Handler for Echo {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        let mut lines = Lines::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut out = Vec::new();
        let mut last_heard = Instant::now();
        let mut line = LineClock::default();
        conn.set_deadline(self.deadline(last_heard, &line));
        loop {
            out.clear();
            if conn.is_draining() {
                return self.say_goodbye(conn, &mut lines, &mut chunk, &mut out);
            }
            match conn.read_request(&mut chunk)? {
                Received::Data(n) => {
                    last_heard = Instant::now();
                    let framed = lines.feed(&chunk[..n], self.max_line, &mut out);
                    if framed == Framed::TooLong {
                        out.extend_from_slice(LINE_TOO_LONG);
                        return conn.write_all(&out);
                    }
                    // Replies in `out` mean these bytes ended at least one line.
                    line.framed(last_heard, !out.is_empty(), !lines.pending().is_empty());
                    // A client dripping a byte per read never lets a read time out:
                    // the clock is checked on data too.
                    if line.expired(last_heard, self.line_timeout) {
                        out.extend_from_slice(LINE_TIMEOUT);
                        return conn.write_all(&out);
                    }
                    conn.set_deadline(self.deadline(last_heard, &line));
                    conn.write_all(&out)?;
                }
                Received::Eof => {
                    lines.finish(&mut out);
                    return conn.write_all(&out);
                }
                Received::Quiet | Received::Deadline => {
                    if line.expired(Instant::now(), self.line_timeout) {
                        return conn.write_all(LINE_TIMEOUT);
                    }
                    if last_heard.elapsed() >= self.idle_timeout {
                        return conn.write_all(IDLE_TIMEOUT);
                    }
                }
                Received::Draining => {
                    return self.say_goodbye(conn, &mut lines, &mut chunk, &mut out)
                }
                Received::Dismissed => return Ok(()),
            }
        }
    }

    fn busy_reply(&self) -> &[u8] {
        SERVER_BUSY
    }

    fn goodbye(&self) -> &[u8] {
        &self.goodbye
    }
}

#[cfg(test)]
mod tests;
