//! New connections after the signal, one every 20 ms until the server exits, in
//! either protocol: each must be refused, or served; accepted and then dropped is the
//! problem (a listener left open while nobody accepts).

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::clients::Ctx;
use super::report::{Conn, Row};

/// Sends one request on an accepted connection and reads to its end.
pub type ExchangeFn = fn(&Ctx, TcpStream) -> Conn;

/// At most this many tries (30 s at one every 20 ms): a server that never exits is
/// killed anyway.
const MAX_TRIES: u64 = 1500;

/// Starts the thread that waits for the signal, then connects every 20 ms until the
/// server exits, and grades what each attempt met.
pub fn new_connects(ctx: &Arc<Ctx>, exchange: ExchangeFn) -> io::Result<JoinHandle<Row>> {
    let ctx = Arc::clone(ctx);
    thread::Builder::new()
        .name("probe-new-connects".into())
        .spawn(move || {
            let mut row = Row::new(
                "new-connects",
                "a new connection every 20 ms from the signal to the exit",
                false,
            );
            ctx.wait_signal();
            let attempts = connect_until_exit(&ctx, exchange);
            grade(&mut row, attempts);
            row
        })
}

/// The attempts a run made: one thread each, and how many could not be started.
struct Attempts {
    tries: u64,
    threads: Vec<JoinHandle<Attempt>>,
    failed: u64,
}

/// Tries a connection every 20 ms, each on a thread of its own, until the server has
/// gone, the run's hard stop, or [`MAX_TRIES`].
fn connect_until_exit(ctx: &Arc<Ctx>, exchange: ExchangeFn) -> Attempts {
    let mut attempts = Attempts {
        tries: 0,
        threads: Vec::new(),
        failed: 0,
    };
    while attempts.tries < MAX_TRIES {
        attempts.tries += 1;
        let shared = Arc::clone(ctx);
        let attempt = thread::Builder::new()
            .name("probe-connect".into())
            .spawn(move || attempt(&shared, exchange));
        match attempt {
            Ok(handle) => attempts.threads.push(handle),
            Err(_) => attempts.failed += 1,
        }
        let next = Instant::now() + Duration::from_millis(20);
        if !matches!(
            ctx.server_gone.recv_deadline(next.min(ctx.stop)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        ) || Instant::now() >= ctx.stop
        {
            break;
        }
    }
    attempts
}

/// Joins the attempts and writes into `row` what they met: the served connections'
/// records, a note with the counts, and a problem for each kind of failure.
fn grade(row: &mut Row, attempts: Attempts) {
    let Attempts {
        tries,
        threads,
        mut failed,
    } = attempts;
    let (mut refused, mut served, mut told, mut dropped, mut timed_out) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for handle in threads {
        match handle.join() {
            Ok(Attempt::Refused) => refused += 1,
            Ok(Attempt::TimedOut) => timed_out += 1,
            Ok(Attempt::Accepted(conn)) => {
                if conn.replies > 0 {
                    served += 1;
                } else if conn.goodbyes > 0 {
                    told += 1;
                } else {
                    dropped += 1;
                }
                row.conns.push(conn);
            }
            Err(_) => failed += 1,
        }
    }
    row.notes.push(format!(
        "{tries} attempts: {refused} refused, {served} served, {told} told goodbye, \
         {dropped} accepted then dropped, {timed_out} connects timed out"
    ));
    if dropped > 0 {
        row.problems.push(format!(
            "{dropped} accepted then dropped (listener left open?)"
        ));
    }
    if timed_out > 0 {
        row.problems
            .push(format!("{timed_out} connects got no answer (SYN dropped)"));
    }
    if failed > 0 {
        row.problems
            .push(format!("{failed} attempts the probe could not run"));
    }
}

enum Attempt {
    Refused,
    TimedOut,
    Accepted(Conn),
}

fn attempt(ctx: &Ctx, exchange: ExchangeFn) -> Attempt {
    match TcpStream::connect_timeout(&ctx.addr, Duration::from_millis(500)) {
        Ok(stream) => Attempt::Accepted(exchange(ctx, stream)),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => Attempt::Refused,
        Err(_) => Attempt::TimedOut,
    }
}
