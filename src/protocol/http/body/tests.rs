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
        let piece = &input[at..end];
        let fed = decoder
            .feed(piece, usize::MAX, &mut trailers)
            .map_err(|err| err.status.as_u16())?;
        body.extend_from_slice(&piece[fed.data.clone()]);
        at += fed.consumed;
        if !fed.done && fed.data.is_empty() {
            assert_eq!(fed.consumed, piece.len(), "consumes all until done");
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
fn room_bounds_each_run_of_body_bytes() {
    let input = b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
    let mut decoder = BodyDecoder::new(Framing::Chunked, Limits::default());
    let (mut body, mut runs, mut trailers, mut at) = (Vec::new(), 0, Vec::new(), 0);
    while !decoder.is_done() {
        let fed = decoder.feed(&input[at..], 2, &mut trailers).unwrap();
        assert!(fed.data.len() <= 2);
        body.extend_from_slice(&input[at..][fed.data.clone()]);
        runs += usize::from(!fed.data.is_empty());
        at += fed.consumed;
    }
    assert_eq!(
        (body.as_slice(), runs, at),
        (&b"helloabc"[..], 5, input.len())
    );
}

#[test]
fn direct_reads_skip_the_decoder_but_not_the_framing() {
    let mut decoder = BodyDecoder::new(Framing::Chunked, Limits::default());
    let mut trailers = Vec::new();
    let fed = decoder.feed(b"a\r\n", 0, &mut trailers).unwrap();
    assert_eq!((fed.consumed, decoder.direct()), (3, 10));
    decoder.took(10);
    assert_eq!(decoder.direct(), 0);
    let fed = decoder.feed(b"\r\n0\r\n\r\n", 0, &mut trailers).unwrap();
    assert!(fed.done);
    let mut length = BodyDecoder::new(Framing::Length(3), Limits::default());
    length.took(3);
    assert!(length.is_done());
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
