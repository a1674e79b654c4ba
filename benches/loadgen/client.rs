//! One engine thread: a `mio` poll over its share of client sockets, each a small state
//! machine (connecting → open → closed) that checks every reply byte for byte and keeps
//! what the shutdown verdicts need (requests sent and answered, goodbyes, how it ended).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::stats::Stats;
use super::{Mode, Plan, Until};

/// The goodbye line the echo protocol ends with.
pub const GOODBYE: &[u8] = b"Server is shutting down. Goodbye!\r\n";

/// A reply this long without `\n` is garbage, not a slow reply.
const MAX_PARTIAL: usize = 1 << 20;

/// Longest the loop sleeps in `poll` before it looks at the clock again.
const TICK: Duration = Duration::from_millis(5);

/// How a client's connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Still open when the run ended.
    Open,
    /// EOF after a goodbye: the contract's ending.
    CleanEof,
    /// EOF without a goodbye.
    Eof,
    Reset,
    Refused,
    Other,
    /// Dropped by us (throughput run over, or garbage from the server).
    Dropped,
}

struct Client {
    stream: Option<TcpStream>,
    connecting: bool,
    end: End,
    connect_at: Instant,
    next_seq: u64,
    /// Send time of the one request in flight.
    in_flight: Option<Instant>,
    /// The exact reply owed to the request in flight.
    expect: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    partial: Vec<u8>,
    served: bool,
    goodbyes: u32,
    after_goodbye: u32,
    corrupt: u32,
    sent: u64,
    answered: u64,
}

impl Client {
    fn new(stream: Option<TcpStream>, connect_at: Instant) -> Client {
        Client {
            stream,
            connecting: true,
            end: End::Open,
            connect_at,
            next_seq: 0,
            in_flight: None,
            expect: Vec::with_capacity(32),
            out: Vec::with_capacity(32),
            out_pos: 0,
            partial: Vec::with_capacity(256),
            served: false,
            goodbyes: 0,
            after_goodbye: 0,
            corrupt: 0,
            sent: 0,
            answered: 0,
        }
    }

    fn is_closed(&self) -> bool {
        self.stream.is_none()
    }

    fn close(&mut self, end: End, poll: &Poll) {
        if let Some(mut stream) = self.stream.take() {
            let _ = poll.registry().deregister(&mut stream);
        }
        self.end = end;
    }

    fn fail(&mut self, e: &io::Error, stats: &mut Stats, poll: &Poll) {
        let end = match e.kind() {
            io::ErrorKind::ConnectionRefused => {
                stats.errors.refused += 1;
                End::Refused
            }
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => {
                stats.errors.reset += 1;
                End::Reset
            }
            _ => {
                stats.errors.other += 1;
                End::Other
            }
        };
        self.close(end, poll);
    }

    fn may_send(&self, plan: &Plan, now: Instant) -> bool {
        if self.goodbyes > 0 || self.in_flight.is_some() {
            return false;
        }
        match (plan.mode, plan.until) {
            (Mode::PingOnce, _) => self.sent == 0,
            (Mode::ClosedLoop, Until::WindowEnd) => now < plan.measure_to,
            (Mode::ClosedLoop, Until::AllClosed) => true,
        }
    }

    fn send_next(&mut self, now: Instant, stats: &mut Stats, poll: &Poll) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.out.clear();
        self.out_pos = 0;
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.out, "ping {seq}");
        self.expect.clear();
        let _ = write!(self.expect, "Echo: ping {seq}\r\n");
        self.in_flight = Some(now);
        self.sent += 1;
        self.flush(stats, poll);
    }

    fn flush(&mut self, stats: &mut Stats, poll: &Poll) {
        while self.out_pos < self.out.len() {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            match stream.write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                // The rest goes out on the next writable event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(&e, stats, poll),
            }
        }
    }

    fn on_event(
        &mut self,
        event: &mio::event::Event,
        scratch: &mut [u8],
        plan: &Plan,
        stats: &mut Stats,
        poll: &Poll,
    ) {
        let now = Instant::now();
        if self.connecting {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            // mio's recipe for a non-blocking connect: a pending error first, then
            // peer_addr tells "connected" from "not yet".
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(&e, stats, poll),
            }
            match stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(&e, stats, poll),
            }
            let _ = stream.set_nodelay(true);
            self.connecting = false;
            stats.connected += 1;
            if self.may_send(plan, now) {
                self.send_next(now, stats, poll);
            }
        } else if event.is_writable() && self.out_pos < self.out.len() {
            self.flush(stats, poll);
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_all(scratch, plan, stats, poll);
        }
    }

    /// Edge-triggered: read until WouldBlock, then handle every complete line.
    fn read_all(&mut self, scratch: &mut [u8], plan: &Plan, stats: &mut Stats, poll: &Poll) {
        let mut eof = false;
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            match stream.read(scratch) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Lines that arrived before the reset still count.
                    self.take_lines(Instant::now(), plan, stats);
                    return self.fail(&e, stats, poll);
                }
            }
        }
        let now = Instant::now();
        self.take_lines(now, plan, stats);
        if eof {
            let end = if self.goodbyes > 0 {
                End::CleanEof
            } else {
                if self.in_flight.is_some() {
                    stats.errors.eof += 1;
                }
                End::Eof
            };
            return self.close(end, poll);
        }
        if self.partial.len() > MAX_PARTIAL {
            stats.errors.corrupt += 1;
            self.corrupt += 1;
            return self.close(End::Dropped, poll);
        }
        // After the whole read: a goodbye in the same segment as a reply means no
        // next request, as a well-behaved client would do.
        if self.may_send(plan, now) {
            self.send_next(now, stats, poll);
        }
    }

    fn take_lines(&mut self, now: Instant, plan: &Plan, stats: &mut Stats) {
        let buf = std::mem::take(&mut self.partial);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            self.on_line(&buf[start..=start + pos], now, plan, stats);
            start += pos + 1;
        }
        self.partial = buf;
        self.partial.drain(..start);
    }

    fn on_line(&mut self, line: &[u8], now: Instant, plan: &Plan, stats: &mut Stats) {
        if self.goodbyes > 0 {
            // Nothing may follow the goodbye, not even a second goodbye.
            self.after_goodbye += 1;
            stats.after_goodbye += 1;
            if line == GOODBYE {
                self.goodbyes += 1;
            }
            return;
        }
        if line == GOODBYE {
            self.goodbyes += 1;
            return;
        }
        let Some(sent_at) = self.in_flight.take() else {
            // A line nobody asked for.
            stats.errors.corrupt += 1;
            self.corrupt += 1;
            return;
        };
        if line == self.expect.as_slice() {
            self.answered += 1;
            stats.replies_ok += 1;
            if now >= plan.measure_from && now < plan.measure_to {
                stats.replies_in_window += 1;
                let _ = stats.latency.record(nanos(now - sent_at));
            }
            // Served means served within the run: once one engine thread has closed
            // its sockets, a pool may hand a freed worker to a queued client of
            // another thread in the last milliseconds, which says nothing about the run.
            if !self.served && now < plan.measure_to {
                self.served = true;
                let _ = stats.first_reply.record(nanos(now - self.connect_at));
                if let Some(tx) = &plan.served_tx {
                    let _ = tx.send(());
                }
            }
        } else if line.starts_with(b"Error: ") {
            stats.errors.server_error += 1;
        } else {
            stats.errors.corrupt += 1;
            self.corrupt += 1;
        }
    }

    /// Folds this connection's verdict into the run's statistics.
    fn finish(&mut self, plan: &Plan, now: Instant, stats: &mut Stats, poll: &Poll) {
        let still_open = !self.is_closed();
        if still_open {
            match plan.until {
                Until::AllClosed => stats.errors.timeout += 1,
                Until::WindowEnd => {
                    // Never connected within the run counts too: a SYN the server's
                    // backlog dropped looks exactly like that.
                    if self.connecting || self.in_flight.is_some_and(|t| now - t >= plan.stall) {
                        stats.errors.timeout += 1;
                    }
                }
            }
            self.close(End::Dropped, poll);
        }
        stats.requests_sent += self.sent;
        if !self.connecting && !self.served {
            stats.unserved += 1;
        }
        if self.goodbyes >= 1 {
            stats.goodbyes += 1;
            stats.goodbye_dup += u64::from(self.goodbyes - 1);
        }
        if plan.until == Until::AllClosed {
            if self.end == End::CleanEof {
                stats.clean_eof += 1;
            }
            let unanswered = self.sent - self.answered;
            let allowed = u64::from(self.goodbyes > 0).min(unanswered);
            stats.crossed_goodbye += allowed;
            let lost = unanswered - allowed;
            stats.replies_lost += lost;
            if self.goodbyes == 1
                && self.after_goodbye == 0
                && self.corrupt == 0
                && self.end == End::CleanEof
                && lost == 0
            {
                stats.conns_ok += 1;
            }
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Runs `conns` clients to the end of the plan on the calling thread.
pub(super) fn run_thread(addr: SocketAddr, plan: &Plan, conns: usize) -> io::Result<Stats> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut stats = Stats::new();
    let mut scratch = vec![0u8; 64 * 1024];

    if let Some(wait) = plan.start.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let mut clients: Vec<Client> = Vec::with_capacity(conns);
    let mut open = 0usize;
    for i in 0..conns {
        let now = Instant::now();
        stats.connections += 1;
        let mut client = match TcpStream::connect(addr) {
            Ok(mut stream) => {
                poll.registry().register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                open += 1;
                Client::new(Some(stream), now)
            }
            Err(e) => {
                let mut c = Client::new(None, now);
                c.fail(&e, &mut stats, &poll);
                c
            }
        };
        client.connect_at = now;
        clients.push(client);
    }

    loop {
        let now = Instant::now();
        let stop_at = match plan.until {
            Until::WindowEnd => plan.measure_to.min(plan.deadline),
            Until::AllClosed => plan.deadline,
        };
        if now >= stop_at || open == 0 {
            break;
        }
        let timeout = (stop_at - now).min(TICK);
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            let Some(client) = clients.get_mut(event.token().0) else {
                continue;
            };
            if client.is_closed() {
                continue;
            }
            client.on_event(event, &mut scratch, plan, &mut stats, &poll);
            if client.is_closed() {
                open -= 1;
            }
        }
    }

    let now = Instant::now();
    for client in &mut clients {
        client.finish(plan, now, &mut stats, &poll);
    }
    Ok(stats)
}
