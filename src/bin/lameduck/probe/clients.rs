//! The probe's line-protocol client: one blocking socket per connection, every read
//! bounded by the run's hard stop, every line checked — the expected reply to the
//! oldest unanswered request, the goodbye, or something wrong — and the end told apart:
//! FIN, RST, or still open.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::report::{Conn, End};

/// What every client of one trial shares.
pub struct Ctx {
    pub addr: SocketAddr,
    /// The reply to a request, `{}` standing for the request text.
    pub template: String,
    /// HTTP: the path every `GET` asks for.
    pub path: String,
    /// The goodbye line, without `\r\n`; `None` when the protocol has none.
    pub goodbye: Option<Vec<u8>>,
    /// Set just before the signal is sent: a request written after it may cross.
    pub signal_at: OnceLock<Instant>,
    /// Disconnected at the signal: wakes every client waiting for it.
    pub signalled: Receiver<()>,
    /// Disconnected once the server has exited (or was killed).
    pub server_gone: Receiver<()>,
    /// Nothing reads past this, whatever the server does.
    pub stop: Instant,
}

impl Ctx {
    /// Time since the signal, if it has been sent.
    pub fn since_signal(&self, now: Instant) -> Option<Duration> {
        self.signal_at
            .get()
            .map(|at| now.saturating_duration_since(*at))
    }

    /// Blocks until the signal (or the hard stop).
    pub fn wait_signal(&self) {
        let _ = self.signalled.recv_deadline(self.stop);
    }
}

/// What one read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Reply,
    Goodbye,
    Other,
    End,
}

/// Longest one blocking read waits before it looks at the clock again.
const READ_SLICE: Duration = Duration::from_millis(250);

/// Connects to the server under test, or returns the record of a connection that
/// never was.
pub fn connect(ctx: &Ctx) -> Result<TcpStream, Conn> {
    TcpStream::connect_timeout(&ctx.addr, Duration::from_secs(5)).map_err(|_| {
        let mut rec = Conn::new();
        rec.end = End::NoConnect;
        rec.open_at_signal = false;
        rec
    })
}

/// What a scenario that works the same over either protocol needs of a connection.
pub trait Exchange {
    /// Writes `count` more requests; false once the connection is gone.
    fn send(&mut self, count: u64) -> bool;
    /// Reads until the outstanding requests are answered (or the connection ends).
    fn until_answered(&mut self) -> Event;
    fn stream(&self) -> &TcpStream;
    /// Reads to the end and returns what the connection saw.
    fn finish(self: Box<Self>) -> Conn;
}

impl Exchange for LineConn<'_> {
    fn send(&mut self, count: u64) -> bool {
        LineConn::send(self, count)
    }
    fn until_answered(&mut self) -> Event {
        LineConn::until_answered(self)
    }
    fn stream(&self) -> &TcpStream {
        LineConn::stream(self)
    }
    fn finish(self: Box<Self>) -> Conn {
        LineConn::finish(*self)
    }
}

/// A line-protocol connection and its record.
pub struct LineConn<'a> {
    ctx: &'a Ctx,
    id: String,
    reader: BufReader<TcpStream>,
    line: Vec<u8>,
    pub rec: Conn,
    pub first_reply_at: Option<Instant>,
    pub ended: bool,
}

impl<'a> LineConn<'a> {
    /// Connects, or returns the record of a connection that never was.
    pub fn connect(ctx: &'a Ctx, id: String) -> Result<LineConn<'a>, Conn> {
        connect(ctx).map(|stream| LineConn::from_stream(ctx, id, stream))
    }

    pub fn from_stream(ctx: &'a Ctx, id: String, stream: TcpStream) -> LineConn<'a> {
        let _ = stream.set_nodelay(true);
        LineConn {
            ctx,
            id,
            reader: BufReader::new(stream),
            line: Vec::new(),
            rec: Conn::new(),
            first_reply_at: None,
            ended: false,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// The `n`th request's text: fixed width, so a byte count says how many went out.
    pub fn request(&self, n: u64) -> String {
        format!("ping {}-{n:08}", self.id)
    }

    /// The next `count` requests as one buffer.
    pub fn batch(&self, count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for n in self.rec.sent..self.rec.sent + count {
            out.extend_from_slice(self.request(n).as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Counts `count` requests as written whole now.
    pub fn count_sent(&mut self, count: u64) {
        self.rec.sent += count;
        if self.ctx.signal_at.get().is_none() {
            self.rec.sent_before_signal += count;
        }
    }

    /// Writes the next `count` requests in one write; false if the write failed (the
    /// end is then read, not guessed).
    pub fn send(&mut self, count: u64) -> bool {
        let bytes = self.batch(count);
        let _ = self
            .stream()
            .set_write_timeout(Some(Duration::from_secs(5)));
        let result = self.reader.get_mut().write_all(&bytes);
        match result {
            Ok(()) => {
                self.count_sent(count);
                true
            }
            Err(_) => false,
        }
    }

    fn end(&mut self, end: End) -> Event {
        let now = Instant::now();
        self.ended = true;
        self.rec.end = end;
        match self.ctx.since_signal(now) {
            Some(after) => self.rec.closed_after = Some(after),
            None => self.rec.open_at_signal = false,
        }
        Event::End
    }

    /// Reads and classifies the next line, or the end.
    pub fn next(&mut self) -> Event {
        if self.ended {
            return Event::End;
        }
        loop {
            let now = Instant::now();
            if now >= self.ctx.stop {
                return self.end(End::Open);
            }
            let slice = (self.ctx.stop - now).min(READ_SLICE);
            let _ = self.stream().set_read_timeout(Some(slice));
            // `read_until` keeps what it read before a timeout in `self.line`.
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => return self.end(End::Fin),
                Ok(_) if self.line.ends_with(b"\n") => {
                    let line = std::mem::take(&mut self.line);
                    return self.classify(&line);
                }
                // A last line without `\n` before EOF: the next read says EOF.
                Ok(_) => continue,
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe => return self.end(End::Reset),
                    _ => return self.end(End::Reset),
                },
            }
        }
    }

    fn classify(&mut self, raw: &[u8]) -> Event {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.ctx.goodbye.as_deref() == Some(line) {
            self.rec.goodbyes += 1;
            return Event::Goodbye;
        }
        let expected = self
            .ctx
            .template
            .replace("{}", &self.request(self.rec.replies));
        let after_goodbye = self.rec.goodbyes > 0;
        if after_goodbye {
            self.rec.after_goodbye += 1;
        }
        if line == expected.as_bytes() && self.rec.replies < self.rec.sent {
            self.rec.replies += 1;
            self.first_reply_at.get_or_insert_with(Instant::now);
            Event::Reply
        } else {
            if !after_goodbye {
                self.rec.wrong += 1;
                if self.rec.first_wrong.is_none() {
                    let text = String::from_utf8_lossy(line);
                    self.rec.first_wrong = Some(text.chars().take(60).collect());
                }
            }
            Event::Other
        }
    }

    /// Reads until the replies to every request sent so far are in, or the goodbye,
    /// or the end. Returns the event that stopped it.
    pub fn until_answered(&mut self) -> Event {
        while self.rec.replies < self.rec.sent {
            match self.next() {
                Event::Reply | Event::Other => {}
                other => return other,
            }
        }
        Event::Reply
    }

    /// Reads the complete lines already received: a goodbye that came in the same
    /// segment as the last reply is seen before the next request goes out (as an
    /// event-loop client, which reads all it has, sees it).
    pub fn read_buffered(&mut self) {
        while !self.ended && self.reader.buffer().contains(&b'\n') {
            self.next();
        }
    }

    /// Reads whatever comes until the connection ends (or the hard stop).
    pub fn drain(&mut self) {
        while self.next() != Event::End {}
    }

    /// Reads to the end and hands over the record.
    pub fn finish(mut self) -> Conn {
        self.drain();
        self.rec
    }
}
