//! The capacity report written out: the short answer for the terminal,
//! Markdown, self-contained HTML (the Markdown plus charts) and JSON.

use std::fmt::Write as _;
use std::io;

use super::chart::{latency_chart, throughput_chart};
use super::report::Report;
use super::sizes::{kib, mib};
use crate::report::{html_page, markdown_to_html, ms, thousands};

fn users_text(u: f64) -> String {
    if u.is_infinite() {
        "unbounded".into()
    } else {
        thousands(u.floor())
    }
}

fn next_text(next: Option<&(String, f64)>) -> String {
    next.map_or_else(|| "-".into(), |(n, v)| format!("{n} at {}", users_text(*v)))
}

impl Report {
    fn server_text(&self) -> String {
        format!(
            "{} cores, {} RAM ({} for the OS, {} for the database), {:.1} Mbps",
            self.server.cpus,
            mib(self.server.memory_bytes as f64),
            mib(self.server.os_bytes as f64),
            mib(self.server.db_bytes as f64),
            self.server.bandwidth_bps / 1e6
        )
    }

    /// The report in Markdown (the HTML report carries the same text plus charts).
    pub fn markdown_body(&self, charts: bool) -> String {
        let mut o = String::new();
        let e = &self.evaluation;
        let a = &self.answer;
        let _ = writeln!(
            o,
            "Target `{}`; planned server: {}; SLO {}.",
            self.target,
            self.server_text(),
            self.slo
        );
        if let Some(n) = self.pinned_cpus {
            let _ = writeln!(
                o,
                "\nThe server was confined to {n} core(s) during the measurement (a rehearsal of a small server)."
            );
        }
        let _ = writeln!(o, "\n## {} users at once?\n", a.users);
        let verdict = if a.fits {
            format!(
                "**Yes.** {} users fit; the binding limit is **{}** at about {} users.",
                a.users,
                e.binding_name(),
                users_text(e.users())
            )
        } else {
            format!(
                "**No.** {} users exceed: {}. The binding limit is **{}** at about {} users.",
                a.users,
                a.exceeded.join(", "),
                e.binding_name(),
                users_text(e.users())
            )
        };
        let _ = writeln!(o, "{verdict}");
        let _ = writeln!(
            o,
            "\nThey make about {} req/s ({}).",
            thousands(a.rps),
            self.users_behave
        );
        for (p, wait, ttr) in &a.burst {
            let _ = writeln!(
                o,
                "\nIf all {} create a task at the same moment, the last one waits {:.0} s in the queue for provider `{p}` and has its result after {:.0} s.",
                a.users, wait, ttr
            );
        }
        let _ = writeln!(o, "\n## Limits\n\n| limit | users | from |\n|---|---:|---|");
        for (i, l) in e.limits.iter().enumerate() {
            let name = if i == e.binding {
                format!("**{}** (binding)", l.name)
            } else {
                l.name.clone()
            };
            let _ = writeln!(o, "| {name} | {} | {} |", users_text(l.users), l.basis);
        }
        let _ = writeln!(
            o,
            "\n## Upgrades\n\n| upgrade | users | bound by | next limit |\n|---|---:|---|---|"
        );
        for u in &self.upgrades {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                u.what,
                users_text(u.users),
                u.binding,
                next_text(u.next.as_ref())
            );
        }
        let m = &self.measured;
        let _ = writeln!(o, "\n## Measured\n\n| quantity | value |\n|---|---:|");
        let _ = writeln!(o, "| requests per user | {:.3} req/s |", m.per_user_rps);
        let _ = writeln!(
            o,
            "| tasks created per user | {:.2} per minute |",
            m.per_user_creates_per_s * 60.0
        );
        let _ = writeln!(
            o,
            "| bytes per response (mix, headers included) | {:.0} B |",
            m.bytes_per_response
        );
        if let Some(c) = m.cpu_s_per_request {
            let _ = writeln!(o, "| server CPU per request | {:.0} µs |", c * 1e6);
        }
        if let Some(r) = m.idle_rss_bytes {
            let _ = writeln!(o, "| server RSS at rest | {} |", mib(r as f64));
        }
        if let Some(r) = m.rss_per_user_bytes {
            let _ = writeln!(
                o,
                "| RSS per virtual user (slope over the ramp) | {} |",
                kib(r)
            );
        }
        if let Some(r) = m.rss_per_connection_bytes {
            let _ = writeln!(o, "| RSS per idle keep-alive connection | {} |", kib(r));
        }
        if let Some(r) = m.rss_per_task_bytes {
            let _ = writeln!(o, "| RSS per queued task | {} |", kib(r));
        }
        let _ = writeln!(
            o,
            "| durable creates reached | {} /s |",
            thousands(m.store_writes_per_s)
        );
        if let Some(b) = m.store_bytes_per_task {
            let _ = writeln!(o, "| store on disk per task | {} |", kib(b));
        }
        for p in &m.providers {
            let _ = writeln!(
                o,
                "| provider `{}` | {} slots, {:.1} s per task{} |",
                p.name,
                p.concurrency,
                p.latency_s,
                if p.used { "" } else { " (not used by the mix)" }
            );
        }
        for (scenario, r) in &self.ramps {
            let best = if r.capped {
                format!("at least {} (the ramp's cap; the SLO never broke)", r.best)
            } else {
                format!(
                    "{} (first failing: {})",
                    r.best,
                    r.first_failing.unwrap_or(0)
                )
            };
            let _ = writeln!(
                o,
                "\n## Ramp: {scenario}\n\nMost concurrent users meeting the SLO here: **{best}**.\n"
            );
            if charts {
                let _ = writeln!(o, "{}", latency_chart(r, self.slo_ms(), &e.limits));
                let _ = writeln!(o, "{}", throughput_chart(r));
            }
            let _ = writeln!(
                o,
                "| users | req/s | p50 | p95 | p99 | errors | B/resp | RSS | CPU s | SLO |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            );
            let mut steps = r.steps.clone();
            steps.sort_by_key(|s| s.users);
            for s in &steps {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {:.2}% | {:.0} | {} | {} | {} |",
                    s.users,
                    thousands(s.rps),
                    ms(s.latency_ms.p50),
                    ms(s.latency_ms.p95),
                    ms(s.latency_ms.p99),
                    s.error_rate * 100.0,
                    s.bytes_per_response,
                    s.rss_bytes.map_or("-".into(), |b| mib(b as f64)),
                    s.cpu_s.map_or("-".into(), |c| format!("{c:.2}")),
                    if s.meets_slo { "met" } else { "**broken**" }
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(o, "- {n}");
            }
        }
        o
    }

    fn slo_ms(&self) -> Option<f64> {
        let (_, v) = self.slo.split_once('=')?;
        let v = v.split(',').next()?;
        gengate_core::units::parse_duration(v)
            .ok()
            .map(|d| d.as_secs_f64() * 1000.0)
    }

    /// # Errors
    /// When writing fails.
    pub fn markdown(&self, mut w: impl io::Write) -> io::Result<()> {
        writeln!(w, "# gengate capacity\n")?;
        w.write_all(self.markdown_body(false).as_bytes())
    }

    /// Self-contained HTML: inline style and SVG, no external assets.
    ///
    /// # Errors
    /// When writing fails.
    pub fn html(&self, mut w: impl io::Write) -> io::Result<()> {
        let body = format!(
            "<h1>gengate capacity</h1>\n{}",
            markdown_to_html(&self.markdown_body(true))
        );
        w.write_all(html_page("gengate capacity", &body).as_bytes())
    }

    /// # Errors
    /// When writing fails.
    pub fn json(&self, mut w: impl io::Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self)?;
        writeln!(w)
    }

    /// The short answer printed on the terminal.
    ///
    /// # Errors
    /// When writing fails.
    pub fn terminal(&self, mut w: impl io::Write) -> io::Result<()> {
        let e = &self.evaluation;
        let a = &self.answer;
        writeln!(
            w,
            "planned server: {}; SLO {}",
            self.server_text(),
            self.slo
        )?;
        for (scenario, r) in &self.ramps {
            writeln!(
                w,
                "{scenario}: {} users met the SLO here{}",
                r.best,
                if r.capped {
                    " (the ramp's cap; it never broke)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(w, "limits on the planned server (users):")?;
        for (i, l) in e.limits.iter().enumerate() {
            writeln!(
                w,
                "  {:<20} {:>10}  {}{}",
                l.name,
                users_text(l.users),
                l.basis,
                if i == e.binding { "  <- binding" } else { "" }
            )?;
        }
        writeln!(
            w,
            "{} users at once: {} (about {} req/s){}",
            a.users,
            if a.fits { "yes" } else { "no" },
            thousands(a.rps),
            if a.fits {
                String::new()
            } else {
                format!("; exceeds {}", a.exceeded.join(", "))
            }
        )?;
        for (p, wait, ttr) in &a.burst {
            writeln!(
                w,
                "  all {} creating at once on {p}: the last waits {wait:.0} s, result after {ttr:.0} s",
                a.users
            )?;
        }
        writeln!(w, "upgrades:")?;
        for u in &self.upgrades {
            writeln!(
                w,
                "  {:<52} {:>10} users  (bound by {}; next: {})",
                u.what,
                users_text(u.users),
                u.binding,
                next_text(u.next.as_ref())
            )?;
        }
        Ok(())
    }
}
