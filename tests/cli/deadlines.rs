//! Deadlines on every blocking step, end to end: a client that stops reading is
//! given up after `--write-timeout` (and one that reads slowly is not), and an echo
//! line dripped byte by byte is cut off by `--line-timeout`.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use socket2::{Domain, Socket, Type};
use support::{expect_report, field, field_num, Client, End, Process, GOODBYE, PATIENCE};

fn server(args: &[&str]) -> (Process, SocketAddr) {
    let mut all = vec![args[0], "--addr", "127.0.0.1:0"];
    all.extend_from_slice(&args[1..]);
    Process::server(&all)
}

#[test]
fn echo_gives_up_a_client_that_stops_reading_and_serves_the_next() {
    let (mut server, addr) = server(&["echo", "--workers", "1", "--write-timeout", "1s"]);
    // The only worker is stuck writing to a client that never reads...
    let _flood = support::flood_without_reading(addr, b"lines that are never read\n");
    // ...so this one waits in the queue until that client is given up.
    let mut next = Client::connect(addr);
    next.send(b"my turn\n").unwrap();
    assert_eq!(next.expect_line(), "Echo: my turn\r\n");
    server.signal("TERM");
    let (rest, end) = next.rest();
    assert_eq!(String::from_utf8_lossy(&rest), GOODBYE);
    assert_eq!(end, End::Eof);
    let report = expect_report(&mut server, 0);
    assert_eq!(field_num(&report, "write_timeouts"), 1, "{report}");
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert_eq!(field_num(&report, "forced"), 0, "{report}");
    assert_eq!(field_num(&report, "drained"), 1, "{report}");
}

#[test]
fn http_gives_up_a_client_that_stops_reading_and_serves_the_next() {
    let (mut server, addr) = server(&["http", "--workers", "1", "--write-timeout", "1s"]);
    let _flood = support::flood_without_reading(addr, b"GET / HTTP/1.1\r\nHost: flood\r\n\r\n");
    let mut next = support::http::connect(addr);
    support::http::send(&mut next, b"GET / HTTP/1.1\r\nHost: next\r\n\r\n");
    let reply = support::http::read_reply(&mut next, false);
    assert_eq!(reply.status, 200, "{reply:?}");
    drop(next);
    server.signal("TERM");
    let report = expect_report(&mut server, 0);
    assert_eq!(field_num(&report, "write_timeouts"), 1, "{report}");
    assert_eq!(field_num(&report, "forced"), 0, "{report}");
}

/// `Echo: n <i> <padding>\r\n`, the reply to line `i` of the slow reader's stream.
fn numbered_line(i: usize) -> String {
    format!("n {i} {}\n", "p".repeat(200))
}

#[test]
fn a_client_that_reads_slowly_is_not_given_up() {
    // Long enough that a test thread starved of CPU on a loaded machine (its reads
    // are what keeps the connection alive) is not mistaken for a client that stopped.
    let write_timeout = Duration::from_secs(2);
    let (mut server, addr) = server(&["echo", "--workers", "1", "--write-timeout", "2s"]);
    // Linux keeps a full receive window shut until a sixteenth of the buffer (and
    // one segment, 64 KiB on loopback) is free again, so how much a client must read
    // before the server sees room depends on its buffer, which autotuning may grow
    // to 32 MiB: a fixed buffer (512 KiB, which Linux doubles) makes that step one
    // segment, run after run.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(512 << 10).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The writer sends numbered lines until the worker, stuck writing replies, stops
    // reading (the writer's own writes stall), then 4 MiB more (more than the slow
    // phase below reads, so the worker stays stuck writing throughout), and says how
    // many lines it sent.
    let (stalled_tx, stalled_rx) = crossbeam_channel::bounded(1);
    let (sent_tx, sent_rx) = crossbeam_channel::bounded(1);
    let mut writer = stream.try_clone().unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        let mut sent = 0;
        let mut more = None;
        while more != Some(0) && Instant::now() < deadline {
            let line = numbered_line(sent);
            let mut bytes = line.as_bytes();
            while !bytes.is_empty() && Instant::now() < deadline {
                match writer.write(bytes) {
                    Ok(n) => bytes = &bytes[n..],
                    Err(err)
                        if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                    {
                        if more.is_none() {
                            more = Some(20_000);
                            let _ = stalled_tx.send(());
                        }
                    }
                    Err(err) => panic!("writing line {sent}: {err}"),
                }
            }
            sent += 1;
            more = more.map(|left: usize| left.saturating_sub(1));
        }
        let _ = sent_tx.send(sent);
    });
    stalled_rx
        .recv_timeout(PATIENCE)
        .expect("the writer stalls once the worker is stuck writing");

    let mut reader = stream;
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 128 * 1024];
    // Slow on purpose: at most 128 KiB (two of those steps) every 200 ms, for two
    // write timeouts, from a server that could write gigabytes a second.
    let slow_until = Instant::now() + write_timeout * 2;
    // The reader's pace: one read a tick.
    let pace = crossbeam_channel::tick(Duration::from_millis(200));
    while Instant::now() < slow_until {
        match reader.read(&mut chunk) {
            Ok(0) => panic!("EOF while reading slowly: given up\n{}", server.dump()),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(err) => panic!("{err} while reading slowly: given up\n{}", server.dump()),
        }
        let _ = pace.recv();
    }
    // Then at full speed, until every line is answered. The writer says how many it
    // sent only once the server has read them all, which needs this reader: the short
    // read timeout is only to look for that count between reads.
    reader
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let reply_bytes =
        |sent: usize| -> usize { (0..sent).map(|i| numbered_line(i).len() + 7).sum() };
    // (lines sent, bytes of their replies), once the writer is done.
    let mut expected = None;
    while expected.map_or(true, |(_, bytes)| received.len() < bytes) {
        assert!(
            Instant::now() < deadline,
            "{} bytes of replies, expected {expected:?}\n{}",
            received.len(),
            server.dump()
        );
        if expected.is_none() {
            expected = sent_rx
                .try_recv()
                .ok()
                .map(|sent| (sent, reply_bytes(sent)));
        }
        match reader.read(&mut chunk) {
            Ok(0) => panic!("EOF after {} bytes\n{}", received.len(), server.dump()),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => panic!("{err} after {} bytes\n{}", received.len(), server.dump()),
        }
    }
    let (sent, bytes) = expected.unwrap_or_default();
    let text = String::from_utf8(received).expect("replies are ASCII");
    for (i, reply) in text.split_terminator("\r\n").enumerate() {
        assert_eq!(
            format!("{reply}\n"),
            format!("Echo: {}", numbered_line(i)),
            "reply {i}"
        );
    }
    assert_eq!(text.len(), bytes, "every line of {sent} answered");
    server.signal("TERM");
    reader.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert_eq!(String::from_utf8_lossy(&rest), GOODBYE);
    let report = expect_report(&mut server, 0);
    assert_eq!(field_num(&report, "write_timeouts"), 0, "{report}");
    assert_eq!(field_num(&report, "drained"), 1, "{report}");
}

#[test]
fn a_dripped_line_is_cut_off_while_others_are_served() {
    let line_timeout = Duration::from_secs(1);
    let (mut server, addr) = server(&["echo", "--line-timeout", "1s"]);
    let mut dripper = Client::connect(addr);
    let mut drip = dripper.stream().try_clone().unwrap();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let started = Instant::now();
    let drips = thread::spawn(move || {
        let mut sent = 0;
        for byte in b"a line that never ends".iter().cycle() {
            if drip.write_all(&[*byte]).is_err() {
                break;
            }
            sent += 1;
            // The pace that makes this client slow: a byte every 200 ms, until told
            // to stop.
            match stop_rx.recv_timeout(Duration::from_millis(200)) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        sent
    });
    // Meanwhile a normal client is served as usual.
    let mut polite = Client::connect(addr);
    polite.send(b"hello\n").unwrap();
    assert_eq!(polite.expect_line(), "Echo: hello\r\n");

    let (rest, end) = dripper.rest();
    let cut_after = started.elapsed();
    assert_eq!(String::from_utf8_lossy(&rest), "Error: line timeout\r\n");
    assert_eq!(end, End::Eof);
    let _ = stop_tx.send(());
    let sent = drips.join().expect("dripper");
    assert!(
        cut_after >= line_timeout - Duration::from_millis(100),
        "cut after {cut_after:?}, {sent} bytes"
    );

    polite.send(b"still here\n").unwrap();
    assert_eq!(polite.expect_line(), "Echo: still here\r\n");
    server.signal("TERM");
    let (rest, end) = polite.rest();
    assert_eq!(String::from_utf8_lossy(&rest), GOODBYE);
    assert_eq!(end, End::Eof);
    let report = expect_report(&mut server, 0);
    assert_eq!(field_num(&report, "write_timeouts"), 0, "{report}");
}

#[test]
fn the_line_clock_starts_at_each_line_s_first_byte() {
    let (mut server, addr) = server(&["echo", "--line-timeout", "2s"]);
    let mut client = Client::connect(addr);
    let started = Instant::now();
    for i in 0..6 {
        client.send(format!("line {i} begins").as_bytes()).unwrap();
        // Half a line timeout mid-line, during which a partial line gets no answer
        // and is not cut: slow, but each line is whole within its own timeout, while
        // together they take longer than one.
        support::expect_silence(client.stream(), Duration::from_millis(500));
        client.send(b" and ends\n").unwrap();
        assert_eq!(
            client.expect_line(),
            format!("Echo: line {i} begins and ends\r\n")
        );
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    server.signal("TERM");
    let (rest, end) = client.rest();
    assert_eq!(String::from_utf8_lossy(&rest), GOODBYE);
    assert_eq!(end, End::Eof);
    expect_report(&mut server, 0);
}
