//! What the probe saw and how it grades it: one record per client connection, folded
//! into one row per scenario with its verdict, the server's exit, the CPU both sides
//! used; printed as a table a person reads at a glance (the JSON form is `json`'s).

use std::fmt::Write as _;
use std::time::Duration;

/// How a connection ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// EOF: the server closed gracefully (FIN).
    Fin,
    /// ECONNRESET (or EPIPE): an abortive close that may destroy unread replies.
    Reset,
    /// Still open when the probe gave up on it.
    Open,
    /// The connect itself failed.
    NoConnect,
}

/// One client connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Requests written whole.
    pub sent: u64,
    /// Of which, written before the signal: each must be answered.
    pub sent_before_signal: u64,
    /// Replies, each the right one, in order.
    pub replies: u64,
    pub goodbyes: u64,
    /// Lines or responses that arrived after the goodbye.
    pub after_goodbye: u64,
    /// Lines that were neither the expected reply nor the goodbye.
    pub wrong: u64,
    pub first_wrong: Option<String>,
    pub end: End,
    /// The connection was still open when the signal was sent.
    pub open_at_signal: bool,
    /// Signal → close, when it closed after the signal.
    pub closed_after: Option<Duration>,
    /// Unanswered requests may all have crossed the goodbye on the wire (a client
    /// whose requests wait in buffers: the server cannot be asked to read them all).
    pub pipe_allowance: bool,
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            sent: 0,
            sent_before_signal: 0,
            replies: 0,
            goodbyes: 0,
            after_goodbye: 0,
            wrong: 0,
            first_wrong: None,
            end: End::Open,
            open_at_signal: true,
            closed_after: None,
            pipe_allowance: false,
        }
    }

    /// Requests sent and never answered.
    pub fn unanswered(&self) -> u64 {
        self.sent.saturating_sub(self.replies)
    }

    /// Unanswered requests that count as lost: with a goodbye, those sent before the
    /// signal (the server had them before it knew it was stopping); without one, all.
    pub fn lost(&self) -> u64 {
        if self.goodbyes == 0 {
            self.unanswered()
        } else if self.pipe_allowance {
            0
        } else {
            self.sent_before_signal
                .saturating_sub(self.replies)
                .min(self.unanswered())
        }
    }

    /// Unanswered requests that crossed the goodbye on the wire: reported, not failed.
    pub fn crossing(&self) -> u64 {
        self.unanswered() - self.lost()
    }
}

/// One row: a scenario's connections and its verdict.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: &'static str,
    pub what: &'static str,
    pub conns: Vec<Conn>,
    /// Facts worth a line beside the numbers (`queued at the signal: yes`).
    pub notes: Vec<String>,
    /// Problems found beyond what the counts show.
    pub problems: Vec<String>,
    /// Whether a connection open at the signal must get the goodbye.
    pub goodbye_expected: bool,
}

/// The counts of a row.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub conns: u64,
    pub sent: u64,
    pub replies: u64,
    pub goodbye: u64,
    pub fin: u64,
    pub rst: u64,
    pub open: u64,
    pub no_connect: u64,
    pub lost: u64,
    pub after_goodbye: u64,
    pub crossing: u64,
    pub wrong: u64,
    pub missing_goodbye: u64,
    pub closed_ms: Option<u64>,
}

impl Row {
    pub fn new(name: &'static str, what: &'static str, goodbye_expected: bool) -> Row {
        Row {
            name,
            what,
            conns: Vec::new(),
            notes: Vec::new(),
            problems: Vec::new(),
            goodbye_expected,
        }
    }

    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for c in &self.conns {
            t.conns += 1;
            t.sent += c.sent;
            t.replies += c.replies;
            t.goodbye += u64::from(c.goodbyes > 0);
            match c.end {
                End::Fin => t.fin += 1,
                End::Reset => t.rst += 1,
                End::Open => t.open += 1,
                End::NoConnect => t.no_connect += 1,
            }
            t.lost += c.lost();
            t.after_goodbye += c.after_goodbye + c.goodbyes.saturating_sub(1);
            t.crossing += c.crossing();
            t.wrong += c.wrong;
            if self.goodbye_expected
                && c.open_at_signal
                && c.goodbyes == 0
                && c.end != End::NoConnect
            {
                t.missing_goodbye += 1;
            }
            if let Some(after) = c.closed_after {
                let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                t.closed_ms = Some(t.closed_ms.map_or(ms, |m| m.max(ms)));
            }
        }
        t
    }

    /// Everything wrong with this row, in words; empty when clean.
    pub fn verdict(&self) -> Vec<String> {
        let t = self.tally();
        let mut why = Vec::new();
        if t.rst > 0 {
            why.push(format!("{} reset (RST)", t.rst));
        }
        if t.lost > 0 {
            why.push(format!("{} replies lost", t.lost));
        }
        if t.after_goodbye > 0 {
            why.push(format!("{} lines after the goodbye", t.after_goodbye));
        }
        if t.missing_goodbye > 0 {
            why.push(format!("{} closed without a goodbye", t.missing_goodbye));
        }
        if t.wrong > 0 {
            let first = self
                .conns
                .iter()
                .find_map(|c| c.first_wrong.clone())
                .unwrap_or_default();
            why.push(format!("{} unexpected lines (first: {first:?})", t.wrong));
        }
        if t.open > 0 {
            why.push(format!("{} still open at the deadline", t.open));
        }
        if t.no_connect > 0 {
            why.push(format!("{} could not connect", t.no_connect));
        }
        why.extend(self.problems.iter().cloned());
        why
    }

    /// Connections this row saw cut: reset, lost replies, no goodbye, or left open.
    pub fn cut(&self) -> u64 {
        self.conns
            .iter()
            .filter(|c| {
                c.end == End::Reset
                    || c.end == End::Open
                    || c.lost() > 0
                    || (self.goodbye_expected && c.open_at_signal && c.goodbyes == 0)
            })
            .count() as u64
    }
}

/// One trial: the rows, the server's exit, CPU.
#[derive(Clone, Debug)]
pub struct Trial {
    pub command: String,
    pub addr: String,
    pub protocol: &'static str,
    pub signal: &'static str,
    pub rows: Vec<Row>,
    /// `0`, `124`, `killed by signal 9`.
    pub exit: String,
    pub exit_code: Option<i32>,
    /// Signal → exit, when the server exited by itself within the deadline.
    pub exit_after: Option<Duration>,
    pub exit_problem: Option<String>,
    pub probe_cpu_s: f64,
    pub server_cpu_s: Option<f64>,
    pub wall: Duration,
}

impl Trial {
    pub fn clean(&self) -> bool {
        self.exit_problem.is_none() && self.rows.iter().all(|row| row.verdict().is_empty())
    }
}

fn verdict_text(why: &[String]) -> String {
    if why.is_empty() {
        "clean".to_string()
    } else {
        format!("PROBLEM: {}", why.join("; "))
    }
}

/// The table for people.
pub fn table(trial: &Trial, index: u32, trials: u32) -> String {
    let mut out = String::new();
    let title = if trials > 1 {
        format!(" (trial {} of {trials})", index + 1)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "lameduck probe{title}: {} at {}, {}, SIG{} after the load ran",
        trial.command, trial.addr, trial.protocol, trial.signal
    );
    let _ = writeln!(
        out,
        "{:<13} {:>5} {:>7} {:>7} {:>7} {:>4} {:>4} {:>5} {:>8} {:>8} {:>9}  verdict",
        "scenario",
        "conns",
        "sent",
        "replies",
        "goodbye",
        "fin",
        "rst",
        "lost",
        "after-gb",
        "crossing",
        "closed-ms"
    );
    for row in &trial.rows {
        let t = row.tally();
        let closed = t.closed_ms.map_or("-".to_string(), |ms| ms.to_string());
        let _ = writeln!(
            out,
            "{:<13} {:>5} {:>7} {:>7} {:>7} {:>4} {:>4} {:>5} {:>8} {:>8} {:>9}  {}",
            row.name,
            t.conns,
            t.sent,
            t.replies,
            t.goodbye,
            t.fin,
            t.rst,
            t.lost,
            t.after_goodbye,
            t.crossing,
            closed,
            verdict_text(&row.verdict())
        );
        for note in &row.notes {
            let _ = writeln!(out, "{:<13} {note}", "");
        }
    }
    summary(&mut out, trial);
    out
}

/// The table's last lines: the server's exit, the CPU both sides used, the verdict.
fn summary(out: &mut String, trial: &Trial) {
    let exit_after = trial
        .exit_after
        .map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
    let exit_verdict = verdict_text(trial.exit_problem.as_slice());
    let _ = writeln!(
        out,
        "{:<13} exit {}, signal -> exit {exit_after}  {exit_verdict}",
        "server", trial.exit
    );
    let server_cpu = trial
        .server_cpu_s
        .map_or("unknown".to_string(), |s| format!("{s:.2} s"));
    let _ = writeln!(
        out,
        "{:<13} probe {:.2} s, server {server_cpu}, probe wall {:.2} s",
        "cpu",
        trial.probe_cpu_s,
        trial.wall.as_secs_f64()
    );
    let problems = trial
        .rows
        .iter()
        .filter(|r| !r.verdict().is_empty())
        .count()
        + usize::from(trial.exit_problem.is_some());
    if problems == 0 {
        let _ = writeln!(out, "verdict: clean");
    } else {
        let _ = writeln!(out, "verdict: {problems} PROBLEM(S)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_sent_before_the_signal_are_lost_when_unanswered() {
        let mut conn = Conn::new();
        conn.sent = 5;
        conn.sent_before_signal = 4;
        conn.replies = 3;
        conn.goodbyes = 1;
        assert_eq!((conn.lost(), conn.crossing()), (1, 1));
        conn.goodbyes = 0;
        assert_eq!((conn.lost(), conn.crossing()), (2, 0));
        conn.goodbyes = 1;
        conn.pipe_allowance = true;
        assert_eq!((conn.lost(), conn.crossing()), (0, 2));
    }
}
