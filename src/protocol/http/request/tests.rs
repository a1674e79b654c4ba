use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn head(input: &[u8]) -> (Head, usize) {
    match parse_head(input, &limits()) {
        Ok(Parsed::Complete(head, len)) => (*head, len),
        other => panic!("expected a complete head, got {other:?}"),
    }
}

fn status(input: &[u8]) -> u16 {
    match parse_head(input, &limits()) {
        Err(err) => err.status.as_u16(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn parses_a_simple_get() {
    let input = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\nrest";
    let (head, len) = head(input);
    assert_eq!(len, input.len() - 4);
    assert_eq!(head.method, Method::GET);
    assert_eq!(head.uri.path(), "/a");
    assert_eq!(head.uri.query(), Some("b=c"));
    assert_eq!(
        head.headers.get("HOST").map(HeaderValue::as_bytes),
        Some(&b"x"[..])
    );
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.framing, Framing::Empty);
    assert!(head.keep_alive);
}

#[test]
fn partial_heads_wait_for_more() {
    let full = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for cut in 0..full.len() {
        assert_eq!(parse_head(&full[..cut], &limits()), Ok(Parsed::Partial));
    }
}

#[test]
fn keep_alive_follows_version_and_connection() {
    assert!(
        !head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .0
            .keep_alive
    );
    assert!(
        !head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n")
            .0
            .keep_alive
    );
    assert!(!head(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
    assert!(
        head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .0
            .keep_alive
    );
}

#[test]
fn absolute_targets_route_by_their_path() {
    let (absolute, _) = head(b"GET http://h:1/x/y?q HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(absolute.uri.path(), "/x/y");
    let (asterisk, _) = head(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(asterisk.uri.path(), "*");
}

#[test]
fn framing_is_unambiguous_or_refused() {
    let (h, _) = head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(5));
    let (h, _) = head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked);
    let (h, _) =
        head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(5));
    for bad in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(status(bad), 400, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        501
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n"),
        413
    );
}

#[test]
fn valid_hosts_are_accepted() {
    for good in [
        &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: xn--d1acufc.xn--p1ai\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        assert!(
            matches!(
                parse_head(good, &Limits::default()),
                Ok(Parsed::Complete(..))
            ),
            "{}",
            String::from_utf8_lossy(good)
        );
    }
}

#[test]
fn malformed_heads_are_400() {
    for bad in [
        &b"GET / HTTP/1.1\r\n\r\n"[..], // no Host
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET\r\n\r\n",
        b"this is not http\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        // RFC 9112 §3.2: exactly one valid Host.
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
    ] {
        assert_eq!(status(bad), 400, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(status(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
    assert_eq!(
        status(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n"),
        417
    );
}

#[test]
fn header_limits_are_431() {
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..64 {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(status(&many), 431);

    let mut long = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
    long.extend(std::iter::repeat(b'a').take(16 * 1024));
    assert_eq!(status(&long), 431, "a partial head over the limit");
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(status(&long), 431, "a complete head over the limit");
}

#[test]
fn expect_continue_only_with_a_body() {
    let (h, _) =
        head(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert!(h.expects_continue);
    let (h, _) = head(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n");
    assert!(!h.expects_continue);
}
