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
use super::report::{Conn, End};

/// Longest one blocking read waits before it looks at the clock again.
const READ_SLICE: Duration = Duration::from_millis(250);

/// What the buffer holds at its front.
#[derive(Debug, PartialEq, Eq)]
enum Framed {
    /// Not a whole response yet.
    Partial,
    /// A `1xx` head of this many bytes: skipped.
    Interim(usize),
    /// A final response of this many bytes.
    Whole {
        len: usize,
        status: u16,
        close: bool,
    },
    /// A final response whose body runs to the end of the connection.
    ToEof { status: u16 },
    /// Not HTTP: the text of its first line.
    Bad(String),
}

/// Frames the response at the front of `buf`.
fn frame(buf: &[u8]) -> Framed {
    let Some(head_end) = find(buf, b"\r\n\r\n", 0) else {
        return if buf.len() > 64 << 10 || (buf.len() >= 5 && !buf.starts_with(b"HTTP/")) {
            Framed::Bad(first_line(buf))
        } else {
            Framed::Partial
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    let status = words.next().and_then(|code| code.parse::<u16>().ok());
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Framed::Bad(first_line(buf));
    };
    let body_at = head_end + 4;
    if (100..200).contains(&status) {
        return Framed::Interim(body_at);
    }
    let (mut length, mut chunked, mut close) = (None, false, version == "HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.split(',').any(|t| t.trim() == "chunked"),
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    match token {
                        "close" => close = true,
                        "keep-alive" => close = false,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if status == 204 || status == 304 {
        length = Some(0);
    }
    if chunked {
        return match chunked_end(buf, body_at) {
            Some(Ok(len)) => Framed::Whole { len, status, close },
            Some(Err(())) => Framed::Bad("malformed chunked body".into()),
            None => Framed::Partial,
        };
    }
    match length {
        Some(n) if buf.len() >= body_at + n => Framed::Whole {
            len: body_at + n,
            status,
            close,
        },
        Some(_) => Framed::Partial,
        None => Framed::ToEof { status },
    }
}

/// Where a chunked body starting at `at` ends: `None` if not yet in `buf`.
fn chunked_end(buf: &[u8], mut at: usize) -> Option<Result<usize, ()>> {
    loop {
        let line_end = find(buf, b"\r\n", at)?;
        let text = String::from_utf8_lossy(&buf[at..line_end]);
        let size_text = text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Some(Err(()));
        };
        at = line_end + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            if buf.len() >= at + 2 && buf[at..].starts_with(b"\r\n") {
                return Some(Ok(at + 2));
            }
            return find(buf, b"\r\n\r\n", at.saturating_sub(2)).map(|end| Ok(end + 4));
        }
        at = at.checked_add(size)?.checked_add(2)?;
        if buf.len() < at {
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

fn first_line(buf: &[u8]) -> String {
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line).chars().take(60).collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_length_chunks_or_eof() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(
            frame(ok),
            Framed::Whole {
                len: ok.len(),
                status: 200,
                close: false
            }
        );
        assert_eq!(frame(&ok[..ok.len() - 1]), Framed::Partial);
        let chunked =
            b"HTTP/1.1 503 x\r\nTransfer-Encoding: chunked\r\nConnection: Close\r\n\r\n2\r\nhi\r\n0\r\n\r\nHTTP";
        assert_eq!(
            frame(chunked),
            Framed::Whole {
                len: chunked.len() - 4,
                status: 503,
                close: true
            }
        );
        assert_eq!(frame(b"HTTP/1.1 100 Continue\r\n\r\n"), Framed::Interim(25));
        assert_eq!(
            frame(b"HTTP/1.0 200 OK\r\n\r\nbody"),
            Framed::ToEof { status: 200 }
        );
        assert!(matches!(frame(b"Echo: hi\r\n"), Framed::Bad(_)));
    }
}
