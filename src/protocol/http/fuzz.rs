//! Property tests of the request framing: arbitrary bytes, split at arbitrary points,
//! go through the head parser and the body decoder the way the connection loop
//! drives them. Nothing panics, what is buffered stays within the limits, and where a
//! stream is split never changes what it means.

use proptest::prelude::*;

use super::body::{BodyDecoder, MAX_SIZE_LINE};
use super::request::{parse_head, Limits, Parsed};

/// Small limits, so that the fuzzer reaches them often.
fn limits() -> Limits {
    Limits {
        max_headers: 4,
        max_head_bytes: 256,
        max_body: 64,
    }
}

/// What a byte stream framed into: the requests in order, then how it stopped.
#[derive(Debug, PartialEq, Eq)]
struct Framed {
    requests: Vec<(String, String, Vec<u8>)>,
    /// The status that ended the stream, if it was refused.
    error: Option<u16>,
}

/// Feeds `pieces` one at a time, as reads, through the loop's framing steps, and
/// checks the memory bounds after each.
// Over 60 lines: the loop's framing steps (head, body, pipelined next head) are kept
// in one function so that their order here is visibly the loop's.
fn frame(pieces: &[Vec<u8>], limits: &Limits) -> Framed {
    let mut framed = Framed {
        requests: Vec::new(),
        error: None,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut body: Option<(BodyDecoder, Incoming)> = None;
    let mut fresh = false;
    for piece in pieces {
        fresh |= piece.contains(&b'\n');
        buf.extend_from_slice(piece);
        loop {
            if let Some((decoder, request)) = body.as_mut() {
                match decoder.feed(&buf, usize::MAX, &mut request.trailers) {
                    Err(err) => {
                        framed.error = Some(err.status.as_u16());
                        return framed;
                    }
                    Ok(fed) => {
                        request.body.extend_from_slice(&buf[fed.data.clone()]);
                        buf.drain(..fed.consumed);
                        assert!(request.body.len() <= limits.max_body);
                        assert!(decoder.buffered() <= MAX_SIZE_LINE.max(limits.max_head_bytes));
                        if !fed.done && !fed.data.is_empty() {
                            continue;
                        }
                        if !fed.done {
                            assert!(buf.is_empty(), "an unfinished body takes every byte");
                            break;
                        }
                        let (_, request) = body.take().expect("a body in progress");
                        framed
                            .requests
                            .push((request.method, request.target, request.body));
                        fresh = true;
                    }
                }
            }
            if !fresh && buf.len() <= limits.max_head_bytes {
                break;
            }
            match parse_head(&buf, limits) {
                Err(err) => {
                    framed.error = Some(err.status.as_u16());
                    return framed;
                }
                Ok(Parsed::Partial) => {
                    assert!(buf.len() <= limits.max_head_bytes);
                    fresh = false;
                    break;
                }
                Ok(Parsed::Complete(head, len)) => {
                    assert!(len <= limits.max_head_bytes);
                    buf.drain(..len);
                    let request = Incoming {
                        method: head.method.to_string(),
                        target: head.uri.to_string(),
                        body: Vec::new(),
                        trailers: Vec::new(),
                    };
                    body = Some((BodyDecoder::new(head.framing, *limits), request));
                }
            }
        }
        assert!(buf.len() <= limits.max_head_bytes + piece.len());
    }
    // The loop parses only when a LF arrives; a malformed tail without one is found
    // when the client's next bytes come. Look once more, as if they had.
    if body.is_none() {
        if let Err(err) = parse_head(&buf, limits) {
            framed.error = Some(err.status.as_u16());
        }
    }
    framed
}

/// A request as framed: what the property tests compare.
struct Incoming {
    method: String,
    target: String,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
}

fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(bytes[from..cut].to_vec());
        from = cut;
    }
    pieces
}

/// One well-formed request, with a body framed by length or in chunks.
fn request() -> impl Strategy<Value = (Vec<u8>, (String, String, Vec<u8>))> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "HEAD"]);
    let path = "/[a-z0-9]{0,8}";
    let body = prop::collection::vec(any::<u8>(), 0..48);
    let chunks = prop::collection::vec(1usize..20, 0..4);
    (method, path, body, any::<bool>(), chunks, any::<bool>()).prop_map(
        |(method, path, body, chunked, sizes, trailer)| {
            let mut wire = format!("{method} {path} HTTP/1.1\r\nHost: h\r\n").into_bytes();
            if chunked {
                wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = body.as_slice();
                for size in sizes.into_iter().chain([usize::MAX]) {
                    let take = size.min(rest.len());
                    if take == 0 {
                        continue;
                    }
                    wire.extend_from_slice(format!("{take:X};e=1\r\n").as_bytes());
                    wire.extend_from_slice(&rest[..take]);
                    wire.extend_from_slice(b"\r\n");
                    rest = &rest[take..];
                }
                wire.extend_from_slice(b"0\r\n");
                if trailer {
                    wire.extend_from_slice(b"X-T: 1\r\n");
                }
                wire.extend_from_slice(b"\r\n");
            } else {
                wire.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                wire.extend_from_slice(&body);
            }
            (wire, (method.to_string(), path, body))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_pipelines_frame_the_same_however_split(
        requests in prop::collection::vec(request(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let wire: Vec<u8> = requests.iter().flat_map(|(w, _)| w.clone()).collect();
        let expected: Vec<_> = requests.into_iter().map(|(_, r)| r).collect();
        let framed = frame(&split(&wire, &cuts), &limits());
        prop_assert_eq!(framed.error, None);
        prop_assert_eq!(framed.requests, expected);
    }

    #[test]
    fn mutated_pipelines_never_panic_stay_bounded_and_ignore_splits(
        requests in prop::collection::vec(request(), 1..3),
        edits in prop::collection::vec(
            (any::<usize>(), prop::sample::select(b"\r\n:; \t0aFx-\x00\xff".to_vec())),
            1..6,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire: Vec<u8> = requests.iter().flat_map(|(w, _)| w.clone()).collect();
        for (at, byte) in edits {
            let at = at % wire.len();
            wire[at] = byte;
        }
        let whole = frame(std::slice::from_ref(&wire), &limits());
        let pieces = frame(&split(&wire, &cuts), &limits());
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let whole = frame(std::slice::from_ref(&bytes), &limits());
        let pieces = frame(&split(&bytes, &cuts), &limits());
        prop_assert_eq!(whole, pieces);
    }
}
