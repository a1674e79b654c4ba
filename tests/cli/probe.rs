//! `lameduck probe` against servers with planted faults (`examples/faulty.rs`): each
//! fault is flagged on the scenario it hurts and the probe exits 1; the same server
//! without faults, and `lameduck echo`, are clean (exit 0); bad usage exits 2.

use crate::support;

use std::time::Duration;

use support::{binary, example, Process};

/// A probe run takes a few seconds; on a starved CI machine, many more.
const RUN_PATIENCE: Duration = Duration::from_secs(120);

/// Connections the probe opens before its queued client, besides `--load`: never-reads,
/// 2 idle, pipelined, in-flight, slowloris, half-closed.
const HELD_BESIDES_LOAD: u32 = 7;
const LOAD: u32 = 2;

/// Runs the probe on `server` with a small load; returns its exit code and stdout.
fn probe(server: &str, extra: &[&str]) -> (Option<i32>, Vec<String>, Process) {
    let mut args = vec![
        "probe",
        "--spawn",
        server,
        "--after",
        "300ms",
        "--deadline",
        "20s",
    ];
    let load = LOAD.to_string();
    args.extend(["--load", &load]);
    args.extend(extra);
    let mut process = Process::spawn(&binary(), &args);
    let (status, _) = process.finish_within(RUN_PATIENCE);
    let lines = process.stdout_lines().to_vec();
    (status.code(), lines, process)
}

/// The table row of `scenario` (`server` for the exit).
#[track_caller]
fn row<'a>(lines: &'a [String], scenario: &str) -> &'a str {
    lines
        .iter()
        .find(|line| line.split_whitespace().next() == Some(scenario))
        .unwrap_or_else(|| panic!("no row {scenario} in\n{}", lines.join("\n")))
}

fn faulty(fault: &str, extra: &str) -> String {
    format!("{} --fault {fault} {extra}", example("faulty").display())
}

#[track_caller]
fn expect_flagged(fault: &str, extra: &str, scenario: &str, why: &str) {
    expect_flagged_with(&faulty(fault, extra), &[], fault, scenario, why);
}

/// The probe, run with `args` against `server`, exits 1 and its row `scenario`
/// names the problem `why`.
#[track_caller]
fn expect_flagged_with(server: &str, args: &[&str], fault: &str, scenario: &str, why: &str) {
    let (code, lines, process) = probe(server, args);
    let text = lines.join("\n");
    assert_eq!(code, Some(1), "{text}\n{}", process.dump());
    let row = row(&lines, scenario);
    assert!(
        row.contains("PROBLEM") && row.contains(why),
        "fault {fault}: row {scenario} should say {why:?}:\n{text}"
    );
}

#[test]
fn the_faulty_server_without_faults_is_clean() {
    let (code, lines, process) = probe(&faulty("none", ""), &[]);
    let text = lines.join("\n");
    assert_eq!(code, Some(0), "{text}\n{}", process.dump());
    assert!(!text.contains("PROBLEM"), "{text}");
    assert!(text.contains("verdict: clean"), "{text}");
}

#[test]
fn an_abortive_close_is_a_reset() {
    expect_flagged("rst", "", "idle", "reset (RST)");
}

#[test]
fn a_goodbye_instead_of_the_reply_in_flight_loses_it() {
    expect_flagged(
        "goodbye-first",
        "--delay 200",
        "in-flight",
        "1 replies lost",
    );
}

#[test]
fn replies_after_the_goodbye_are_flagged() {
    expect_flagged(
        "reply-after-goodbye",
        "--delay 200",
        "in-flight",
        "lines after the goodbye",
    );
}

#[test]
fn queued_connections_dropped_at_the_signal_are_lost() {
    let workers = format!("--workers {}", LOAD + HELD_BESIDES_LOAD);
    expect_flagged("drop-queued", &workers, "queued", "1 replies lost");
}

#[test]
fn a_listener_left_open_drops_new_connections() {
    expect_flagged("listener-open", "", "new-connects", "accepted then dropped");
}

#[test]
fn exit_zero_after_cutting_connections_is_flagged() {
    expect_flagged("exit0-forced", "", "server", "exit 0 although");
    let (_, lines, _) = probe(&faulty("exit0-forced", ""), &[]);
    assert!(row(&lines, "idle").contains("closed without a goodbye"));
}

#[test]
fn lameduck_echo_is_clean_trial_after_trial() {
    let server = format!("{} echo --addr 127.0.0.1:0", binary().display());
    let (code, lines, process) = probe(&server, &["--trials", "3"]);
    let text = lines.join("\n");
    assert_eq!(code, Some(0), "{text}\n{}", process.dump());
    assert!(text.contains("clean in 3 of 3 trials"), "{text}");
}

#[test]
fn json_reports_every_scenario_and_the_exit() {
    // `{port}` instead of the `listening on` line: the probe picks the port.
    let server = format!("{} echo --addr 127.0.0.1:{{port}}", binary().display());
    let (code, lines, process) = probe(&server, &["--json"]);
    assert_eq!(code, Some(0), "{}\n{}", lines.join("\n"), process.dump());
    assert_eq!(lines.len(), 1, "one JSON document: {lines:?}");
    let json = &lines[0];
    for scenario in [
        "load",
        "idle",
        "pipelined",
        "in-flight",
        "never-reads",
        "slowloris",
        "half-closed",
        "queued",
        "new-connects",
    ] {
        assert!(
            json.contains(&format!("\"scenario\":\"{scenario}\"")),
            "{json}"
        );
    }
    assert!(json.contains("\"exit_code\":0"), "{json}");
    assert!(
        json.contains("\"clean_trials\":1,\"trials_run\":1"),
        "{json}"
    );
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        vec!["probe", "--spawn", "echo listening on 10.1.2.3:80"],
        vec!["probe", "--spawn", "true", "--signal", "KILL"],
        vec![
            "probe",
            "--spawn",
            "true",
            "--expect-reply",
            "no placeholder",
        ],
        vec!["probe"],
    ] {
        let mut process = Process::spawn(&binary(), &args);
        let (status, _) = process.finish();
        assert_eq!(status.code(), Some(2), "{args:?}\n{}", process.dump());
        let stderr = process.stderr_text();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn lameduck_http_is_clean_trial_after_trial() {
    let server = format!("{} http --addr 127.0.0.1:0", binary().display());
    let (code, lines, process) = probe(&server, &["--protocol", "http", "--trials", "3"]);
    let text = lines.join("\n");
    assert_eq!(code, Some(0), "{text}\n{}", process.dump());
    assert!(text.contains("clean in 3 of 3 trials"), "{text}");
    for scenario in ["slow-download", "load", "idle", "in-flight", "slow-upload"] {
        assert!(row(&lines, scenario).contains("clean"), "{text}");
    }
}

#[test]
fn the_faulty_http_server_without_faults_is_clean() {
    let (code, lines, process) = probe(&faulty("none", "--http"), &["--protocol", "http"]);
    let text = lines.join("\n");
    assert_eq!(code, Some(0), "{text}\n{}", process.dump());
    assert!(text.contains("verdict: clean"), "{text}");
}

#[track_caller]
fn expect_http_flagged(fault: &str, scenario: &str, why: &str) {
    let server = faulty(fault, "--http");
    expect_flagged_with(&server, &["--protocol", "http"], fault, scenario, why);
}

#[test]
fn keep_alive_connections_closed_with_rst_are_flagged() {
    expect_http_flagged("rst", "idle", "reset (RST)");
}

#[test]
fn an_upload_dropped_at_the_signal_is_lost() {
    expect_http_flagged("drop-request", "slow-upload", "1 replies lost");
}
