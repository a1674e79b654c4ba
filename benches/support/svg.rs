//! The chart, written by hand as SVG (no plotting dependency): two panels side by side,
//! requests per second and p99 latency against the number of connections on a log
//! axis, one line per server, with a legend, axis labels and the machine and commit in
//! the caption, so the picture carries its own context when it is pasted elsewhere.

use std::fmt::Write as _;

use crate::support::report::{Results, Row, Slot};

const W: f64 = 960.0;
const H: f64 = 450.0;
const PANEL_W: f64 = 400.0;
const PANEL_H: f64 = 280.0;
const TOP: f64 = 90.0;
const LEFT: [f64; 2] = [80.0, 560.0];
const COLORS: [(Slot, &str); 2] = [(Slot::Lameduck, "#1f77b4"), (Slot::Tokio, "#e6550d")];

/// A "nice" upper bound for a linear axis and its tick step.
fn nice_axis(max: f64) -> (f64, f64) {
    if max.is_nan() || max <= 0.0 {
        return (1.0, 0.25);
    }
    let raw = max * 1.1 / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max * 1.1 / step).ceil() * step, step)
}

/// Latency spans four decades between C = 1 and C = 1000: a log axis keeps both ends
/// readable. Ticks at powers of ten.
fn log_axis(min: f64, max: f64) -> (f64, f64) {
    let lo = if min > 0.0 { min.log10().floor() } else { 0.0 };
    let hi = if max > 0.0 { max.log10().ceil() } else { 1.0 };
    (lo, hi.max(lo + 1.0))
}

fn fmt_us(v: f64) -> String {
    if v >= 1e6 {
        format!("{} s", v / 1e6)
    } else if v >= 1e3 {
        format!("{} ms", v / 1e3)
    } else {
        format!("{v} µs")
    }
}

fn fmt_tick(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn panel(
    svg: &mut String,
    left: f64,
    title: &str,
    ylabel: &str,
    rows: &[Row],
    log_y: bool,
    value: impl Fn(&Row) -> f64,
) {
    let conns: Vec<usize> = {
        let mut c: Vec<usize> = rows.iter().map(|r| r.conns).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let (cmin, cmax) = match (conns.first(), conns.last()) {
        (Some(a), Some(b)) if b > a => (*a as f64, *b as f64),
        (Some(a), _) => (*a as f64 / 2.0, *a as f64 * 2.0),
        _ => (1.0, 10.0),
    };
    let (lmin, lmax) = (cmin.log10(), cmax.log10());
    let x = |c: f64| left + 20.0 + (c.log10() - lmin) / (lmax - lmin) * (PANEL_W - 40.0);
    let ymax_data = rows.iter().map(&value).fold(0.0, f64::max);
    let ymin_data = rows
        .iter()
        .map(&value)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let (lin_max, step) = nice_axis(ymax_data);
    let (log_lo, log_hi) = log_axis(ymin_data, ymax_data);
    let y = |v: f64| {
        let frac = if log_y {
            (v.max(10f64.powf(log_lo)).log10() - log_lo) / (log_hi - log_lo)
        } else {
            v / lin_max
        };
        TOP + PANEL_H - frac * PANEL_H
    };

    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"##,
        left + PANEL_W / 2.0,
        TOP - 10.0,
        esc(title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{left:.1}" y="{TOP:.1}" width="{PANEL_W:.1}" height="{PANEL_H:.1}" fill="none" stroke="#444"/>"##
    );
    let ticks: Vec<(f64, String)> = if log_y {
        (log_lo as i32..=log_hi as i32)
            .map(|e| {
                let v = 10f64.powi(e);
                (v, fmt_us(v))
            })
            .collect()
    } else {
        let n = (lin_max / step).round() as usize;
        (0..=n)
            .map(|i| (i as f64 * step, fmt_tick(i as f64 * step)))
            .collect()
    };
    for (v, label) in ticks {
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{left:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            left + PANEL_W,
            left - 6.0,
            yy + 4.0,
            esc(&label)
        );
    }
    for &c in &conns {
        let xx = x(c as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{TOP:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{c}</text>"##,
            TOP + PANEL_H,
            TOP + PANEL_H + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">connections (log scale)</text>"##,
        left + PANEL_W / 2.0,
        TOP + PANEL_H + 36.0
    );
    let _ = writeln!(
        svg,
        r##"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"##,
        left - 52.0,
        TOP + PANEL_H / 2.0,
        esc(ylabel)
    );
    for (slot, color) in COLORS {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.slot == slot)
            .map(|r| (x(r.conns as f64), y(value(r))))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.5"/>"##,
            path.join(" ")
        );
        for (a, b) in pts {
            let _ = writeln!(
                svg,
                r##"<circle cx="{a:.1}" cy="{b:.1}" r="4" fill="{color}"/>"##
            );
        }
    }
}

/// The whole chart as an SVG document.
pub fn chart(results: &Results) -> String {
    let rows = results.rows();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="24" font-size="17" font-weight="bold" text-anchor="middle">echo server: thread per connection ({}) vs task per connection ({})</text>"##,
        W / 2.0,
        esc(results.name(Slot::Lameduck)),
        esc(results.name(Slot::Tokio))
    );
    panel(
        &mut svg,
        LEFT[0],
        "throughput",
        "requests / s",
        &rows,
        false,
        |r| r.rps,
    );
    panel(
        &mut svg,
        LEFT[1],
        "p99 latency (log scale)",
        "p99 latency",
        &rows,
        true,
        |r| r.p99_us,
    );
    // Legend, centred between the title and the panels.
    let mut lx = W / 2.0 - 170.0;
    for (slot, color) in COLORS {
        let _ = writeln!(
            svg,
            r##"<line x1="{lx:.1}" y1="48" x2="{:.1}" y2="48" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="52" font-size="13">{}</text>"##,
            lx + 24.0,
            lx + 30.0,
            esc(results.name(slot))
        );
        lx += 190.0;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555" text-anchor="middle">{}</text>"##,
        W / 2.0,
        H - 12.0,
        esc(&results.machine.line())
    );
    svg.push_str("</svg>\n");
    svg
}
