//! The connection's unit tests: the stall clock, the write timeout, and the reads'
//! results and `io` traits under drain and force.

use super::*;
use std::net::TcpListener;
use std::thread;

#[test]
fn a_stall_counts_from_the_start_of_the_first_write_that_took_nothing() {
    let limit = Duration::from_millis(1000);
    let tick = Duration::from_millis(250);
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut stall = Stall::default();
    assert!(!stall.timed_out(at(250), tick, limit));
    assert!(!stall.timed_out(at(500), tick, limit));
    assert!(!stall.timed_out(at(750), tick, limit));
    assert!(stall.timed_out(at(1000), tick, limit), "1 s without a byte");
}

#[test]
fn progress_restarts_the_stall_clock() {
    let limit = Duration::from_millis(1000);
    let tick = Duration::from_millis(250);
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut stall = Stall::default();
    for round in 0..10 {
        let base = round * 1000;
        assert!(!stall.timed_out(at(base + 250), tick, limit));
        assert!(!stall.timed_out(at(base + 500), tick, limit));
        assert!(!stall.timed_out(at(base + 750), tick, limit));
        stall.progressed();
    }
    assert!(!stall.timed_out(at(10_250), tick, limit));
    assert!(stall.timed_out(at(11_000), tick, limit));
}

#[test]
fn the_write_tick_is_at_most_a_quarter_of_the_write_timeout() {
    let timeouts = |tick, write| Timeouts {
        tick: Duration::from_millis(tick),
        write: Duration::from_millis(write),
    };
    assert_eq!(
        timeouts(1000, 60_000).write_tick(),
        Duration::from_secs(1),
        "the default tick is kept"
    );
    assert_eq!(
        timeouts(1000, 1000).write_tick(),
        Duration::from_millis(250)
    );
    assert_eq!(timeouts(1000, 1).write_tick(), Duration::from_millis(1));
}

/// A server-side connection with `timeouts`, and its client.
fn pair(timeouts: Timeouts) -> (Connection<'static>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (stream, peer) = listener.accept().unwrap();
    let conn = Connection::new(
        stream,
        peer,
        timeouts,
        Shutdown::new(),
        Shutdown::new(),
        None,
        None,
    )
    .unwrap();
    (conn, client)
}

#[test]
fn a_client_that_reads_nothing_is_given_up_after_the_write_timeout() {
    let write = Duration::from_millis(300);
    let (mut conn, _client) = pair(Timeouts {
        tick: Duration::from_secs(1),
        write,
    });
    // Far more than both sockets' buffers hold: the write must stall.
    let reply = vec![b'x'; 64 << 20];
    let started = Instant::now();
    let err = conn
        .write_all(&reply)
        .expect_err("the client reads nothing");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(conn.gave_up());
    assert!(
        started.elapsed() >= write,
        "given up after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_that_reads_slowly_is_not_given_up() {
    let write = Duration::from_millis(500);
    let (mut conn, mut client) = pair(Timeouts {
        tick: Duration::from_secs(1),
        write,
    });
    let total = 8 << 20;
    let reader = thread::spawn(move || {
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // On loopback the receiver opens its window in steps of one MSS (64 KiB)
        // once its buffer is full, so a client must read that much per write
        // timeout for the server to see any room: 32 KiB every 100 ms is
        // 160 KiB per timeout, still thousands of times slower than loopback.
        let mut buf = vec![0u8; 32 * 1024];
        let mut read = 0;
        let started = Instant::now();
        // Slow on purpose for two seconds (four write timeouts), then the rest
        // at full speed.
        while read < total {
            if started.elapsed() < Duration::from_secs(2) {
                thread::sleep(Duration::from_millis(100));
            }
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        read
    });
    let started = Instant::now();
    conn.write_all(&vec![b'x'; total])
        .expect("a client that keeps reading is served");
    assert!(!conn.gave_up());
    assert!(
        started.elapsed() >= write * 2,
        "the write never stalled: the test proves nothing ({:?})",
        started.elapsed()
    );
    assert_eq!(reader.join().unwrap(), total);
}

/// A connection made the way a program with its own loop makes one, on `shutdown`,
/// and its client (reads time out after 10 s rather than hang a failing test).
fn standalone(shutdown: &Shutdown, tick: Duration) -> (Connection<'static>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let conn = Connection::from_stream(stream, shutdown, tick).unwrap();
    (conn, client)
}

fn read_all(client: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    client
        .read_to_end(&mut seen)
        .expect("EOF, not a reset or a timeout");
    seen
}

#[test]
fn buf_read_and_write_serve_lines() {
    use std::io::BufRead;
    let shutdown = Shutdown::new();
    let (mut conn, mut client) = standalone(&shutdown, Duration::from_millis(20));
    client.write_all(b"one\ntwo\n").unwrap();
    client.shutdown(Direction::Write).unwrap();
    let mut reader = io::BufReader::new(&mut conn);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        write!(reader.get_mut(), "got {}\r\n", line.trim_end()).unwrap();
        line.clear();
    }
    drop(reader);
    conn.close_gracefully(Duration::from_secs(5)).unwrap();
    assert_eq!(read_all(&mut client), b"got one\r\ngot two\r\n");
}

#[test]
fn a_forced_connection_fails_its_reads_and_writes_with_forced_not_interrupted() {
    use std::io::BufRead;
    let shutdown = Shutdown::new();
    let (mut conn, _client) = standalone(&shutdown, Duration::from_millis(20));
    shutdown.force();
    let mut buf = [0u8; 16];
    let err = conn.read(&mut buf).unwrap_err();
    assert!(Forced::is(&err), "{err}");
    assert_ne!(err.kind(), io::ErrorKind::Interrupted);
    // `read_line` retries `Interrupted` forever; `Forced` ends it.
    let mut line = String::new();
    let err = io::BufReader::new(&mut conn)
        .read_line(&mut line)
        .unwrap_err();
    assert!(Forced::is(&err), "{err}");
    let err = write!(conn, "late").unwrap_err();
    assert!(Forced::is(&err), "{err}");
}

#[test]
fn a_force_wakes_a_blocked_read_with_forced() {
    let shutdown = Shutdown::new();
    let (mut conn, _client) = standalone(&shutdown, Duration::from_millis(20));
    let forcer = {
        let shutdown = shutdown.clone();
        thread::spawn(move || shutdown.force())
    };
    let mut buf = [0u8; 16];
    // Between requests a read waits across ticks; the force ends it.
    let err = io::Read::read(&mut conn, &mut buf).unwrap_err();
    assert!(Forced::is(&err), "{err}");
    forcer.join().unwrap();
}

#[test]
fn a_passed_deadline_is_its_own_result_not_a_tick() {
    let shutdown = Shutdown::new();
    let (mut conn, _client) = standalone(&shutdown, Duration::from_millis(10));
    let mut buf = [0u8; 16];
    let deadline = Instant::now() + Duration::from_millis(60);
    conn.set_deadline(Some(deadline));
    let mut quiet = 0;
    let received = loop {
        match conn.read(&mut buf).unwrap() {
            Received::Quiet => quiet += 1,
            other => break other,
        }
    };
    assert_eq!(received, Received::Deadline);
    assert!(Instant::now() >= deadline);
    assert!(
        quiet >= 1,
        "ticks shorter than the deadline come back as Quiet"
    );
    // Through `io::Read`, the deadline is a `TimedOut` error; ticks are waited out.
    conn.set_deadline(Some(Instant::now() + Duration::from_millis(30)));
    let err = io::Read::read(&mut conn, &mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn draining_between_requests_is_its_own_result() {
    let shutdown = Shutdown::new();
    let (mut conn, _client) = standalone(&shutdown, Duration::from_millis(10));
    shutdown.trigger();
    let mut buf = [0u8; 16];
    assert_eq!(conn.read_request(&mut buf).unwrap(), Received::Draining);
    assert_eq!(conn.read_pending(&mut buf).unwrap(), Received::Quiet);
}

#[test]
fn a_drain_between_requests_ends_the_conversation_with_the_goodbye() {
    use std::io::BufRead;
    let shutdown = Shutdown::new();
    let (conn, mut client) = standalone(&shutdown, Duration::from_millis(10));
    let mut conn = conn.with_goodbye(b"bye\r\n");
    client.write_all(b"first\n").unwrap();
    let server = thread::spawn(move || {
        let mut reader = io::BufReader::new(&mut conn);
        let mut line = String::new();
        let mut lines = 0;
        while reader.read_line(&mut line)? > 0 {
            lines += 1;
            write!(reader.get_mut(), "got {}\r\n", line.trim_end())?;
            line.clear();
        }
        drop(reader);
        conn.close_gracefully(Duration::from_secs(5))?;
        io::Result::Ok(lines)
    });
    let mut reply = [0u8; 11];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"got first\r\n");
    // The handler now waits between requests; the drain reaches it within a tick.
    shutdown.trigger();
    assert_eq!(read_all(&mut client), b"bye\r\n");
    drop(client);
    assert_eq!(server.join().unwrap().unwrap(), 1);
}

#[test]
fn a_line_in_progress_is_finished_during_a_drain() {
    use std::io::BufRead;
    let shutdown = Shutdown::new();
    let (conn, mut client) = standalone(&shutdown, Duration::from_millis(10));
    let mut conn = conn.with_goodbye(b"bye\r\n");
    client.write_all(b"hal").unwrap();
    let (got_start_tx, got_start_rx) = crossbeam_channel::bounded(1);
    let server = thread::spawn(move || {
        let mut reader = io::BufReader::new(&mut conn);
        let mut line = String::new();
        // The first bytes of the line, then the drain, then the rest.
        reader.fill_buf()?;
        got_start_tx.send(()).unwrap();
        while reader.read_line(&mut line)? > 0 {
            write!(reader.get_mut(), "got {}\r\n", line.trim_end())?;
            line.clear();
        }
        drop(reader);
        conn.close_gracefully(Duration::from_secs(5))
    });
    got_start_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server read the start of the line");
    shutdown.trigger();
    client.write_all(b"f\n").unwrap();
    assert_eq!(read_all(&mut client), b"got half\r\nbye\r\n");
    drop(client);
    server.join().unwrap().unwrap();
}
