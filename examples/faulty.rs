//! A small echo server with shutdown faults planted on purpose, for `lameduck probe`'s
//! tests: each fault is a mistake real servers make, a few lines each. Without
//! `--fault` it drains cleanly: the lines it has are answered, then the goodbye, then a
//! graceful close (FIN after the client's EOF), then the exit.
//!
//! ```text
//! cargo run --example faulty -- [--fault NAME] [--delay MS] [--workers K]
//! ```
//!
//! Faults: `rst` (abortive close), `goodbye-first` (goodbye instead of the reply being
//! worked on), `reply-after-goodbye` (goodbye written to every client at the signal
//! while handlers keep answering, as the asyncio tutorial does), `drop-queued` (only the
//! first K connections are served; the rest wait and are dropped at the signal),
//! `listener-open` (the listener stays open, unaccepted, for a second after the drain),
//! `exit0-forced` (no drain: everything cut after 300 ms, exit 0 all the same).
//!
//! With `--http` it speaks HTTP/1.1 instead (`GET`/`POST` answered `200 Hello, World!`,
//! keep-alive; at the signal the requests it has are answered, the last with
//! `Connection: close`, idle connections closed after a 100 ms keep-alive grace).
//! HTTP faults: `rst` (idle keep-alive connections closed abortively), `drop-request`
//! (at the signal, requests not yet answered are dropped: the connection just closes).
#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown as Side, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use lameduck::{signals, Shutdown};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Rst,
    GoodbyeFirst,
    ReplyAfterGoodbye,
    DropQueued,
    ListenerOpen,
    Exit0Forced,
    DropRequest,
}

const GOODBYE: &[u8] = b"Server is shutting down. Goodbye!\r\n";

fn main() -> ExitCode {
    let mut fault = Fault::None;
    let mut delay = Duration::ZERO;
    let mut workers = usize::MAX;
    let mut http = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--http" {
            http = true;
            continue;
        }
        let value = args.next().unwrap_or_default();
        match (arg.as_str(), value.as_str()) {
            ("--fault", "none") => fault = Fault::None,
            ("--fault", "rst") => fault = Fault::Rst,
            ("--fault", "goodbye-first") => fault = Fault::GoodbyeFirst,
            ("--fault", "reply-after-goodbye") => fault = Fault::ReplyAfterGoodbye,
            ("--fault", "drop-queued") => fault = Fault::DropQueued,
            ("--fault", "listener-open") => fault = Fault::ListenerOpen,
            ("--fault", "exit0-forced") => fault = Fault::Exit0Forced,
            ("--fault", "drop-request") => fault = Fault::DropRequest,
            ("--delay", ms) if ms.parse::<u64>().is_ok() => {
                delay = Duration::from_millis(ms.parse().unwrap_or(0));
            }
            ("--workers", k) if k.parse::<usize>().is_ok() => workers = k.parse().unwrap_or(1),
            _ => {
                eprintln!("faulty: bad argument {arg} {value}");
                return ExitCode::from(2);
            }
        }
    }
    match serve(fault, delay, workers, http) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("faulty: {err}");
            ExitCode::from(1)
        }
    }
}

/// Serves one connection, in either protocol.
type Handler = fn(TcpStream, Fault, Duration, &Shutdown) -> io::Result<()>;

fn serve(fault: Fault, delay: Duration, workers: usize, http: bool) -> io::Result<()> {
    let handle: Handler = if http { handle_http } else { handle };
    let shutdown = Shutdown::new();
    signals::install(&shutdown).map_err(io::Error::other)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let Taken {
        clients,
        mut handlers,
        parked,
    } = accept_until_signal(&listener, &shutdown, fault, delay, workers, handle)?;
    // The signal. Connections already in the backlog are taken and served first:
    // closing a listener resets them (Linux).
    if !matches!(fault, Fault::ListenerOpen | Fault::DropQueued) {
        while let Ok((stream, _)) = listener.accept() {
            stream.set_nonblocking(false)?;
            let shutdown = shutdown.clone();
            handlers.push(thread::spawn(move || {
                let _ = handle(stream, fault, delay, &shutdown);
            }));
        }
    }
    let listener = if fault == Fault::ListenerOpen {
        Some(listener)
    } else {
        drop(listener);
        None
    };
    drop(parked);
    match fault {
        Fault::Exit0Forced => {
            thread::sleep(Duration::from_millis(300));
            std::process::exit(0);
        }
        Fault::ReplyAfterGoodbye => {
            // The tutorial's broadcast: a goodbye to everyone, handlers still running.
            if let Ok(clients) = clients.lock() {
                for mut client in clients.iter() {
                    let _ = client.write_all(GOODBYE);
                }
            }
        }
        _ => {}
    }
    for handler in handlers {
        let _ = handler.join();
    }
    if let Some(listener) = listener {
        thread::sleep(Duration::from_secs(1));
        drop(listener);
    }
    Ok(())
}

/// The connections taken before the signal: their handlers, clones of their streams
/// (for `reply-after-goodbye`'s broadcast), and those `drop-queued` never serves.
struct Taken {
    clients: Arc<Mutex<Vec<TcpStream>>>,
    handlers: Vec<thread::JoinHandle<()>>,
    parked: Vec<TcpStream>,
}

/// Accepts until the signal, a handler thread per connection (with `drop-queued`,
/// only the first `workers`: the rest are parked).
fn accept_until_signal(
    listener: &TcpListener,
    shutdown: &Shutdown,
    fault: Fault,
    delay: Duration,
    workers: usize,
    handle: Handler,
) -> io::Result<Taken> {
    let clients: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let mut handlers = Vec::new();
    let mut parked = Vec::new();
    let mut accepted = 0usize;
    while !shutdown.is_triggered() {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                accepted += 1;
                if fault == Fault::DropQueued && accepted > workers {
                    parked.push(stream);
                    continue;
                }
                if let Ok(clone) = stream.try_clone() {
                    clients
                        .lock()
                        .map_err(|_| io::Error::other("poisoned"))?
                        .push(clone);
                }
                let shutdown = shutdown.clone();
                handlers.push(thread::spawn(move || {
                    let _ = handle(stream, fault, delay, &shutdown);
                }));
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                shutdown.wait_timeout(Duration::from_millis(5));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(Taken {
        clients,
        handlers,
        parked,
    })
}

/// `Echo: <line trimmed>\r\n`.
fn reply(line: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    format!("Echo: {}\r\n", text.trim()).into_bytes()
}

fn handle(stream: TcpStream, fault: Fault, delay: Duration, shutdown: &Shutdown) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut stop_at: Option<Instant> = None;
    loop {
        if fault == Fault::ReplyAfterGoodbye && shutdown.is_triggered() {
            // Keeps answering for a second after the broadcast goodbye.
            let at = *stop_at.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
            if Instant::now() >= at {
                return Ok(());
            }
        } else if shutdown.is_triggered() && fault != Fault::Exit0Forced {
            return goodbye(&mut reader, &mut writer, fault);
        }
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                writer.shutdown(Side::Write)?;
                return Ok(());
            }
            Ok(_) if line.ends_with(b"\n") => {
                thread::sleep(delay);
                if fault == Fault::GoodbyeFirst && shutdown.is_triggered() {
                    writer.write_all(GOODBYE)?;
                    return Ok(());
                }
                writer.write_all(&reply(&line))?;
                line.clear();
            }
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => return Err(err),
        }
    }
}

/// The clean drain: answer the complete lines already read, say goodbye, close
/// gracefully (or, with `rst`, abortively).
fn goodbye(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    fault: Fault,
) -> io::Result<()> {
    let buffered = reader.buffer().to_vec();
    reader.consume(buffered.len());
    let mut rest = buffered.as_slice();
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        writer.write_all(&reply(&rest[..=end]))?;
        rest = &rest[end + 1..];
    }
    writer.write_all(GOODBYE)?;
    if fault == Fault::Rst {
        socket2::SockRef::from(&*writer).set_linger(Some(Duration::ZERO))?;
        return Ok(());
    }
    writer.shutdown(Side::Write)?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match reader.get_mut().read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// The HTTP/1.1 handler: requests framed by `Content-Length` (none: no body), each
/// answered `200 Hello, World!`. Draining, the requests it has are answered, the last
/// with `Connection: close`; an idle connection gets a 100 ms grace from its last
/// response (its next request may be on the way), then a graceful close.
fn handle_http(
    stream: TcpStream,
    fault: Fault,
    delay: Duration,
    shutdown: &Shutdown,
) -> io::Result<()> {
    const GRACE: Duration = Duration::from_millis(100);
    stream.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut stream = stream;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    let mut last_response = Instant::now();
    let mut drain_until: Option<Instant> = None;
    loop {
        while let Some(len) = http_request_len(&buf) {
            if fault == Fault::DropRequest && shutdown.is_triggered() {
                return Ok(());
            }
            buf.drain(..len);
            thread::sleep(delay);
            let closing = shutdown.is_triggered() && http_request_len(&buf).is_none();
            let connection = if closing { "close" } else { "keep-alive" };
            stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: {connection}\r\n\r\nHello, World!"
                )
                .as_bytes(),
            )?;
            last_response = Instant::now();
            if closing {
                return http_close(stream, fault);
            }
        }
        if shutdown.is_triggered() && buf.is_empty() {
            let until = *drain_until.get_or_insert(last_response + GRACE);
            if Instant::now() >= until {
                return http_close(stream, fault);
            }
        } else if shutdown.is_triggered() && fault == Fault::DropRequest {
            return Ok(());
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                stream.shutdown(Side::Write)?;
                return Ok(());
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => return Err(err),
        }
    }
}

/// The length of the complete request at the front of `buf`, head and body.
fn http_request_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let body = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + body).then_some(head_end + body)
}

/// A graceful close (FIN, then read to the client's EOF for up to a second), or with
/// `rst` an abortive one.
fn http_close(mut stream: TcpStream, fault: Fault) -> io::Result<()> {
    if fault == Fault::Rst {
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        return Ok(());
    }
    stream.shutdown(Side::Write)?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    Ok(())
}
