//! The probe's report as one JSON document: every figure of the table, and the
//! verdicts in words.

use std::fmt::Write as _;

use super::report::Trial;

/// A JSON string literal: quotes, backslashes and control characters escaped.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt_u64(value: Option<u64>) -> String {
    value.map_or("null".to_string(), |v| v.to_string())
}

fn json_opt_f64(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "null".to_string(),
    }
}

fn json_strings(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", items.join(","))
}

/// One trial as a JSON object.
pub fn json_trial(trial: &Trial) -> String {
    let rows: Vec<String> = trial
        .rows
        .iter()
        .map(|row| {
            let t = row.tally();
            let why = row.verdict();
            format!(
                "{{\"scenario\":{},\"what\":{},\"clean\":{},\"problems\":{},\"notes\":{},\
                 \"conns\":{},\"sent\":{},\"replies\":{},\"goodbye\":{},\"fin\":{},\"rst\":{},\
                 \"open\":{},\"no_connect\":{},\"lost\":{},\"after_goodbye\":{},\"crossing\":{},\
                 \"wrong\":{},\"missing_goodbye\":{},\"closed_ms\":{}}}",
                json_string(row.name),
                json_string(row.what),
                why.is_empty(),
                json_strings(&why),
                json_strings(&row.notes),
                t.conns,
                t.sent,
                t.replies,
                t.goodbye,
                t.fin,
                t.rst,
                t.open,
                t.no_connect,
                t.lost,
                t.after_goodbye,
                t.crossing,
                t.wrong,
                t.missing_goodbye,
                json_opt_u64(t.closed_ms)
            )
        })
        .collect();
    format!(
        "{{\"command\":{},\"addr\":{},\"protocol\":{},\"signal\":{},\"clean\":{},\
         \"scenarios\":[{}],\"server\":{{\"exit\":{},\"exit_code\":{},\"signal_to_exit_ms\":{},\
         \"clean\":{},\"problems\":{}}},\"cpu\":{{\"probe_s\":{},\"server_s\":{}}},\"wall_s\":{}}}",
        json_string(&trial.command),
        json_string(&trial.addr),
        json_string(trial.protocol),
        json_string(trial.signal),
        trial.clean(),
        rows.join(","),
        json_string(&trial.exit),
        trial
            .exit_code
            .map_or("null".to_string(), |code| code.to_string()),
        json_opt_u64(
            trial
                .exit_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        ),
        trial.exit_problem.is_none(),
        json_strings(trial.exit_problem.as_slice()),
        json_opt_f64(Some(trial.probe_cpu_s)),
        json_opt_f64(trial.server_cpu_s),
        json_opt_f64(Some(trial.wall.as_secs_f64()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
