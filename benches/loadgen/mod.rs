//! The load generator: C client connections, each a closed loop of `ping <n>\n` →
//! `Echo: ping <n>\r\n`, driven by a few threads that each run one `mio` epoll loop
//! over their share of the sockets. A thread per client would cost the server's two
//! cores as much as the server itself; one event loop keeps the client side to a
//! fraction of one core. Every reply is checked byte for byte, and every way a
//! connection can fail is counted by kind instead of aborting the run.
//!
//! The same engine runs the shutdown scenarios: it keeps going after the server's
//! goodbye until each connection sees EOF, and checks per connection that replies came
//! in order, the goodbye came once and last, and the end was a FIN, not a reset.

mod client;
mod stats;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

pub use stats::Stats;

/// What each client does once connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Send the next request as soon as the previous reply arrives.
    ClosedLoop,
    /// Send one request, then sit idle, reading (a client parked on the server).
    PingOnce,
}

/// When the run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// At `measure_to`: a throughput run; sockets are dropped then.
    WindowEnd,
    /// When every connection has seen EOF (or failed): a shutdown run.
    AllClosed,
}

/// One run of the engine. Instants are absolute so the harness can sample the server's
/// CPU time at the very edges of the measured window.
#[derive(Clone, Debug)]
pub struct Plan {
    pub conns: usize,
    pub threads: usize,
    pub mode: Mode,
    pub until: Until,
    /// Connects begin here.
    pub start: Instant,
    /// Replies received in `[measure_from, measure_to)` count towards throughput and
    /// latency; earlier ones are warm-up.
    pub measure_from: Instant,
    pub measure_to: Instant,
    /// Nothing runs past this, whatever the server does.
    pub deadline: Instant,
    /// A request still unanswered this long when a throughput run ends is a timeout.
    pub stall: Duration,
    /// Told once per connection when its first reply arrives (lets the harness wait
    /// for "all clients served" without polling).
    pub served_tx: Option<Sender<()>>,
}

/// The running engine threads.
#[derive(Debug)]
#[must_use = "join the load generator to get its statistics"]
pub struct LoadHandle {
    threads: Vec<JoinHandle<io::Result<Stats>>>,
}

/// Starts the engine threads (named `loadgen-<i>`); connections are dealt round-robin.
pub fn spawn(addr: SocketAddr, plan: Plan) -> io::Result<LoadHandle> {
    let plan = Arc::new(plan);
    let threads = plan.threads.clamp(1, plan.conns.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let share = plan.conns / threads + usize::from(t < plan.conns % threads);
        let plan = Arc::clone(&plan);
        let handle = thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || client::run_thread(addr, &plan, share))?;
        handles.push(handle);
    }
    Ok(LoadHandle { threads: handles })
}

impl LoadHandle {
    /// Waits for every engine thread (each bounded by the plan's deadline) and merges
    /// their statistics.
    pub fn join(self) -> io::Result<Stats> {
        let mut total = Stats::new();
        for handle in self.threads {
            let stats = handle
                .join()
                .map_err(|_| io::Error::other("a load generator thread panicked"))??;
            total.merge(&stats);
        }
        Ok(total)
    }
}
