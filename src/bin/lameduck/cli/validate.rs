//! What clap's per-option parsers cannot check: ranges that depend on other options,
//! and ranges of durations and sizes; and the shutdown budget the server options add
//! up to.

use std::fmt;
use std::time::Duration;

use super::{Cli, Command, ServerArgs, MAX_DURATION};

/// Checks `value` of `option` lies in `min..=max`.
fn within<T: PartialOrd + fmt::Debug>(
    option: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), String> {
    if value < min || value > max {
        return Err(format!(
            "{option} {value:?} is out of range {min:?}..={max:?}"
        ));
    }
    Ok(())
}

impl Cli {
    /// Checks what clap's per-option parsers cannot: ranges that depend on other
    /// options, and ranges of durations and sizes. One line per error; the caller exits 2.
    pub fn validate(&self) -> Result<(), String> {
        match &self.command {
            Command::Probe(args) => {
                within("--after", args.after, Duration::ZERO, HOUR)?;
                within("--deadline", args.deadline, MS, HOUR)?;
                within("--startup", args.startup, MS, HOUR)?;
                if !args.expect_reply.contains("{}") {
                    return Err("--expect-reply must contain `{}`, the request".into());
                }
                if args.expect_reply.contains(['\r', '\n']) || args.goodbye.contains(['\r', '\n']) {
                    return Err("--expect-reply and --goodbye are one line each".into());
                }
                if !args.path.starts_with('/') || args.path.contains(char::is_whitespace) {
                    return Err("--path must start with `/` and hold no spaces".into());
                }
                if args.spawn.trim().is_empty() {
                    return Err("--spawn needs a command".into());
                }
                Ok(())
            }
            Command::Echo(args) => {
                args.server.validate()?;
                within("--line-timeout", args.line_timeout, MS, HOUR)?;
                within("--max-line", args.max_line, 1, 64 << 20)
            }
            Command::Http(args) => {
                args.server.validate()?;
                within("--max-body", args.max_body, 0, 1 << 30)?;
                within("--max-head-bytes", args.max_head_bytes, 1024, 1 << 20)?;
                within("--header-timeout", args.header_timeout, MS, HOUR)?;
                within("--body-timeout", args.body_timeout, MS, HOUR)?;
                within("--work-delay", args.work_delay, Duration::ZERO, HOUR)?;
                within(
                    "--keepalive-grace",
                    args.keepalive_grace,
                    Duration::ZERO,
                    MINUTE,
                )
            }
        }
    }
}

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

impl ServerArgs {
    fn validate(&self) -> Result<(), String> {
        within("--tick", self.tick, MS, MINUTE)?;
        // Below a millisecond an idle acceptor polls so often it burns a core.
        within(
            "--accept-poll",
            self.accept_poll,
            MS,
            Duration::from_secs(1),
        )?;
        within("--linger", self.linger, Duration::ZERO, MINUTE)?;
        within("--idle-timeout", self.idle_timeout, MS, MAX_DURATION)?;
        within("--upgrade-timeout", self.upgrade_timeout, MS, HOUR)?;
        within("--write-timeout", self.write_timeout, MS, HOUR)?;
        if let Some(budget) = self.shutdown_timeout {
            if budget <= self.cleanup_timeout {
                return Err(format!(
                    "--shutdown-timeout {budget:?} leaves no time to drain: it must exceed \
                     --cleanup-timeout {:?}",
                    self.cleanup_timeout
                ));
            }
        }
        let (budget, cleanup) = self.budget();
        let drain = budget.saturating_sub(cleanup);
        if !self.drain_delay.is_zero() && self.drain_delay >= drain {
            return Err(format!(
                "--drain-delay {:?} must be shorter than the drain time {drain:?} (the \
                 shutdown budget minus --cleanup-timeout), which it is part of",
                self.drain_delay
            ));
        }
        Ok(())
    }

    /// The overall shutdown budget and the part of it kept for cleanup.
    pub fn budget(&self) -> (Duration, Duration) {
        let budget = self
            .shutdown_timeout
            .unwrap_or(self.drain_timeout.saturating_add(self.cleanup_timeout));
        (budget, self.cleanup_timeout.min(budget))
    }
}
