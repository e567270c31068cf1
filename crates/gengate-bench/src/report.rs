//! Writers for a bench run's [`Summary`]: a terminal summary, JSON, Markdown
//! and self-contained HTML. Each takes `impl io::Write`; the capacity report
//! has its own writers in [`crate::capacity`], built from the same pieces.

use std::fmt::Write as _;
use std::io;

use crate::collect::{Percentiles, Summary};

/// `1.2 ms`, `850 µs`, `3.4 s`.
pub fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.2} ms")
    } else {
        format!("{:.0} µs", v * 1000.0)
    }
}

/// `12,345`.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.round());
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn pct_row(p: &Percentiles) -> [String; 6] {
    [
        ms(p.p50),
        ms(p.p90),
        ms(p.p95),
        ms(p.p99),
        ms(p.p999),
        ms(p.max),
    ]
}

/// The readable summary printed at the end of a run.
///
/// # Errors
/// When writing fails.
pub fn terminal(s: &Summary, mut w: impl io::Write) -> io::Result<()> {
    let load = match s.rate {
        Some(r) => format!(
            "open loop at {} req/s over {} connections",
            thousands(r),
            s.connections
        ),
        None if s.scenario == "mixed" => format!("{} virtual users", s.connections),
        None => format!("closed loop, {} connections", s.connections),
    };
    writeln!(w, "{} · scenario {} · {load}", s.target, s.scenario)?;
    writeln!(
        w,
        "  {} requests in {:.2} s: {} req/s, {:.2}% answered 2xx/3xx",
        thousands(s.requests as f64),
        s.duration_s,
        thousands(s.rps),
        s.success_rate * 100.0
    )?;
    let [p50, p90, p95, p99, p999, max] = pct_row(&s.latency_ms);
    writeln!(
        w,
        "  latency{}  p50 {p50}  p90 {p90}  p95 {p95}  p99 {p99}  p99.9 {p999}  max {max}",
        if s.rate.is_some() {
            " (from planned send time)"
        } else {
            ""
        }
    )?;
    writeln!(
        w,
        "  {:.0} bytes per response on the wire (headers included), {} total",
        s.bytes_per_response,
        thousands(s.bytes_total as f64)
    )?;
    let statuses: Vec<String> = s
        .status_counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    writeln!(
        w,
        "  status  {}",
        if statuses.is_empty() {
            "none".into()
        } else {
            statuses.join("  ")
        }
    )?;
    if !s.errors.is_empty() {
        let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        writeln!(w, "  errors  {}", errors.join("  "))?;
    }
    if s.operations.len() > 1 {
        writeln!(
            w,
            "  {:<10} {:>9} {:>7} {:>10} {:>10} {:>10} {:>8}",
            "operation", "requests", "share", "p50", "p95", "p99", "bytes"
        )?;
        for (name, o) in &s.operations {
            writeln!(
                w,
                "  {name:<10} {:>9} {:>6.1}% {:>10} {:>10} {:>10} {:>8.0}",
                o.requests,
                o.share * 100.0,
                ms(o.latency_ms.p50),
                ms(o.latency_ms.p95),
                ms(o.latency_ms.p99),
                o.bytes_per_response
            )?;
        }
    }
    if let Some(t) = &s.tasks {
        writeln!(
            w,
            "  tasks   {} created: {} succeeded, {} failed, {} unfinished at the end",
            t.created, t.succeeded, t.failed, t.unfinished
        )?;
        if t.succeeded + t.failed > 0 {
            let p = &t.time_to_result_ms;
            writeln!(
                w,
                "  time to result  p50 {}  p95 {}  p99 {}  max {}",
                ms(p.p50),
                ms(p.p95),
                ms(p.p99),
                ms(p.max)
            )?;
        }
    }
    Ok(())
}

/// `--json`: the summary as one JSON object.
///
/// # Errors
/// When writing fails.
pub fn json(s: &Summary, mut w: impl io::Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut w, s)?;
    writeln!(w)
}

/// A Markdown table of the summary.
pub fn markdown_body(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| target | `{}` |", s.target);
    let _ = writeln!(
        out,
        "| scenario | {} ({}, {} connections{}) |",
        s.scenario,
        s.mode,
        s.connections,
        s.rate.map(|r| format!(", {r} req/s")).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "| requests | {} in {:.2} s |",
        thousands(s.requests as f64),
        s.duration_s
    );
    let _ = writeln!(out, "| throughput | {} req/s |", thousands(s.rps));
    let _ = writeln!(
        out,
        "| answered 2xx/3xx | {:.3} % |",
        s.success_rate * 100.0
    );
    let _ = writeln!(out, "| bytes per response | {:.0} |", s.bytes_per_response);
    let statuses: Vec<String> = s
        .status_counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(out, "| status codes | {} |", statuses.join(", "));
    let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(
        out,
        "| errors | {} |",
        if errors.is_empty() {
            "none".into()
        } else {
            errors.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "\n| operation | requests | p50 | p90 | p95 | p99 | p99.9 | max | bytes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let [a, b, c, d, e, f] = pct_row(&s.latency_ms);
    let _ = writeln!(
        out,
        "| **all** | {} | {a} | {b} | {c} | {d} | {e} | {f} | {:.0} |",
        s.requests, s.bytes_per_response
    );
    for (name, o) in &s.operations {
        let [a, b, c, d, e, f] = pct_row(&o.latency_ms);
        let _ = writeln!(
            out,
            "| {name} | {} | {a} | {b} | {c} | {d} | {e} | {f} | {:.0} |",
            o.requests, o.bytes_per_response
        );
    }
    if let Some(t) = &s.tasks {
        let p = &t.time_to_result_ms;
        let _ = writeln!(
            out,
            "\nCreated tasks: {} ({} succeeded, {} failed, {} unfinished). Time to result: p50 {}, p95 {}, p99 {}, max {}.",
            t.created,
            t.succeeded,
            t.failed,
            t.unfinished,
            ms(p.p50),
            ms(p.p95),
            ms(p.p99),
            ms(p.max)
        );
    }
    out
}

/// `--report FILE.md`.
///
/// # Errors
/// When writing fails.
pub fn markdown(s: &Summary, mut w: impl io::Write) -> io::Result<()> {
    writeln!(w, "# gengate bench: {}\n", s.scenario)?;
    w.write_all(markdown_body(s).as_bytes())
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page around an HTML report: inline style, no external assets.
pub fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}\
td:first-child,th:first-child{{text-align:left}}h1,h2{{font-weight:600}}.bind{{background:#fde2e1}}\
svg{{background:#fafafa;border:1px solid #ddd;margin:.5em 0}}code{{background:#f3f3f3;padding:0 .2em}}\
</style></head><body>\n{body}\n</body></html>\n",
        esc(title)
    )
}

/// Turns the subset of Markdown our writers produce (headings, tables,
/// paragraphs, code spans) into HTML, so both formats carry the same text.
pub fn markdown_to_html(md: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    let inline = |s: &str| {
        let mut r = String::new();
        for (i, part) in esc(s).split('`').enumerate() {
            if i % 2 == 1 {
                let _ = write!(r, "<code>{part}</code>");
            } else {
                let mut bold = part.split("**");
                r.push_str(bold.next().unwrap_or(""));
                for (j, b) in bold.enumerate() {
                    r.push_str(if j % 2 == 0 { "<b>" } else { "</b>" });
                    r.push_str(b);
                }
            }
        }
        r
    };
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| "-:".contains(ch)) && !c.is_empty())
            {
                continue;
            }
            if !in_table {
                out.push_str("<table>\n");
                in_table = true;
            }
            out.push_str("<tr>");
            for c in cells {
                let _ = write!(out, "<td>{}</td>", inline(c));
            }
            out.push_str("</tr>\n");
            continue;
        }
        if in_table {
            out.push_str("</table>\n");
            in_table = false;
        }
        if let Some(h) = t.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", inline(h));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", inline(h));
        } else if let Some(item) = t.strip_prefix("- ") {
            let _ = writeln!(out, "<p>• {}</p>", inline(item));
        } else if t.starts_with("<svg") || t.starts_with("<!--") {
            let _ = writeln!(out, "{t}");
        } else if !t.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline(t));
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    out
}

/// `--report FILE.html`.
///
/// # Errors
/// When writing fails.
pub fn html(s: &Summary, mut w: impl io::Write) -> io::Result<()> {
    let title = format!("gengate bench: {}", s.scenario);
    let body = format!(
        "<h1>{}</h1>\n{}",
        esc(&title),
        markdown_to_html(&markdown_body(s))
    );
    w.write_all(html_page(&title, &body).as_bytes())
}

/// Picks the writer by the file's extension: `.html`/`.htm` or Markdown.
///
/// # Errors
/// When the file cannot be written.
pub fn write_file(
    path: &std::path::Path,
    md: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    html: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = Vec::new();
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => html(&mut buf)?,
        _ => md(&mut buf)?,
    }
    std::fs::write(path, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(0.25), "250 µs");
        assert_eq!(ms(12.0), "12.00 ms");
        assert_eq!(ms(2500.0), "2.50 s");
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
        let h = markdown_to_html("# T\n| a | `b` |\n|---|---|\n| 1 | **2** |\ntext");
        assert!(
            h.contains("<h1>T</h1>")
                && h.contains("<td><code>b</code></td>")
                && h.contains("<td><b>2</b></td>")
                && h.contains("<p>text</p>"),
            "{h}"
        );
    }
}
