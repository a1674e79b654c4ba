//! The echo zoo: each scenario a kind of client a real server meets, each on threads
//! of its own with blocking sockets (a thread per connection: at the probe's scale, a
//! few dozen, that costs less than an event loop to write and read).
//!
//! Every scenario connects and gets going, then says `ready`, so the scenarios reach
//! the server one after another in a fixed order (the queued client last).

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::clients::{Ctx, LineConn};
use super::report::Conn;
use super::scenario::{armed, spawn_conn, Arm, Running};

/// Pipelined batch size.
const PIPELINE: u64 = 8;

/// How long the client that never reads stays silent after the signal.
pub const NEVER_READS_WAKE: Duration = Duration::from_millis(500);

/// Closed-loop load: each connection sends its next request as soon as its reply is in.
pub fn load(ctx: &Arc<Ctx>, conns: u32) -> io::Result<Running> {
    let mut threads = Vec::new();
    for i in 0..conns {
        threads.push(spawn_conn(ctx, "load", move |ctx, ready| {
            let mut conn = match LineConn::connect(ctx, format!("load{i}")) {
                Ok(conn) => conn,
                Err(rec) => return (rec, Vec::new()),
            };
            conn.send(1);
            conn.until_answered();
            let _ = ready.send(());
            while !conn.ended && conn.rec.goodbyes == 0 {
                if !conn.send(1) {
                    break;
                }
                conn.until_answered();
                conn.read_buffered();
            }
            (conn.finish(), Vec::new())
        })?);
    }
    Ok(Running {
        name: "load",
        what: "closed-loop clients: next request as soon as the reply is in",
        goodbye_expected: true,
        threads,
    })
}

/// Idle connections: one request answered, then quiet.
pub fn idle(ctx: &Arc<Ctx>) -> io::Result<Running> {
    let mut threads = Vec::new();
    for i in 0..2 {
        threads.push(spawn_conn(ctx, "idle", move |ctx, ready| {
            let mut conn = match LineConn::connect(ctx, format!("idle{i}")) {
                Ok(conn) => conn,
                Err(rec) => return (rec, Vec::new()),
            };
            conn.send(1);
            conn.until_answered();
            let _ = ready.send(());
            (conn.finish(), Vec::new())
        })?);
    }
    Ok(Running {
        name: "idle",
        what: "connections answered once, then quiet",
        goodbye_expected: true,
        threads,
    })
}

/// Pipelined: batches of requests in one write, through the signal.
pub fn pipelined(ctx: &Arc<Ctx>) -> io::Result<Running> {
    let thread = spawn_conn(ctx, "pipelined", |ctx, ready| {
        let mut conn = match LineConn::connect(ctx, "pipe".into()) {
            Ok(conn) => conn,
            Err(rec) => return (rec, Vec::new()),
        };
        conn.send(PIPELINE);
        conn.until_answered();
        let _ = ready.send(());
        while !conn.ended && conn.rec.goodbyes == 0 {
            if !conn.send(PIPELINE) {
                break;
            }
            conn.until_answered();
            conn.read_buffered();
        }
        (conn.finish(), Vec::new())
    })?;
    Ok(Running {
        name: "pipelined",
        what: "batches of 8 requests in one write",
        goodbye_expected: true,
        threads: vec![thread],
    })
}

/// A request written at the last moment before the signal.
pub fn in_flight(ctx: &Arc<Ctx>) -> io::Result<(Running, Arm)> {
    armed(
        ctx,
        "in-flight",
        "a request written just before the signal",
        true,
        |ctx| Ok(Box::new(LineConn::connect(ctx, "flight".into())?)),
        |_conn| {},
    )
}

/// A client that floods requests and never reads until half a second after the
/// signal: the server's buffers fill; then every reply must still come, in order.
pub fn never_reads(ctx: &Arc<Ctx>) -> io::Result<Running> {
    let thread = spawn_conn(ctx, "never-reads", |ctx, ready| {
        // Small buffers on the client's side: the server's writes block (and its reads
        // stop) after tens of kilobytes, not the megabytes loopback would take.
        let mut conn = match small_buffers(ctx.addr) {
            Ok(stream) => LineConn::from_stream(ctx, "mute".into(), stream),
            Err(_) => match LineConn::connect(ctx, "mute".into()) {
                Ok(conn) => conn,
                Err(rec) => return (rec, Vec::new()),
            },
        };
        conn.rec.pipe_allowance = true;
        flood(&mut conn);
        let _ = ready.send(());
        ctx.wait_signal();
        // Silent for a while after the signal, then a reader again.
        let wake = Instant::now() + NEVER_READS_WAKE;
        let _ = ctx.server_gone.recv_deadline(wake);
        let notes = vec![format!(
            "{} requests sent before its writes stalled; starts reading {} ms after the signal",
            conn.rec.sent,
            NEVER_READS_WAKE.as_millis()
        )];
        (conn.finish(), notes)
    })?;
    Ok(Running {
        name: "never-reads",
        what: "floods requests without reading until the buffers are full",
        goodbye_expected: true,
        threads: vec![thread],
    })
}

/// Writes batches of requests until the writes stall (both sides' buffers full) or
/// 64 MiB are out, whichever is first, counting each request once written whole.
fn flood(conn: &mut LineConn<'_>) {
    let request_len = conn.request(0).len() as u64 + 1;
    let _ = conn
        .stream()
        .set_write_timeout(Some(Duration::from_millis(200)));
    let mut written: u64 = 0;
    let mut stalled = false;
    while !stalled && written < 64 << 20 {
        let batch = conn.batch(256);
        let mut offset = 0;
        while offset < batch.len() {
            let result = {
                let mut stream = conn.stream();
                stream.write(&batch[offset..])
            };
            match result {
                Ok(n) => {
                    offset += n;
                    written += n as u64;
                    let whole = written / request_len;
                    if whole > conn.rec.sent {
                        let more = whole - conn.rec.sent;
                        conn.count_sent(more);
                    }
                }
                Err(_) => {
                    stalled = true;
                    break;
                }
            }
        }
    }
}

/// A connection whose receive and send buffers are 16 KiB (the kernel may round).
fn small_buffers(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_recv_buffer_size(16 << 10)?;
    socket.set_send_buffer_size(16 << 10)?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// Slowloris: a byte a second, before and after the signal, until the server closes.
pub fn slowloris(ctx: &Arc<Ctx>) -> io::Result<Running> {
    let thread = spawn_conn(ctx, "slowloris", |ctx, ready| {
        let mut conn = match LineConn::connect(ctx, "slow".into()) {
            Ok(conn) => conn,
            Err(rec) => return (rec, Vec::new()),
        };
        let Ok(mut writer) = conn.stream().try_clone() else {
            return (conn.finish(), vec!["could not clone the socket".into()]);
        };
        let line = format!("{}\n", conn.request(0)).into_bytes();
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let stop = ctx.stop;
        let dripper = thread::Builder::new()
            .name("probe-slowloris-drip".into())
            .spawn(move || {
                let mut sent = 0usize;
                for byte in &line {
                    if writer.write_all(&[*byte]).is_err() {
                        break;
                    }
                    sent += 1;
                    let next = (Instant::now() + Duration::from_secs(1)).min(stop);
                    match done_rx.recv_deadline(next) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) if next < stop => {}
                        _ => break,
                    }
                }
                sent
            });
        let _ = ready.send(());
        // A whole line takes longer than any sane drain: what matters is how the server
        // ends a connection with half a request in it.
        conn.drain();
        drop(done_tx);
        let bytes = dripper.ok().and_then(|d| d.join().ok()).unwrap_or(0);
        if bytes == line_len(&conn) {
            conn.count_sent(1);
        }
        let notes = vec![format!("{bytes} bytes dripped, one a second")];
        (conn.rec, notes)
    })?;
    Ok(Running {
        name: "slowloris",
        what: "a request sent one byte a second",
        goodbye_expected: true,
        threads: vec![thread],
    })
}

fn line_len(conn: &LineConn<'_>) -> usize {
    conn.request(0).len() + 1
}

/// A client that writes a request and shuts down its sending side just before the
/// signal: the reply must still come, then a FIN.
pub fn half_closed(ctx: &Arc<Ctx>) -> io::Result<(Running, Arm)> {
    armed(
        ctx,
        "half-closed",
        "a request, then the client's FIN, just before the signal",
        // It said it was done: a server may answer and close without a goodbye.
        false,
        |ctx| Ok(Box::new(LineConn::connect(ctx, "half".into())?)),
        |conn| {
            let _ = conn.stream().shutdown(Shutdown::Write);
        },
    )
}

/// The last connection before the signal, its request sent at once: behind a busy
/// pool it waits in a queue, and must be served all the same.
pub fn queued(ctx: &Arc<Ctx>) -> io::Result<Running> {
    let thread = spawn_conn(ctx, "queued", |ctx, ready| {
        let mut conn = match LineConn::connect(ctx, "queued".into()) {
            Ok(conn) => conn,
            Err(rec) => return (rec, Vec::new()),
        };
        conn.send(1);
        let _ = ready.send(());
        conn.drain();
        let queued = match (conn.first_reply_at, ctx.signal_at.get()) {
            (Some(reply), Some(signal)) => reply > *signal,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let note = if queued {
            "not answered before the signal (queued, or dropped)".to_string()
        } else {
            "answered before the signal: the pool was not busy".to_string()
        };
        (conn.rec, vec![note])
    })?;
    Ok(Running {
        name: "queued",
        what: "the last connection before the signal, request sent at once",
        goodbye_expected: true,
        threads: vec![thread],
    })
}

/// The echo exchange of a new connection: one line, its reply, the end.
pub fn exchange(ctx: &Ctx, stream: TcpStream) -> Conn {
    let mut conn = LineConn::from_stream(ctx, "new".into(), stream);
    if conn.send(1) {
        conn.until_answered();
    }
    conn.finish()
}
