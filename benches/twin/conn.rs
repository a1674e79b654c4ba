//! One connection of the async twin: the echo line protocol, the drain step (answer
//! what was received, one non-blocking read of the socket buffer, goodbye after the
//! last reply) and the graceful close (FIN, read and discard for a linger, close).
//! Replies to all the lines of one read go out in one write, through buffers the task
//! keeps for its whole life.

use std::io::Read;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Config, Phase};

/// Bytes asked of the kernel per read; replies go out in one write per read.
const READ_CHUNK: usize = 8 * 1024;

/// Why the serving loop ended.
enum End {
    /// The client closed its side; everything it sent has been answered.
    ClientEof,
    /// A line over the limit; the error line has been written.
    TooLong,
    /// Draining began: finish up, say goodbye.
    Draining,
    /// The connection broke (reset, broken pipe): nothing more can be sent.
    Broken,
}

/// Serves one connection to its end. Errors end the connection, never the server.
pub async fn serve(mut stream: TcpStream, mut phase: watch::Receiver<Phase>, cfg: Config) {
    // Replies are small and the client waits for each: Nagle would add 40 ms stalls.
    let _ = stream.set_nodelay(true);
    let mut inbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);

    let end = serve_lines(&mut stream, &mut phase, &cfg, &mut inbuf, &mut out).await;
    match end {
        End::Broken => return,
        End::ClientEof | End::TooLong => {}
        End::Draining => {
            // Lines already in the socket buffer were sent before the goodbye could be
            // seen, so they are owed an answer. One read, not a loop: a chatty client
            // must not hold the drain open. tokio's `try_read` only reads when the
            // reactor has already reported readiness, which can lag the kernel by one
            // poll; read the socket directly (it is non-blocking) to see what is there.
            let start = inbuf.len();
            inbuf.resize(start + READ_CHUNK, 0);
            let sock = socket2::SockRef::from(&stream);
            let (n, eof) = match (&*sock).read(&mut inbuf[start..]) {
                Ok(0) => (0, true),
                Ok(n) => (n, false),
                Err(_) => (0, false),
            };
            inbuf.truncate(start + n);
            let (_, too_long) = answer_lines(&inbuf, &mut out, cfg.max_line, eof);
            if too_long {
                out.extend_from_slice(b"Error: line too long\r\n");
            } else {
                out.extend_from_slice(cfg.goodbye.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    }
    close_gracefully(stream, cfg.linger).await;
}

/// The serving loop: read, answer every complete line in one write, until the client
/// leaves, a line is too long, the connection breaks, or draining begins.
async fn serve_lines(
    stream: &mut TcpStream,
    phase: &mut watch::Receiver<Phase>,
    cfg: &Config,
    inbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> End {
    // A connection taken from the backlog after the broadcast must not wait for a
    // change that has already happened.
    if *phase.borrow_and_update() == Phase::Draining {
        return End::Draining;
    }
    loop {
        inbuf.reserve(READ_CHUNK);
        let read = tokio::select! {
            // Shutdown first: a client that always has data ready must not hide it.
            biased;
            changed = phase.changed() => {
                // A dropped sender means the server is going away: drain too.
                if changed.is_err() || *phase.borrow_and_update() == Phase::Draining {
                    return End::Draining;
                }
                continue;
            }
            // `read_buf` is cancel-safe: losing the race to `changed` loses no bytes.
            read = stream.read_buf(inbuf) => read,
        };
        let eof = match read {
            Ok(0) => true,
            Ok(_) => false,
            Err(_) => return End::Broken,
        };
        let (consumed, too_long) = answer_lines(inbuf, out, cfg.max_line, eof);
        if too_long {
            out.extend_from_slice(b"Error: line too long\r\n");
        }
        if !out.is_empty() {
            // The request in progress is finished even if draining begins meanwhile:
            // this write is not raced against the shutdown broadcast.
            if stream.write_all(out).await.is_err() {
                return End::Broken;
            }
            out.clear();
        }
        if too_long {
            return End::TooLong;
        }
        if eof {
            return End::ClientEof;
        }
        inbuf.drain(..consumed);
    }
}

/// Appends the reply to every complete line of `buf` to `out` and returns how many
/// bytes were consumed, and whether a line over `max_line` was found (the lines before
/// it are answered). At EOF the unterminated rest is a line too.
pub fn answer_lines(buf: &[u8], out: &mut Vec<u8>, max_line: usize, eof: bool) -> (usize, bool) {
    let mut start = 0;
    while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + pos];
        if line.len() > max_line {
            return (start, true);
        }
        echo(line, out);
        start += pos + 1;
    }
    let rest = &buf[start..];
    if rest.len() > max_line {
        return (start, true);
    }
    if eof && !rest.is_empty() {
        echo(rest, out);
        start = buf.len();
    }
    (start, false)
}

fn echo(line: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"Echo: ");
    out.extend_from_slice(strip(line));
    out.extend_from_slice(b"\r\n");
}

/// Python's `bytes.strip()`/`str.strip()` on ASCII: note `\v` and `\x1c`–`\x1f`, which
/// `u8::is_ascii_whitespace` does not count.
fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f)
}

fn strip(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|&b| !is_py_space(b))
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|&b| !is_py_space(b))
        .map_or(start, |i| i + 1);
    &line[start..end]
}

/// FIN first, so the client sees every reply and then EOF; then read and discard what
/// it still sends for `linger`, because closing with unread data would send an RST
/// that can destroy replies the client has not read yet.
async fn close_gracefully(mut stream: TcpStream, linger: Duration) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(linger, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
