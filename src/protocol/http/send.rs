//! Sending a response: its framing decided, the service's framing headers replaced,
//! and its body written — bytes at once, a file by the kernel, a reader through one
//! buffer with the client's pace as backpressure.
//!
//! A body streamed during a drain goes on to its end: the server's drain deadline is
//! what bounds it. Past the deadline the force shuts the socket down, the blocked
//! write fails, and the client is left with a body it can tell is cut (no final
//! chunk, or fewer bytes than `Content-Length`).

use std::io::{self, Read};
use std::net::SocketAddr;

use ::http::{StatusCode, Version};

use super::exchange::Answer;
use super::head::{has_framing_headers, take_framing_headers, write_head, Delimit, Persist};
use super::response::{text, Kind};
use super::service::Service;
use super::session::Session;
use crate::Connection;

/// The most a body read from a reader holds in memory at once: one write's worth.
const STREAM_CHUNK: usize = 64 * 1024;

/// Bodies in memory up to this size go out in the same write as the head; larger
/// ones in a write of their own, rather than copied.
const INLINE: usize = 64 * 1024;

impl<S: Service> Session<'_, S> {
    /// Sends `answer`; returns whether the connection stays open.
    pub(super) fn respond(
        &mut self,
        conn: &mut Connection<'_>,
        answer: Answer,
    ) -> io::Result<Persist> {
        let Answer {
            response,
            head_only,
            version,
            keep_alive,
        } = answer;
        let peer = conn.peer_addr();
        let (mut parts, mut body) = response.into_parts();
        if parts.status.is_informational() {
            log::error!(
                "{peer}: the service answered {}, which is not a final status: sent 500",
                parts.status
            );
            (parts, body) =
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n").into_parts();
        }
        let http11 = version == Version::HTTP_11;
        let delimit = Delimit::of(parts.status, &body, http11);
        let taken =
            has_framing_headers(&parts.headers).then(|| take_framing_headers(&mut parts.headers));
        let mut persist = keep_alive
            && !taken.as_ref().is_some_and(|taken| taken.wants_close)
            && (head_only || delimit != Delimit::Close);
        if persist && conn.is_draining() {
            // The goodbye: this is the last response unless the client already
            // sent another complete request.
            self.read_pending(conn)?;
            persist = self.holds_complete_request();
        }
        let persist = match (persist, http11) {
            (false, _) => Persist::Close,
            (true, false) => Persist::KeepAlive,
            (true, true) => Persist::Default,
        };
        // The comparison formats strings: only worth it when someone reads the log.
        if let Some(taken) = taken.filter(|_| log::log_enabled!(log::Level::Debug)) {
            let replaced = taken.replaced(delimit, persist);
            if !replaced.is_empty() {
                log::debug!("{peer}: replaced the service's {}", replaced.join(", "));
            }
        }
        self.out.clear();
        write_head(
            parts.status,
            &parts.headers,
            delimit,
            persist,
            &mut self.out,
        );
        if head_only || delimit == Delimit::Bodiless {
            conn.write_all(&self.out)?;
        } else {
            self.send_body(conn, body.kind, delimit, peer)?;
        }
        Ok(persist)
    }

    /// Writes the head in `out` and the body after it.
    fn send_body(
        &mut self,
        conn: &mut Connection<'_>,
        body: Kind,
        delimit: Delimit,
        peer: SocketAddr,
    ) -> io::Result<()> {
        let out = &mut self.out;
        match body {
            Kind::Bytes(bytes) if bytes.len() <= INLINE => {
                out.extend_from_slice(&bytes);
                conn.write_all(out)
            }
            Kind::Bytes(bytes) => {
                conn.write_all(out)?;
                conn.write_all(&bytes)
            }
            Kind::File { file, offset, len } => {
                conn.write_all(out)?;
                conn.send_file(&file, offset, len).inspect_err(|err| {
                    log::debug!("{peer}: file body of {len} bytes cut: {err}");
                })
            }
            Kind::Reader { mut reader, .. } => {
                let sent = match delimit {
                    Delimit::Chunked => stream_chunked(conn, &mut *reader, out),
                    Delimit::Length(len) => stream_sized(conn, &mut *reader, len, out),
                    Delimit::Close | Delimit::Bodiless => stream_to_close(conn, &mut *reader, out),
                };
                sent.inspect_err(|err| log::debug!("{peer}: streamed body cut: {err}"))
            }
        }
    }
}

/// Appends what one read of `reader` gives, at most `max` bytes, to `out`.
fn fill(reader: &mut dyn Read, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let start = out.len();
    out.resize(start + max, 0);
    let read = loop {
        match reader.read(&mut out[start..]) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            read => break read,
        }
    };
    out.truncate(start + *read.as_ref().unwrap_or(&0));
    read.map_err(|err| {
        log::warn!("the response body's reader failed: {err}; the body is cut");
        err
    })
}

/// `Transfer-Encoding: chunked`: each read of `reader` one chunk, the first one in
/// the same write as the head, then the last chunk.
fn stream_chunked(
    conn: &mut Connection<'_>,
    reader: &mut dyn Read,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    /// Room for a chunk-size line: 16 hex digits and CRLF.
    const LINE: usize = 18;
    loop {
        let line_at = out.len();
        out.resize(line_at + LINE, 0);
        let n = fill(reader, out, STREAM_CHUNK)?;
        if n == 0 {
            out.truncate(line_at);
            out.extend_from_slice(b"0\r\n\r\n");
            return conn.write_all(out);
        }
        // The size line goes right before the data; the room it did not need is
        // closed up (a move of one chunk, cheaper than a second write).
        let line = format!("{n:X}\r\n");
        let data_at = line_at + LINE;
        out[data_at - line.len()..data_at].copy_from_slice(line.as_bytes());
        out.drain(line_at..data_at - line.len());
        out.extend_from_slice(b"\r\n");
        conn.write_all(out)?;
        out.clear();
    }
}

/// `Content-Length: len`: `len` bytes of `reader`, and not one more read; a reader
/// that ends first cuts the body.
fn stream_sized(
    conn: &mut Connection<'_>,
    reader: &mut dyn Read,
    len: u64,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).map_or(STREAM_CHUNK, |left| left.min(STREAM_CHUNK));
        let n = fill(reader, out, want)?;
        if n == 0 {
            conn.write_all(out)?;
            log::warn!("the response body's reader ended {left} bytes short of {len}: cut");
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body's reader ended early",
            ));
        }
        left -= n as u64;
        conn.write_all(out)?;
        out.clear();
    }
    // A body of length zero: the head alone.
    if !out.is_empty() {
        conn.write_all(out)?;
    }
    Ok(())
}

/// HTTP/1.0 and an unknown length: the body runs until the connection closes.
fn stream_to_close(
    conn: &mut Connection<'_>,
    reader: &mut dyn Read,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        let n = fill(reader, out, STREAM_CHUNK)?;
        conn.write_all(out)?;
        out.clear();
        if n == 0 {
            return Ok(());
        }
    }
}
