//! The HTTP zoo: keep-alive clients a real web server meets at shutdown, each on
//! threads of its own with blocking sockets, in the echo zoo's fixed order (each
//! ready before the next). Every request is a `GET` of `--path` (default `/`), except
//! the slow upload's `POST`. A response with `Connection: close` is the goodbye.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::clients::{Ctx, Event};
use super::http_conn::HttpConn;
use super::report::Conn;
use super::scenario::{armed, spawn_conn, Arm, Running};

/// Requests the slow download pipelines in one write, then reads slowly.
const DOWNLOAD_BATCH: u64 = 64;
/// The slow download reads this many bytes at a time, after this pause each.
const DOWNLOAD_READ: usize = 256;
const DOWNLOAD_PAUSE: Duration = Duration::from_millis(2);
/// The slow upload's body: this many bytes, one every `UPLOAD_DRIP`.
const UPLOAD_BYTES: usize = 20;
const UPLOAD_DRIP: Duration = Duration::from_millis(50);

/// Closed-loop keep-alive load: the next `GET` as soon as the response is in, until
/// a response says `Connection: close`.
pub fn load(ctx: &Arc<Ctx>, conns: u32) -> io::Result<Running> {
    let mut threads = Vec::new();
    for _ in 0..conns {
        threads.push(spawn_conn(ctx, "load", |ctx, ready| {
            let mut conn = match HttpConn::connect(ctx) {
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
            }
            (conn.finish(), Vec::new())
        })?);
    }
    Ok(Running {
        name: "load",
        what: "keep-alive, active: the next GET as soon as the response is in",
        // The last response must say `Connection: close`: without it, the request
        // the client sends next meets a bare EOF.
        goodbye_expected: true,
        threads,
    })
}

/// Idle keep-alive connections: one response, then quiet. The server may close them
/// without a word, gracefully (FIN).
pub fn idle(ctx: &Arc<Ctx>) -> io::Result<Running> {
    let mut threads = Vec::new();
    for _ in 0..2 {
        threads.push(spawn_conn(ctx, "idle", |ctx, ready| {
            let mut conn = match HttpConn::connect(ctx) {
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
        what: "keep-alive, idle: answered once, then quiet",
        goodbye_expected: false,
        threads,
    })
}

/// A `GET` written at the last moment before the signal: it must be answered.
pub fn in_flight(ctx: &Arc<Ctx>) -> io::Result<(Running, Arm)> {
    armed(
        ctx,
        "in-flight",
        "a GET written just before the signal",
        false,
        |ctx| Ok(Box::new(HttpConn::connect(ctx)?)),
        |_conn| {},
    )
}

/// A slow download: batches of pipelined `GET`s whose responses are read a few
/// hundred bytes at a time, through the signal, until a response says
/// `Connection: close`. (A server with a large response could be probed with one
/// large body; the template's routes are small, so many responses make the volume.)
pub fn slow_download(ctx: &Arc<Ctx>) -> io::Result<Running> {
    let thread = spawn_conn(ctx, "slow-download", |ctx, ready| {
        let mut conn = match small_receive_buffer(ctx) {
            Ok(stream) => HttpConn::from_stream(ctx, stream),
            Err(_) => match HttpConn::connect(ctx) {
                Ok(conn) => conn,
                Err(rec) => return (rec, Vec::new()),
            },
        };
        conn.read_slowly(DOWNLOAD_READ, DOWNLOAD_PAUSE);
        conn.send(DOWNLOAD_BATCH);
        conn.until_answered();
        let _ = ready.send(());
        while !conn.ended && conn.rec.goodbyes == 0 {
            if !conn.send(DOWNLOAD_BATCH) {
                break;
            }
            conn.until_answered();
        }
        let notes = vec![format!(
            "{DOWNLOAD_BATCH} pipelined GETs a write, responses read {DOWNLOAD_READ} bytes every {} ms",
            DOWNLOAD_PAUSE.as_millis()
        )];
        (conn.finish(), notes)
    })?;
    Ok(Running {
        name: "slow-download",
        what: "pipelined GETs whose responses are read slowly",
        goodbye_expected: true,
        threads: vec![thread],
    })
}

/// A connection whose receive buffer is 8 KiB (the kernel may round): the responses
/// wait in the server's buffers, not the client's.
fn small_receive_buffer(ctx: &Ctx) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(ctx.addr), Type::STREAM, None)?;
    socket.set_recv_buffer_size(8 << 10)?;
    socket.connect_timeout(&ctx.addr.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// A slow upload: just before the signal, a `POST` head and the first byte of its
/// body; the rest drips in, a byte every 50 ms, until a response comes. It must be
/// answered (any status: the server decides what a drain does with an upload), and the
/// connection closed only after the response, gracefully.
pub fn slow_upload(ctx: &Arc<Ctx>) -> io::Result<(Running, Arm)> {
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let (armed_tx, armed_rx) = crossbeam_channel::bounded::<()>(1);
    let thread = spawn_conn(ctx, "slow-upload", move |ctx, ready| {
        let mut conn = match HttpConn::connect(ctx) {
            Ok(conn) => conn,
            Err(rec) => return (rec, Vec::new()),
        };
        let Ok(writer) = conn.stream().try_clone() else {
            return (conn.finish(), vec!["could not clone the socket".into()]);
        };
        let _ = ready.send(());
        let _ = go_rx.recv_deadline(ctx.stop);
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lameduck-probe\r\n\
             Content-Type: text/plain\r\nContent-Length: {UPLOAD_BYTES}\r\n\r\nx",
            ctx.path, ctx.addr
        );
        if !conn.send_raw(head.as_bytes(), 1) {
            drop(armed_tx);
            return (conn.finish(), Vec::new());
        }
        drop(armed_tx);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let dripper = drip_body(writer, done_rx, ctx.stop);
        // The first response (or the end) stops the drip, as a real client would.
        while conn.next() == Event::Other {}
        drop(done_tx);
        let bytes = dripper.ok().and_then(|d| d.join().ok()).unwrap_or(0);
        let status = conn
            .statuses
            .first()
            .map_or("no response".to_string(), |s| format!("status {s}"));
        let notes = vec![format!(
            "{status} after {bytes} of {UPLOAD_BYTES} body bytes, one every {} ms",
            UPLOAD_DRIP.as_millis()
        )];
        (conn.finish(), notes)
    })?;
    Ok((
        Running {
            name: "slow-upload",
            what: "a POST whose body drips in across the signal",
            goodbye_expected: false,
            threads: vec![thread],
        },
        Arm {
            go: go_tx,
            armed: armed_rx,
        },
    ))
}

/// Starts the thread that writes the rest of the slow upload's body, a byte every
/// `UPLOAD_DRIP`, until the body is whole, `done` is dropped, a write fails, or `stop`;
/// it returns the body bytes sent, the one written with the head included.
fn drip_body(
    mut writer: TcpStream,
    done: Receiver<()>,
    stop: Instant,
) -> io::Result<JoinHandle<usize>> {
    thread::Builder::new()
        .name("probe-upload-drip".into())
        .spawn(move || {
            let mut sent = 1usize;
            while sent < UPLOAD_BYTES {
                let next = (Instant::now() + UPLOAD_DRIP).min(stop);
                match done.recv_deadline(next) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) if next < stop => {}
                    _ => break,
                }
                if writer.write_all(b"x").is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
}

/// The HTTP exchange of a new connection: one `GET`, its response, the end.
pub fn exchange(ctx: &Ctx, stream: TcpStream) -> Conn {
    let mut conn = HttpConn::from_stream(ctx, stream);
    if conn.send(1) {
        conn.until_answered();
    }
    conn.finish()
}
