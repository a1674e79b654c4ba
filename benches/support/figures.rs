//! Small helpers every bench's report uses: the median of a sample and the commit
//! being measured.

use std::process::Command;

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `git rev-parse --short HEAD`, or `unknown commit` outside a checkout.
pub fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown commit".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
}
