use super::*;

fn answers(chunks: &[&[u8]], max_line: usize) -> (Vec<u8>, Framed) {
    let mut lines = Lines::new();
    let mut out = Vec::new();
    for chunk in chunks {
        let framed = lines.feed(chunk, max_line, &mut out);
        if framed != Framed::Ok {
            return (out, framed);
        }
    }
    lines.finish(&mut out);
    (out, Framed::Ok)
}

#[test]
fn trims_like_python_strip() {
    assert_eq!(trim(b"  hello \t\r\n"), b"hello");
    assert_eq!(trim(b"\x0b\x0c\x1c\x1d\x1e\x1fx\x1f"), b"x");
    assert_eq!(trim(b"   "), b"");
    assert_eq!(trim(b""), b"");
    // Bytes outside ASCII whitespace are never trimmed, whatever they decode to.
    assert_eq!(trim(b"\xa0x\x85"), b"\xa0x\x85");
    assert_eq!(trim(b"a b"), b"a b");
}

#[test]
fn answers_each_line_in_order() {
    let (out, framed) = answers(&[b"one\ntwo\r\n", b"thr", b"ee\n"], 64);
    assert_eq!(framed, Framed::Ok);
    assert_eq!(out, b"Echo: one\r\nEcho: two\r\nEcho: three\r\n");
}

#[test]
fn final_line_without_newline_is_answered() {
    let (out, _) = answers(&[b"last"], 64);
    assert_eq!(out, b"Echo: last\r\n");
}

#[test]
fn invalid_utf8_is_echoed_as_is() {
    let (out, _) = answers(&[b"\xff\xfe ok\n"], 64);
    assert_eq!(out, b"Echo: \xff\xfe ok\r\n");
}

#[test]
fn empty_line_gets_an_empty_echo() {
    let (out, _) = answers(&[b"\n"], 64);
    assert_eq!(out, b"Echo: \r\n");
}

#[test]
fn limit_counts_the_line_without_its_newline() {
    let (out, framed) = answers(&[b"abcd\n"], 4);
    assert_eq!(framed, Framed::Ok);
    assert_eq!(out, b"Echo: abcd\r\n");
    let (out, framed) = answers(&[b"ok\nabcde\n"], 4);
    assert_eq!(framed, Framed::TooLong);
    assert_eq!(
        out, b"Echo: ok\r\n",
        "lines before the long one are answered"
    );
}

#[test]
fn the_line_clock_runs_from_a_line_s_first_byte_to_its_end() {
    let timeout = Duration::from_secs(10);
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut line = LineClock::default();
    line.framed(at(0), true, false);
    assert_eq!(line.deadline(timeout), None, "whole lines start no clock");
    line.framed(at(100), false, true);
    assert_eq!(
        line.deadline(timeout),
        Some(at(10_100)),
        "from the first byte"
    );
    line.framed(at(9_000), false, true);
    assert_eq!(
        line.deadline(timeout),
        Some(at(10_100)),
        "more bytes of the same line do not push it back"
    );
    assert!(!line.expired(at(10_099), timeout));
    assert!(line.expired(at(10_100), timeout));
    line.framed(at(9_500), true, true);
    assert_eq!(
        line.deadline(timeout),
        Some(at(19_500)),
        "the next line's clock starts with the read that ended the last one"
    );
    line.framed(at(9_600), true, false);
    assert_eq!(line.deadline(timeout), None);
    assert!(!line.expired(at(100_000), timeout));
}

#[test]
fn the_read_deadline_is_the_sooner_of_idle_and_line() {
    let echo = Echo::new()
        .idle_timeout(Duration::from_secs(300))
        .line_timeout(Duration::from_secs(10));
    let t0 = Instant::now();
    let mut line = LineClock::default();
    assert_eq!(
        echo.deadline(t0, &line),
        Some(t0 + Duration::from_secs(300))
    );
    line.framed(t0, false, true);
    assert_eq!(echo.deadline(t0, &line), Some(t0 + Duration::from_secs(10)));
    let short_idle = echo.idle_timeout(Duration::from_secs(1));
    assert_eq!(
        short_idle.deadline(t0, &line),
        Some(t0 + Duration::from_secs(1))
    );
}

#[test]
fn an_endless_line_is_cut_off_with_bounded_memory() {
    let mut lines = Lines::new();
    let mut out = Vec::new();
    let chunk = [b'x'; 1000];
    let mut framed = Framed::Ok;
    for _ in 0..100 {
        framed = lines.feed(&chunk, 4096, &mut out);
        if framed == Framed::TooLong {
            break;
        }
        assert!(lines.pending().len() <= 4096);
    }
    assert_eq!(framed, Framed::TooLong);
    assert!(out.is_empty());
}
