//! Results, reduced across rounds and trials, and written three ways: a console table,
//! a markdown file for the README, and (in `svg.rs`) a chart. Medians, because one
//! noisy round on a shared two-core machine should not move the headline figure.

use std::fmt::Write as _;

use crate::support::procfs::Machine;
use crate::support::scenarios::{Shutdown, ShutdownKind, Throughput};

/// Which side of the comparison a run belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Lameduck,
    Tokio,
}

/// Everything the bench measured, with the context needed to read it.
#[derive(Debug)]
pub struct Results {
    pub machine: Machine,
    /// Notes printed under the machine line (mode, durations, placement, stand-ins).
    pub notes: Vec<String>,
    /// Display names of the two slots (`lameduck` may be a stand-in).
    pub names: [String; 2],
    pub runs: Vec<Run>,
    /// lameduck with fewer workers than clients (one round each).
    pub pool_limited: Vec<Run>,
    pub shutdowns: Vec<ShutdownTrial>,
    pub failures: Vec<String>,
}

#[derive(Debug)]
pub struct Run {
    pub conns: usize,
    pub round: usize,
    pub slot: Slot,
    pub workers: Option<usize>,
    pub result: Throughput,
}

#[derive(Debug)]
pub struct ShutdownTrial {
    pub kind: ShutdownKind,
    pub slot: Slot,
    pub result: Shutdown,
}

/// One line of the throughput table: medians over rounds.
#[derive(Clone, Debug)]
pub struct Row {
    pub conns: usize,
    pub slot: Slot,
    pub workers: Option<usize>,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub server_cpu: f64,
    pub loadgen_cpu: f64,
    pub other_cpu: f64,
    pub rss_mib: f64,
    pub hwm_mib: f64,
    pub unserved_max: u64,
    pub first_reply_p99_ms: f64,
    pub errors: String,
    /// lameduck / tokio, per round, median; on the lameduck row only.
    pub ratio_rps: Option<f64>,
    pub ratio_p99: Option<f64>,
}

pub use super::figures::median;

impl Results {
    pub fn name(&self, slot: Slot) -> &str {
        match slot {
            Slot::Lameduck => &self.names[0],
            Slot::Tokio => &self.names[1],
        }
    }

    fn conns_list(&self) -> Vec<usize> {
        let mut cs: Vec<usize> = self.runs.iter().map(|r| r.conns).collect();
        cs.sort_unstable();
        cs.dedup();
        cs
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for c in self.conns_list() {
            for slot in [Slot::Lameduck, Slot::Tokio] {
                let runs: Vec<&Run> = self
                    .runs
                    .iter()
                    .filter(|r| r.conns == c && r.slot == slot)
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let med = |f: &dyn Fn(&Throughput) -> f64| {
                    median(runs.iter().map(|r| f(&r.result)).collect())
                };
                let mut errors = crate::loadgen::Stats::new().errors;
                for r in &runs {
                    errors.merge(&r.result.stats.errors);
                }
                let (ratio_rps, ratio_p99) = if slot == Slot::Lameduck {
                    self.ratios(c)
                } else {
                    (None, None)
                };
                rows.push(Row {
                    conns: c,
                    slot,
                    workers: runs[0].workers,
                    rps: med(&|t| t.rps),
                    p50_us: med(&|t| t.p50_us),
                    p99_us: med(&|t| t.p99_us),
                    p999_us: med(&|t| t.p999_us),
                    server_cpu: med(&|t| t.server_cpu),
                    loadgen_cpu: med(&|t| t.loadgen_cpu),
                    other_cpu: med(&|t| t.other_cpu),
                    rss_mib: med(&|t| t.rss_kib as f64 / 1024.0),
                    hwm_mib: med(&|t| t.hwm_kib as f64 / 1024.0),
                    unserved_max: runs.iter().map(|r| r.result.unserved).max().unwrap_or(0),
                    first_reply_p99_ms: med(&|t| t.first_reply_p99_ms),
                    errors: errors.summary(),
                    ratio_rps,
                    ratio_p99,
                });
            }
        }
        rows
    }

    /// Ratios taken within each round (same minutes, same machine noise), then the
    /// median across rounds.
    fn ratios(&self, c: usize) -> (Option<f64>, Option<f64>) {
        let mut rps = Vec::new();
        let mut p99 = Vec::new();
        for ld in self
            .runs
            .iter()
            .filter(|r| r.conns == c && r.slot == Slot::Lameduck)
        {
            let tk = self
                .runs
                .iter()
                .find(|r| r.conns == c && r.slot == Slot::Tokio && r.round == ld.round);
            if let Some(tk) = tk {
                if tk.result.rps > 0.0 {
                    rps.push(ld.result.rps / tk.result.rps);
                }
                if tk.result.p99_us > 0.0 {
                    p99.push(ld.result.p99_us / tk.result.p99_us);
                }
            }
        }
        let m = |v: Vec<f64>| (!v.is_empty()).then(|| median(v));
        (m(rps), m(p99))
    }

    fn shutdown_rows(&self) -> Vec<Vec<String>> {
        let mut kinds: Vec<ShutdownKind> = Vec::new();
        for t in &self.shutdowns {
            if !kinds.contains(&t.kind) {
                kinds.push(t.kind);
            }
        }
        let mut rows = Vec::new();
        for kind in kinds {
            for slot in [Slot::Lameduck, Slot::Tokio] {
                let trials: Vec<&Shutdown> = self
                    .shutdowns
                    .iter()
                    .filter(|t| t.kind == kind && t.slot == slot)
                    .map(|t| &t.result)
                    .collect();
                if trials.is_empty() {
                    continue;
                }
                let exit = median(trials.iter().map(|t| t.exit_ms).collect());
                let exit_max = trials.iter().map(|t| t.exit_ms).fold(0.0, f64::max);
                let mut codes: Vec<String> = trials
                    .iter()
                    .map(|t| t.exit_code.map_or("signal".to_string(), |c| c.to_string()))
                    .collect();
                codes.sort();
                codes.dedup();
                let mut outcomes: Vec<&str> = trials
                    .iter()
                    .map(|t| {
                        t.report
                            .split_whitespace()
                            .find_map(|kv| kv.strip_prefix("outcome="))
                            .unwrap_or("none")
                    })
                    .collect();
                outcomes.sort_unstable();
                outcomes.dedup();
                let sum = |f: &dyn Fn(&Shutdown) -> u64| trials.iter().map(|t| f(t)).sum::<u64>();
                let conns = (kind.conns() * trials.len()) as u64;
                let per = |n: u64| {
                    if conns == 0 {
                        "–".to_string()
                    } else {
                        format!("{n}/{conns}")
                    }
                };
                rows.push(vec![
                    kind.name(),
                    self.name(slot).to_string(),
                    trials.len().to_string(),
                    format!("{exit:.1} ({exit_max:.1})"),
                    codes.join(","),
                    outcomes.join(","),
                    per(sum(&|t| t.stats.goodbyes)),
                    per(sum(&|t| t.stats.clean_eof)),
                    per(sum(&|t| t.stats.conns_ok)),
                    sum(&|t| t.stats.replies_lost).to_string(),
                    sum(&|t| t.stats.errors.reset).to_string(),
                    sum(&|t| t.stats.crossed_goodbye).to_string(),
                    sum(&|t| t.stats.after_goodbye + t.stats.goodbye_dup + t.stats.errors.corrupt)
                        .to_string(),
                ]);
            }
        }
        rows
    }

    fn throughput_table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec![
            "C",
            "server",
            "workers",
            "req/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "server CPU %",
            "RSS MiB",
            "peak RSS MiB",
            "unserved",
            "1st reply p99 ms",
            "errors",
            "loadgen CPU %",
            "other CPU %",
            "ld/tokio req/s",
            "ld/tokio p99",
        ];
        let opt = |v: Option<f64>| v.map_or(String::new(), |r| format!("{r:.2}"));
        let rows = self
            .rows()
            .into_iter()
            .map(|r| {
                vec![
                    r.conns.to_string(),
                    self.name(r.slot).to_string(),
                    r.workers.map_or("–".to_string(), |w| w.to_string()),
                    format!("{:.0}", r.rps),
                    format!("{:.0}", r.p50_us),
                    format!("{:.0}", r.p99_us),
                    format!("{:.0}", r.p999_us),
                    format!("{:.0}", r.server_cpu),
                    format!("{:.1}", r.rss_mib),
                    format!("{:.1}", r.hwm_mib),
                    r.unserved_max.to_string(),
                    format!("{:.1}", r.first_reply_p99_ms),
                    r.errors.clone(),
                    format!("{:.0}", r.loadgen_cpu),
                    format!("{:.0}", r.other_cpu),
                    opt(r.ratio_rps),
                    opt(r.ratio_p99),
                ]
            })
            .collect();
        (header, rows)
    }

    const POOL_HEADER: [&'static str; 9] = [
        "C",
        "server",
        "workers",
        "req/s",
        "p99 µs",
        "served",
        "unserved (queued)",
        "1st reply p99 ms",
        "errors",
    ];

    fn pool_rows(&self) -> Vec<Vec<String>> {
        self.pool_limited
            .iter()
            .map(|r| {
                let t = &r.result;
                vec![
                    r.conns.to_string(),
                    self.name(r.slot).to_string(),
                    r.workers.map_or("–".to_string(), |w| w.to_string()),
                    format!("{:.0}", t.rps),
                    format!("{:.0}", t.p99_us),
                    t.stats.first_reply.len().to_string(),
                    t.unserved.to_string(),
                    format!("{:.1}", t.first_reply_p99_ms),
                    t.stats.errors.summary(),
                ]
            })
            .collect()
    }

    const SHUTDOWN_HEADER: [&'static str; 13] = [
        "scenario",
        "server",
        "trials",
        "SIGTERM→exit ms median (max)",
        "exit",
        "outcome",
        "goodbyes",
        "EOF after goodbye",
        "conns fully right",
        "replies lost",
        "resets",
        "crossed goodbye",
        "violations",
    ];

    fn legend(&self) -> Vec<String> {
        vec![
            "Throughput: medians over rounds; each round runs both servers back to back \
             (order alternating), and the ld/tokio ratios are taken within a round."
                .to_string(),
            "Latency: request → reply of a closed loop (one request in flight per \
             connection), loopback. unserved: connections that never got a reply in the \
             run (max over rounds; with a pool smaller than C, those queued behind it). CPU: utime+stime from /proc over the measured window, \
             % of one core; other CPU: the rest of the machine's busy time (other \
             processes), a noise gauge."
                .to_string(),
            "Shutdown: SIGTERM→exit includes ~1 ms to start kill(1). replies lost: \
             requests sent that got no answer, beyond the one allowed in flight across the \
             goodbye. violations: lines after the goodbye, duplicate goodbyes, corrupt \
             replies."
                .to_string(),
        ]
    }

    pub fn console(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.machine.line());
        for n in &self.notes {
            let _ = writeln!(s, "{n}");
        }
        let (h, rows) = self.throughput_table();
        s.push('\n');
        s.push_str(&text_table(&h, &rows));
        s.push('\n');
        let prows = self.pool_rows();
        if !prows.is_empty() {
            s.push_str(&text_table(&Self::POOL_HEADER, &prows));
            s.push('\n');
        }
        let srows = self.shutdown_rows();
        if !srows.is_empty() {
            s.push_str(&text_table(&Self::SHUTDOWN_HEADER, &srows));
        }
        for f in &self.failures {
            let _ = writeln!(s, "FAILED: {f}");
        }
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### Thread per connection vs task per connection\n");
        let _ = writeln!(s, "{}\n", self.machine.line());
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s.push('\n');
        let (h, rows) = self.throughput_table();
        s.push_str(&md_table(&h, &rows));
        s.push('\n');
        let prows = self.pool_rows();
        if !prows.is_empty() {
            let _ = writeln!(
                s,
                "Pool smaller than the crowd (lameduck only, one round):\n"
            );
            s.push_str(&md_table(&Self::POOL_HEADER, &prows));
            s.push('\n');
        }
        let srows = self.shutdown_rows();
        if !srows.is_empty() {
            s.push_str(&md_table(&Self::SHUTDOWN_HEADER, &srows));
            s.push('\n');
        }
        for l in self.legend() {
            let _ = writeln!(s, "{l}\n");
        }
        for f in &self.failures {
            let _ = writeln!(s, "- FAILED: {}", f.lines().next().unwrap_or(""));
        }
        s
    }
}

/// Columns of names and words; every other column holds numbers.
const LEFT_ALIGNED: [&str; 5] = ["server", "scenario", "errors", "outcome", "exit"];

fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = w - cell.chars().count();
            // Numbers right-aligned, names left-aligned.
            if !LEFT_ALIGNED.contains(&header[i]) {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(pad));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut s = line(header.to_vec());
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n", header.join(" | "));
    s.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}
