//! Line charts in SVG for the HTML report: latency and throughput over the
//! ramp's users, with the SLO and the planned server's limits as lines.

use std::fmt::Write as _;

use super::evaluation::Limit;
use super::ramp::Ramp;
use super::step::Step;
use crate::report::esc;

/// A named, coloured line of (x, y) points.
pub type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart in SVG: series of (x, y) points, and vertical marker lines.
pub fn svg_chart(
    title: &str,
    y_label: &str,
    series: &[Series<'_>],
    hlines: &[(String, f64)],
    vlines: &[(String, f64)],
) -> String {
    let (w, h, l, r, t, b) = (720.0, 300.0, 70.0, 20.0, 30.0, 40.0);
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .collect();
    let x_max = xs.iter().copied().fold(1.0f64, f64::max);
    let x_max_all = vlines
        .iter()
        .map(|v| v.1)
        .filter(|v| *v <= x_max * 1.5)
        .fold(x_max, f64::max);
    let y_max = ys
        .iter()
        .copied()
        .chain(hlines.iter().map(|h| h.1))
        .fold(1e-9f64, f64::max)
        * 1.1;
    let px = |x: f64| l + (x / x_max_all) * (w - l - r);
    let py = |y: f64| h - b - (y / y_max) * (h - t - b);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-size=\"11\" font-family=\"sans-serif\">"
    );
    let _ = write!(
        s,
        "<text x=\"{l}\" y=\"18\" font-size=\"13\">{}</text>",
        esc(title)
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>",
        h - b,
        w - r,
        h - b
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"#888\"/>",
        h - b
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            l - 4.0,
            py(y) + 4.0,
            if y_max >= 20.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        );
        let x = x_max_all * f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>",
            px(x),
            h - b + 14.0,
            x
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">users</text>",
        (l + w - r) / 2.0,
        h - 6.0
    );
    let _ = write!(
        s,
        "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>",
        h / 2.0,
        h / 2.0,
        esc(y_label)
    );
    for (name, y) in hlines {
        let _ = write!(
            s,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/><text x=\"{}\" y=\"{:.1}\" fill=\"#c00\">{}</text>",
            w - r,
            py(*y),
            py(*y),
            l + 4.0,
            py(*y) - 3.0,
            esc(name)
        );
    }
    for (i, (name, x)) in vlines.iter().enumerate() {
        if *x > x_max_all || !x.is_finite() {
            continue;
        }
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{t}\" y2=\"{}\" stroke=\"#d60\" stroke-dasharray=\"2 3\"/><text x=\"{:.1}\" y=\"{}\" fill=\"#d60\">{}</text>",
            px(*x),
            px(*x),
            h - b,
            px(*x) + 3.0,
            t + 12.0 + 12.0 * i as f64,
            esc(name)
        );
    }
    for (_, color, points) in series {
        let mut pts = points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (x, y) in &pts {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
                px(*x),
                py(*y)
            );
        }
    }
    for (i, (name, color, _)) in series.iter().enumerate() {
        // A legend in the top-right corner, one line per series.
        let y = t + 12.0 + 14.0 * i as f64;
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"3\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
            w - r - 70.0,
            y - 4.0,
            w - r - 56.0,
            y,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

pub(super) fn latency_chart(r: &Ramp, slo_ms: Option<f64>, limits: &[Limit]) -> String {
    let pick = |f: fn(&Step) -> f64| {
        r.steps
            .iter()
            .map(|s| (s.users as f64, f(s)))
            .collect::<Vec<_>>()
    };
    let h: Vec<(String, f64)> = slo_ms.map(|v| ("SLO".to_owned(), v)).into_iter().collect();
    let v: Vec<(String, f64)> = limits.iter().map(|l| (l.name.clone(), l.users)).collect();
    svg_chart(
        "latency percentiles vs users (limits of the planned server as lines)",
        "ms",
        &[
            ("p50", "#27c", pick(|s| s.latency_ms.p50)),
            ("p95", "#e80", pick(|s| s.latency_ms.p95)),
            ("p99", "#c22", pick(|s| s.latency_ms.p99)),
        ],
        &h,
        &v,
    )
}

pub(super) fn throughput_chart(r: &Ramp) -> String {
    let pts = r
        .steps
        .iter()
        .map(|s| (s.users as f64, s.rps))
        .collect::<Vec<_>>();
    svg_chart(
        "throughput vs users",
        "req/s",
        &[("req/s", "#2a2", pts)],
        &[],
        &[],
    )
}
