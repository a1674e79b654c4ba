//! What the bench reads from Linux's `/proc` without libc: CPU time (utime+stime) and
//! memory (VmRSS, VmHWM) of a process, which CPU each of its threads last ran on, and
//! the machine facts recorded next to the results.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

/// Clock ticks per second for `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on
/// every Linux this runs on when `getconf` is missing).
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Fields of a `stat` file after the `(comm)` field, which may itself hold spaces;
/// index 0 is field 3 (`state`) of proc(5).
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime of a whole process (all threads), in clock ticks. `pid` `None` is
/// this process.
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let f = stat_fields(&path)?;
    // Fields 14 and 15 of proc(5).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Busy ticks of the whole machine (all CPUs, everything but idle and iowait) from
/// `/proc/stat`: minus the server's and the bench's own, what other work took.
pub fn machine_busy_ticks() -> Option<u64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?;
    Some(busy)
}

/// A `Vm...:` line of `/proc/<pid>/status`, in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The CPUs the threads of a process last ran on (field 39, `processor`), for the
/// placement note: nothing is pinned, this records where the scheduler put things.
pub fn thread_cpus(pid: Option<u32>) -> BTreeSet<u32> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_string(),
    };
    let mut cpus = BTreeSet::new();
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = format!("{}/stat", entry.path().display());
            if let Some(cpu) = stat_fields(&path)
                .and_then(|f| f.get(36).cloned())
                .and_then(|s| s.parse().ok())
            {
                cpus.insert(cpu);
            }
        }
    }
    cpus
}

/// The 1, 5 and 15 minute load averages: on a machine shared with builds, the reader
/// needs to know how busy it was.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The soft limit on open files of this process (children inherit it); `None` when
/// unlimited or unreadable.
pub fn open_files_limit() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The machine and code the numbers belong to.
#[derive(Clone, Debug)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub commit: String,
    pub rustc: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        let run = |prog: &str, args: &[&str]| {
            Command::new(prog)
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| "unknown".to_string())
        };
        let mut commit = run("git", &["rev-parse", "--short", "HEAD"]);
        let changes = run("git", &["status", "--porcelain", "--untracked-files=no"]);
        if !changes.is_empty() && changes != "unknown" {
            commit.push_str("-dirty");
        }
        Machine {
            nproc,
            cpu_model,
            kernel,
            commit,
            rustc: run("rustc", &["--version"]),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "machine: {} cores, {}, Linux {}; commit {}; {}",
            self.nproc, self.cpu_model, self.kernel, self.commit, self.rustc
        )
    }
}
