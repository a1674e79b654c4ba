//! What one load-generator run measured: latency and time-to-first-reply histograms
//! (hdrhistogram, nanoseconds), throughput counts, errors by kind, and the per-connection
//! shutdown verdicts of the drain scenarios. Threads keep their own and merge at the end.

use hdrhistogram::Histogram;

/// Errors by kind. Each counts connections or lines, never aborts the run.
#[derive(Clone, Debug, Default)]
pub struct Errors {
    /// Connect failed with ECONNREFUSED (listener closed or backlog overflow).
    pub refused: u64,
    /// ECONNRESET / EPIPE on a read or write.
    pub reset: u64,
    /// EOF while a reply was owed and no goodbye had been seen.
    pub eof: u64,
    /// Throughput run: a request unanswered for `stall` at the end. Shutdown run: a
    /// connection that had not seen EOF by the deadline.
    pub timeout: u64,
    /// A reply that was not byte-exact (wrong number, interleaved, garbage).
    pub corrupt: u64,
    /// `Error: ...` lines from the server (busy, idle timeout, line too long).
    pub server_error: u64,
    /// Anything else (connect errors other than refused, odd socket errors).
    pub other: u64,
}

impl Errors {
    pub fn merge(&mut self, o: &Errors) {
        self.refused += o.refused;
        self.reset += o.reset;
        self.eof += o.eof;
        self.timeout += o.timeout;
        self.corrupt += o.corrupt;
        self.server_error += o.server_error;
        self.other += o.other;
    }

    /// `reset=2 eof=1`, or `none`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            ("refused", self.refused),
            ("reset", self.reset),
            ("eof", self.eof),
            ("timeout", self.timeout),
            ("corrupt", self.corrupt),
            ("server_error", self.server_error),
            ("other", self.other),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(" ")
        }
    }
}

/// The merged result of one run.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Request → reply, replies received inside the measured window.
    pub latency: Histogram<u64>,
    /// Connect start → first reply, every connection that got one.
    pub first_reply: Histogram<u64>,
    /// Replies received inside the window (throughput numerator).
    pub replies_in_window: u64,
    pub connections: u64,
    pub connected: u64,
    /// Connected but never answered during the run (queued behind a fixed pool).
    pub unserved: u64,
    pub requests_sent: u64,
    pub replies_ok: u64,
    pub errors: Errors,
    // Shutdown verdicts (runs that go on until every connection closes).
    /// Connections that got the goodbye exactly once.
    pub goodbyes: u64,
    /// Extra goodbye lines beyond the first on a connection.
    pub goodbye_dup: u64,
    /// Lines that arrived after a goodbye (the goodbye was not last).
    pub after_goodbye: u64,
    /// Connections that saw EOF after their goodbye: the clean ending.
    pub clean_eof: u64,
    /// Requests in flight when the goodbye arrived: allowed to go unanswered.
    pub crossed_goodbye: u64,
    /// Requests sent that got no answer beyond the one allowed to cross the goodbye.
    pub replies_lost: u64,
    /// Connections whose whole shutdown was right: in-order replies, one goodbye, last,
    /// then EOF, nothing lost.
    pub conns_ok: u64,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            // 1 ns .. 10 min, 3 significant digits: ~µs precision at ms latencies.
            latency: new_histogram(),
            first_reply: new_histogram(),
            replies_in_window: 0,
            connections: 0,
            connected: 0,
            unserved: 0,
            requests_sent: 0,
            replies_ok: 0,
            errors: Errors::default(),
            goodbyes: 0,
            goodbye_dup: 0,
            after_goodbye: 0,
            clean_eof: 0,
            crossed_goodbye: 0,
            replies_lost: 0,
            conns_ok: 0,
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        // Both histograms have the same bounds, so `add` cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.first_reply.add(&o.first_reply);
        self.replies_in_window += o.replies_in_window;
        self.connections += o.connections;
        self.connected += o.connected;
        self.unserved += o.unserved;
        self.requests_sent += o.requests_sent;
        self.replies_ok += o.replies_ok;
        self.errors.merge(&o.errors);
        self.goodbyes += o.goodbyes;
        self.goodbye_dup += o.goodbye_dup;
        self.after_goodbye += o.after_goodbye;
        self.clean_eof += o.clean_eof;
        self.crossed_goodbye += o.crossed_goodbye;
        self.replies_lost += o.replies_lost;
        self.conns_ok += o.conns_ok;
    }

    /// A latency quantile in microseconds (0 when nothing was recorded).
    pub fn latency_us(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// A connect → first reply quantile in milliseconds.
    pub fn first_reply_ms(&self, q: f64) -> f64 {
        if self.first_reply.is_empty() {
            return 0.0;
        }
        self.first_reply.value_at_quantile(q) as f64 / 1e6
    }
}

pub(super) fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a bug.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}
