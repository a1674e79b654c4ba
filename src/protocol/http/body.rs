//! Request bodies on the wire: a decoder for `Content-Length` and chunked framing that
//! takes its input in pieces of any size and never holds more than the limits allow.
//!
//! The decoder is fed whatever arrived; it says how much it consumed and where, in
//! what it consumed, the body bytes are, so the caller copies them straight to where
//! they go (the service's buffer) and the bytes after the body (a pipelined request)
//! stay with the caller. A body that would pass the limit is refused with 413 before
//! its bytes arrive (a `Content-Length` by the head parser, a chunk by its size line);
//! the only bytes the decoder buffers itself are one chunk-size line (at most
//! [`MAX_SIZE_LINE`]) and the trailer section (at most the head limit). Line ends in
//! chunked framing must be CRLF: a bare LF there is a classic request-smuggling
//! disagreement between a proxy and a server, so it is refused rather than guessed at.

use std::ops::Range;

use ::http::StatusCode;

use super::request::{Framing, Limits, RequestError};

/// The longest chunk-size line accepted, extensions included.
pub(crate) const MAX_SIZE_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `Content-Length` framing with this many bytes to go.
    Length(u64),
    /// Reading a chunk-size line (kept without its CRLF).
    Size(Vec<u8>),
    /// Inside a chunk's data.
    Data(u64),
    /// After a chunk's data: how much of its CRLF has been seen.
    DataEnd(u8),
    /// After the last chunk: the trailer section so far, up to its empty line.
    Trailers(Vec<u8>),
    /// The body is complete.
    Done,
}

/// An incremental body decoder for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyDecoder {
    state: State,
    limits: Limits,
    /// Body bytes announced so far (chunk sizes), against the limit.
    announced: u64,
}

/// Where a decoder stands after a [`BodyDecoder::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes of the input that belong to the body's framing or data.
    pub(crate) consumed: usize,
    /// Where in the input the body bytes decoded by this call are (empty if none).
    pub(crate) data: Range<usize>,
    /// Whether the body is complete.
    pub(crate) done: bool,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`, within `limits`.
    pub(crate) fn new(framing: Framing, limits: Limits) -> BodyDecoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size(Vec::new()),
        };
        BodyDecoder {
            state,
            limits,
            announced: 0,
        }
    }

    /// Whether the body is complete.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes the decoder holds itself (a partial size line or trailer section).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        match &self.state {
            State::Size(line) | State::Trailers(line) => line.len(),
            _ => 0,
        }
    }

    /// How many body bytes come next on the wire with no framing between them (the
    /// rest of a `Content-Length` body or of a chunk): a reader may take up to that
    /// many straight from the socket and report them with [`BodyDecoder::took`].
    pub(crate) fn direct(&self) -> u64 {
        match self.state {
            State::Length(left) | State::Data(left) => left,
            _ => 0,
        }
    }

    /// Accounts for `n` body bytes read past the decoder (at most [`Self::direct`]).
    pub(crate) fn took(&mut self, n: usize) {
        if let State::Length(left) | State::Data(left) = &mut self.state {
            *left = left.saturating_sub(n as u64);
            if *left == 0 {
                self.state = match self.state {
                    State::Length(_) => State::Done,
                    _ => State::DataEnd(0),
                };
            }
        }
    }

    /// Decodes from `input` up to and including at most one run of body bytes, of at
    /// most `room` bytes (zero stops at the first body byte); trailer fields go to
    /// `trailers`. Call again with the rest of the input to go on.
    ///
    /// # Errors
    /// 400 for malformed chunked framing, 413 once the body would pass
    /// [`Limits::max_body`], 431 for a trailer section over the head limits.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        room: usize,
        trailers: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<Fed, RequestError> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            let rest = &input[at..];
            match &mut self.state {
                State::Length(left) | State::Data(left) => {
                    let take = rest.len().min(room);
                    let take = usize::try_from(*left).map_or(take, |left| left.min(take));
                    if take == 0 {
                        break;
                    }
                    self.took(take);
                    return Ok(Fed {
                        consumed: at + take,
                        data: at..at + take,
                        done: self.is_done(),
                    });
                }
                State::Size(_) => at += self.size_line(rest)?,
                State::DataEnd(seen) => {
                    if rest[0] != b"\r\n"[usize::from(*seen)] {
                        return Err(RequestError::bad("chunk data not followed by CRLF"));
                    }
                    at += 1;
                    *seen += 1;
                    if *seen == 2 {
                        self.state = State::Size(Vec::new());
                    }
                }
                State::Trailers(_) => {
                    self.trailer_byte(rest[0], trailers)?;
                    at += 1;
                }
                State::Done => {}
            }
        }
        Ok(Fed {
            consumed: at,
            data: at..at,
            done: self.is_done(),
        })
    }

    /// Takes bytes of a chunk-size line from `rest`, acting on the line once its LF
    /// arrives; returns how many bytes it took.
    fn size_line(&mut self, rest: &[u8]) -> Result<usize, RequestError> {
        let State::Size(line) = &mut self.state else {
            return Ok(0);
        };
        let end = rest.iter().position(|&b| b == b'\n');
        let piece = &rest[..end.unwrap_or(rest.len())];
        if line.len() + piece.len() > MAX_SIZE_LINE {
            return Err(RequestError::bad("chunk-size line too long"));
        }
        line.extend_from_slice(piece);
        let Some(end) = end else {
            return Ok(rest.len());
        };
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err(RequestError::bad("chunk-size line without CRLF"));
        };
        let size = parse_chunk_size(line)?;
        if size == 0 {
            self.state = State::Trailers(Vec::new());
        } else if self.announced.saturating_add(size) > self.limits.max_body as u64 {
            return Err(too_large());
        } else {
            self.announced += size;
            self.state = State::Data(size);
        }
        Ok(end + 1)
    }

    /// Takes one byte of the trailer section, parsing it once its empty line ends it.
    fn trailer_byte(
        &mut self,
        byte: u8,
        trailers: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), RequestError> {
        let State::Trailers(block) = &mut self.state else {
            return Ok(());
        };
        if byte == b'\n' && block.last() != Some(&b'\r') {
            return Err(RequestError::bad("trailer line without CRLF"));
        }
        if block.len() >= self.limits.max_head_bytes {
            return Err(RequestError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "trailer section too large",
            ));
        }
        block.push(byte);
        if block.as_slice() == b"\r\n" || block.ends_with(b"\r\n\r\n") {
            parse_trailers(block, &self.limits, trailers)?;
            self.state = State::Done;
        }
        Ok(())
    }
}

fn too_large() -> RequestError {
    RequestError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body over the limit")
}

/// `chunk-size [ BWS ";" chunk-ext ]`: hexadecimal digits, then optional extensions,
/// which are checked for stray control bytes and otherwise ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, RequestError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(RequestError::bad("chunk size is not hexadecimal"));
    }
    let mut size: u64 = 0;
    for &digit in &line[..digits] {
        let value = (digit as char).to_digit(16).unwrap_or(0);
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(value)))
            .ok_or_else(|| RequestError::bad("chunk size overflows"))?;
    }
    let rest = &line[digits..];
    let ext = rest.trim_ascii_start();
    let valid = ext.is_empty() && rest.is_empty()
        || ext.first() == Some(&b';')
            && ext.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    if !valid {
        return Err(RequestError::bad("malformed chunk extension"));
    }
    Ok(size)
}

fn parse_trailers(
    block: &[u8],
    limits: &Limits,
    trailers: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), RequestError> {
    let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
    match httparse::parse_headers(block, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            trailers.extend(
                parsed
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.trim_ascii().to_vec())),
            );
            Ok(())
        }
        Err(httparse::Error::TooManyHeaders) => Err(RequestError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many trailer fields",
        )),
        _ => Err(RequestError::bad("malformed trailer section")),
    }
}

// Over 400 lines with these tests, which pin the decoder down case by case and
// belong beside it; the decoder itself is about 250.
#[cfg(test)]
mod tests;
