//! Request bodies: a decoder for `Content-Length` and chunked framing that takes its
//! input in pieces of any size and never holds more than the limits allow.
//!
//! The decoder is fed whatever arrived; it says how much it consumed, so the bytes
//! after the body (a pipelined request) stay with the caller. Body bytes go straight
//! to the output, which is refused with 413 before it would pass the limit; the only
//! bytes it buffers itself are one chunk-size line (at most [`MAX_SIZE_LINE`]) and the
//! trailer section (at most the head limit). Line ends in chunked framing must be
//! CRLF: a bare LF there is a classic request-smuggling disagreement between a proxy
//! and a server, so it is refused rather than guessed at.

use super::request::{Framing, Limits, RequestError};
use super::response::Status;

/// The longest chunk-size line accepted, extensions included.
pub const MAX_SIZE_LINE: usize = 4096;

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
pub struct BodyDecoder {
    state: State,
    limits: Limits,
}

/// Where a decoder stands after a [`BodyDecoder::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input that belong to the body (the rest follows it).
    pub consumed: usize,
    /// Whether the body is complete.
    pub done: bool,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`, within `limits`.
    pub fn new(framing: Framing, limits: Limits) -> BodyDecoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size(Vec::new()),
        };
        BodyDecoder { state, limits }
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes the decoder holds itself (a partial size line or trailer section).
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Size(line) | State::Trailers(line) => line.len(),
            _ => 0,
        }
    }

    /// Decodes from `input`, appending body bytes to `body` and trailer fields to
    /// `trailers`.
    ///
    /// # Errors
    /// 400 for malformed chunked framing, 413 once the body would pass
    /// [`Limits::max_body`], 431 for a trailer section over the head limits.
    pub fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        trailers: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<Fed, RequestError> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            let rest = &input[at..];
            match &mut self.state {
                State::Length(remaining) | State::Data(remaining) => {
                    let take = rest
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    if body.len() + take > self.limits.max_body {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&rest[..take]);
                    at += take;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = match self.state {
                            State::Length(_) => State::Done,
                            _ => State::DataEnd(0),
                        };
                    }
                }
                State::Size(line) => {
                    let byte = rest[0];
                    at += 1;
                    if byte != b'\n' {
                        if line.len() >= MAX_SIZE_LINE {
                            return Err(RequestError::bad("chunk-size line too long"));
                        }
                        line.push(byte);
                        continue;
                    }
                    let Some(line) = line.strip_suffix(b"\r") else {
                        return Err(RequestError::bad("chunk-size line without CRLF"));
                    };
                    let size = parse_chunk_size(line)?;
                    if size == 0 {
                        self.state = State::Trailers(Vec::new());
                    } else if (body.len() as u64).saturating_add(size) > self.limits.max_body as u64
                    {
                        return Err(too_large());
                    } else {
                        self.state = State::Data(size);
                    }
                }
                State::DataEnd(seen) => {
                    let expected = b"\r\n"[usize::from(*seen)];
                    if rest[0] != expected {
                        return Err(RequestError::bad("chunk data not followed by CRLF"));
                    }
                    at += 1;
                    *seen += 1;
                    if *seen == 2 {
                        self.state = State::Size(Vec::new());
                    }
                }
                State::Trailers(block) => {
                    let byte = rest[0];
                    at += 1;
                    if byte == b'\n' && block.last() != Some(&b'\r') {
                        return Err(RequestError::bad("trailer line without CRLF"));
                    }
                    if block.len() >= self.limits.max_head_bytes {
                        return Err(RequestError::new(
                            Status::HEADERS_TOO_LARGE,
                            "trailer section too large",
                        ));
                    }
                    block.push(byte);
                    if block.as_slice() == b"\r\n" || block.ends_with(b"\r\n\r\n") {
                        parse_trailers(block, &self.limits, trailers)?;
                        self.state = State::Done;
                    }
                }
                State::Done => {}
            }
        }
        Ok(Fed {
            consumed: at,
            done: self.state == State::Done,
        })
    }
}

fn too_large() -> RequestError {
    RequestError::new(Status::PAYLOAD_TOO_LARGE, "request body over the limit")
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
            Status::HEADERS_TOO_LARGE,
            "too many trailer fields",
        )),
        _ => Err(RequestError::bad("malformed trailer section")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Decoded = (Vec<u8>, Vec<(String, Vec<u8>)>, usize);

    /// Feeds `input` in pieces of `step` bytes until the body is done.
    fn decode(framing: Framing, input: &[u8], step: usize) -> Result<Decoded, u16> {
        let mut decoder = BodyDecoder::new(framing, Limits::default());
        let (mut body, mut trailers) = (Vec::new(), Vec::new());
        let mut at = 0;
        while !decoder.is_done() {
            if at == input.len() {
                return Err(0);
            }
            let end = (at + step).min(input.len());
            let fed = decoder
                .feed(&input[at..end], &mut body, &mut trailers)
                .map_err(|err| err.status.code())?;
            at += fed.consumed;
            if !fed.done {
                assert_eq!(
                    fed.consumed,
                    end - (at - fed.consumed),
                    "consumes all until done"
                );
            }
        }
        Ok((body, trailers, at))
    }

    fn chunked(input: &[u8]) -> Result<Decoded, u16> {
        let whole = decode(Framing::Chunked, input, input.len().max(1));
        for step in [1, 2, 3, 7] {
            assert_eq!(decode(Framing::Chunked, input, step), whole, "step {step}");
        }
        whole
    }

    #[test]
    fn content_length_stops_at_its_length() {
        let (body, _, used) = decode(Framing::Length(5), b"helloGET /", 3).unwrap();
        assert_eq!((body.as_slice(), used), (&b"hello"[..], 5));
        assert!(BodyDecoder::new(Framing::Empty, Limits::default()).is_done());
    }

    #[test]
    fn chunks_with_hex_sizes_extensions_and_trailers() {
        let input =
            b"5\r\nhello\r\nA;name=value;x\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-B: two\r\n\r\nNEXT";
        let (body, trailers, used) = chunked(input).unwrap();
        assert_eq!(body, b"hello0123456789");
        assert_eq!(used, input.len() - 4);
        assert_eq!(
            trailers,
            vec![
                ("X-Sum".into(), b"1".to_vec()),
                ("X-B".into(), b"two".to_vec())
            ]
        );
        let (body, trailers, _) = chunked(b"a \t;ext\r\n0123456789\r\n00\r\n\r\n").unwrap();
        assert_eq!(body.len(), 10);
        assert!(trailers.is_empty());
    }

    #[test]
    fn bad_chunked_framing_is_400() {
        for bad in [
            &b"x\r\n"[..],
            b"-1\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\r\r0\r\n\r\n",
            b"0\r\nX: y\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"5;\x01\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            assert_eq!(
                chunked(bad).map(|_| ()),
                Err(400),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_line = [b"1;".as_slice(), &[b'x'; MAX_SIZE_LINE]].concat();
        assert_eq!(
            decode(Framing::Chunked, &long_line, 100).map(|_| ()),
            Err(400)
        );
    }

    #[test]
    fn limits_are_413_and_431() {
        // A size that would pass the limit is refused before any of its data arrives.
        assert_eq!(chunked(b"100001\r\n").map(|_| ()), Err(413));
        assert_eq!(
            chunked(b"80000\r\n").map(|_| ()),
            Err(0),
            "512 KiB is fine, but incomplete"
        );
        let mut two = b"80000\r\n".to_vec();
        two.extend(std::iter::repeat(b'a').take(0x80000));
        two.extend_from_slice(b"\r\n80001\r\n");
        assert_eq!(decode(Framing::Chunked, &two, 60000).map(|_| ()), Err(413));
        let mut trailers = b"0\r\n".to_vec();
        for i in 0..65 {
            trailers.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(chunked(&trailers).map(|_| ()), Err(431));
        let huge = [b"0\r\nX: ".as_slice(), &[b'v'; 17 * 1024]].concat();
        assert_eq!(decode(Framing::Chunked, &huge, 999).map(|_| ()), Err(431));
    }
}
