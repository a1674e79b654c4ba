//! The probe's HTTP/1.1 client: one blocking socket per connection, every read bounded
//! by the run's hard stop, every response framed (`Content-Length`, chunked, or to the
//! end of the connection), interim `1xx` responses skipped. A final response answers
//! the oldest unanswered request whatever its status; one carrying `Connection: close`
//! is also the goodbye. The end is told apart as for the line protocol: FIN, RST, or
//! still open.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::clients::{Ctx, Event, Exchange};
use super::http_frame::{frame, Framed};
use super::report::{Conn, End};

/// Longest one blocking read waits before it looks at the clock again.
const READ_SLICE: Duration = Duration::from_millis(250);

/// An HTTP connection and its record.
pub struct HttpConn<'a> {
    ctx: &'a Ctx,
    stream: TcpStream,
    buf: Vec<u8>,
    pub rec: Conn,
    pub first_reply_at: Option<Instant>,
    /// Statuses of the responses, in order of arrival (the first few dozen).
    pub statuses: Vec<u16>,
    pub ended: bool,
    /// At most this many bytes a read, and this long a pause before each: a slow
    /// reader on purpose.
    read_size: usize,
    read_pause: Duration,
}

impl<'a> HttpConn<'a> {
    /// Connects, or returns the record of a connection that never was.
    pub fn connect(ctx: &'a Ctx) -> Result<HttpConn<'a>, Conn> {
        super::clients::connect(ctx).map(|stream| HttpConn::from_stream(ctx, stream))
    }

    pub fn from_stream(ctx: &'a Ctx, stream: TcpStream) -> HttpConn<'a> {
        let _ = stream.set_nodelay(true);
        HttpConn {
            ctx,
            stream,
            buf: Vec::new(),
            rec: Conn::new(),
            first_reply_at: None,
            statuses: Vec::new(),
            ended: false,
            read_size: 16 << 10,
            read_pause: Duration::ZERO,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads at most `size` bytes at a time, after a `pause` each time.
    pub fn read_slowly(&mut self, size: usize, pause: Duration) {
        self.read_size = size.max(1);
        self.read_pause = pause;
    }

    /// `GET <path>` with keep-alive (HTTP/1.1's default).
    pub fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: lameduck-probe\r\n\r\n")
            .into_bytes()
    }

    /// Counts `count` requests as written whole now.
    pub fn count_sent(&mut self, count: u64) {
        self.rec.sent += count;
        if self.ctx.signal_at.get().is_none() {
            self.rec.sent_before_signal += count;
        }
    }

    /// Writes `bytes` (`count` whole requests); false if the write failed (the end is
    /// then read, not guessed).
    pub fn send_raw(&mut self, bytes: &[u8], count: u64) -> bool {
        let _ = self.stream.set_write_timeout(Some(Duration::from_secs(5)));
        match self.stream.write_all(bytes) {
            Ok(()) => {
                self.count_sent(count);
                true
            }
            Err(_) => false,
        }
    }

    /// Writes `count` pipelined `GET`s of the probe's path in one write.
    pub fn send(&mut self, count: u64) -> bool {
        let one = HttpConn::get(self.ctx.addr, &self.ctx.path);
        let bytes = one.repeat(usize::try_from(count).unwrap_or(1));
        self.send_raw(&bytes, count)
    }

    fn end(&mut self, end: End) -> Event {
        self.ended = true;
        self.rec.end = end;
        match self.ctx.since_signal(Instant::now()) {
            Some(after) => self.rec.closed_after = Some(after),
            None => self.rec.open_at_signal = false,
        }
        Event::End
    }

    /// One read into the buffer: `Some(event)` when the connection ended.
    fn fill(&mut self) -> Option<Event> {
        let mut chunk = vec![0u8; self.read_size];
        loop {
            let now = Instant::now();
            if now >= self.ctx.stop {
                return Some(self.end(End::Open));
            }
            if !self.read_pause.is_zero() {
                // Slow on purpose: a client on a thin link.
                thread::sleep(self.read_pause);
            }
            let slice = (self.ctx.stop - now).min(READ_SLICE);
            let _ = self.stream.set_read_timeout(Some(slice));
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(self.end(End::Fin)),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return None;
                }
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => continue,
                    _ => return Some(self.end(End::Reset)),
                },
            }
        }
    }

    /// Counts a final response: the reply to the oldest unanswered request.
    fn response(&mut self, status: u16, close: bool) -> Event {
        if self.statuses.len() < 64 {
            self.statuses.push(status);
        }
        if self.rec.goodbyes > 0 {
            self.rec.after_goodbye += 1;
        }
        if self.rec.replies < self.rec.sent {
            self.rec.replies += 1;
            self.first_reply_at.get_or_insert_with(Instant::now);
        } else {
            self.wrong(&format!("an unrequested response, status {status}"));
            return Event::Other;
        }
        if close {
            self.rec.goodbyes += 1;
            return Event::Goodbye;
        }
        Event::Reply
    }

    fn wrong(&mut self, what: &str) {
        self.rec.wrong += 1;
        if self.rec.first_wrong.is_none() {
            self.rec.first_wrong = Some(what.to_string());
        }
    }

    /// Reads and frames the next response, or the end.
    pub fn next(&mut self) -> Event {
        if self.ended {
            return Event::End;
        }
        loop {
            match frame(&self.buf) {
                Framed::Whole { len, status, close } => {
                    self.buf.drain(..len);
                    return self.response(status, close);
                }
                Framed::Interim(len) => {
                    self.buf.drain(..len);
                }
                Framed::Bad(line) => {
                    self.buf.clear();
                    self.wrong(&line);
                    // Framing is lost: nothing after this can be trusted.
                    let _ = self.stream.shutdown(std::net::Shutdown::Both);
                    return self.end(End::Open);
                }
                Framed::ToEof { status } => {
                    if let Some(end) = self.fill() {
                        // Its end is the response's end: a FIN completes it.
                        if self.rec.end == End::Fin {
                            self.buf.clear();
                            self.response(status, true);
                        }
                        return end;
                    }
                }
                Framed::Partial => {
                    if let Some(end) = self.fill() {
                        return end;
                    }
                }
            }
        }
    }

    /// Reads until every request sent so far is answered, or the goodbye, or the end.
    pub fn until_answered(&mut self) -> Event {
        while self.rec.replies < self.rec.sent {
            match self.next() {
                Event::Reply | Event::Other => {}
                other => return other,
            }
        }
        Event::Reply
    }

    /// Reads to the end and hands over the record.
    pub fn finish(mut self) -> Conn {
        while self.next() != Event::End {}
        self.rec
    }
}

impl Exchange for HttpConn<'_> {
    fn send(&mut self, count: u64) -> bool {
        HttpConn::send(self, count)
    }
    fn until_answered(&mut self) -> Event {
        HttpConn::until_answered(self)
    }
    fn stream(&self) -> &TcpStream {
        HttpConn::stream(self)
    }
    fn finish(self: Box<Self>) -> Conn {
        HttpConn::finish(*self)
    }
}
