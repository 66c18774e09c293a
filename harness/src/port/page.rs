//! `porting.html`: the porting report for people, one self-contained page like `report.html`
//! (its style and escaping, no script, no external resource; links only to the logs beside it).
//!
//! A header (board, image, date, the contracts page, the verdict), then a table with one row
//! per contract section: its number and title, its status as a labelled badge with why, and
//! the checks made (static or a test), each with its status, why, and links to its logs.
//!
//! Hooks for tests and scripts: `#verdict[data-status]`, `tr.contract[data-section]
//! [data-status]`, `li.check[data-check][data-kind][data-status]`, `a[data-log]`.

use std::fmt::Write;

use super::rows::{Check, Report, Row, Status};
use crate::report::html::{clean, escape, page_start};

/// `write!` into a `String`, which cannot fail.
macro_rules! out {
    ($h:expr, $($arg:tt)*) => {
        let _ = write!($h, $($arg)*);
    };
}

/// What this page adds to the reports' style.
const STYLE: &str = r#"
.verdict{font-size:1.1em}
.verdict.status-passed{background:var(--pass-bg);color:var(--pass);border:1px solid var(--pass)}
.verdict.status-failed{background:var(--fail-bg);color:var(--fail);border:1px solid var(--fail)}
.verdict.status-error{background:var(--err-bg);color:var(--err);border:1px solid var(--err)}
.verdict.status-skipped{background:var(--skip-bg);color:var(--skip);border:1px solid var(--skip)}
table.contracts{width:100%}
table.contracts th.section{width:3em;text-align:right}
table.contracts td.contract{width:16em}
table.contracts td.status{width:18em}
tr.contract.status-passed td.status{background:var(--pass-bg)}
tr.contract.status-failed td.status{background:var(--fail-bg)}
tr.contract.status-error td.status{background:var(--err-bg)}
tr.contract.status-skipped td.status{background:var(--skip-bg)}
ul.checks{list-style:none;margin:0;padding:0}
ul.checks li{margin:0 0 .45em}
.kind{color:var(--muted);font-size:.88em}
li.check .msg{margin:.1em 0 0;color:var(--muted);font-size:.92em}
li.check.status-failed .msg{color:var(--fail)}li.check.status-error .msg{color:var(--err)}
.logs a{margin-right:.7em;font-size:.92em}
"#;

/// Renders the report as one HTML page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let title = format!("Porting report: {}", r.board.machine);
    page_start(&mut h, &title, STYLE);
    out!(h, "<header>\n<h1>{}</h1>\n", escape(&title));
    let rig = r
        .board
        .rig
        .as_ref()
        .map(|n| format!(" on rig <code>{}</code>", escape(n)))
        .unwrap_or_default();
    out!(
        h,
        "<p class=\"meta\">board <code id=\"board\">{}</code> (slug <code id=\"slug\">{}</code>): \
         {}{rig}</p>\n<p class=\"meta\">image <code id=\"image\">{}</code></p>\n\
         <p class=\"meta\">date <time id=\"date\">{}</time> · suites <span id=\"suites\">{}</span>\
         </p>\n<p class=\"meta\">contracts <span id=\"contracts\">{}</span></p>\n",
        escape(&r.board.machine),
        escape(&r.board.slug),
        escape(&r.board.description),
        escape(&r.image),
        escape(&r.date),
        escape(&if r.static_only {
            "none (--static-only)".to_string()
        } else {
            r.suites.join(", ")
        }),
        match &r.contracts {
            Some(p) => format!("<code>{}</code>", escape(p)),
            None => "the titles of suites/contracts.yaml (the contracts page was not found)".into(),
        }
    );
    let v = r.verdict.status.word();
    out!(
        h,
        "<p class=\"banner verdict status-{v}\" id=\"verdict\" data-status=\"{v}\">{}</p>\n",
        escape(&r.verdict.line)
    );
    if let Some(run) = &r.run_report {
        out!(
            h,
            "<p class=\"meta\">the run's own report: <a id=\"run-report\" href=\"{}\">{}</a></p>\n",
            escape(run),
            escape(run)
        );
    }
    if !r.notes.is_empty() {
        h.push_str("<ul class=\"notes\">");
        for n in &r.notes {
            out!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</header>\n<section id=\"rows\">\n<h2>Contracts</h2>\n");
    h.push_str(
        "<table class=\"contracts\">\n<thead><tr><th class=\"section\">§</th><th>Contract</th>\
         <th>Status</th><th>What was checked</th></tr></thead>\n<tbody>\n",
    );
    for row in &r.rows {
        render_row(&mut h, row);
    }
    h.push_str("</tbody>\n</table>\n</section>\n</body>\n</html>\n");
    h
}

fn badge(s: Status) -> String {
    format!("<span class=\"badge status-{0}\">{0}</span>", s.word())
}

fn render_row(h: &mut String, row: &Row) {
    let s = row.status.word();
    let section = row
        .section
        .map(|n| n.to_string())
        .unwrap_or_else(|| "–".into());
    out!(
        h,
        "<tr class=\"contract status-{s}\" data-section=\"{section}\" data-status=\"{s}\">\
         <th scope=\"row\" class=\"section\">{section}</th><td class=\"contract\">{}</td>\
         <td class=\"status\">{}",
        escape(&row.title),
        badge(row.status)
    );
    if !row.why.is_empty() {
        out!(h, "<p class=\"msg\">{}</p>", escape(&clean(&row.why)));
    }
    h.push_str("</td><td class=\"checks\"><ul class=\"checks\">");
    for c in &row.checks {
        render_check(h, c);
    }
    h.push_str("</ul></td></tr>\n");
}

fn render_check(h: &mut String, c: &Check) {
    let kind = match c.kind {
        super::rows::Kind::Static => "static",
        super::rows::Kind::Test => "test",
    };
    out!(
        h,
        "<li class=\"check status-{s}\" data-check=\"{id}\" data-kind=\"{kind}\" \
         data-status=\"{s}\">{} {} <span class=\"kind\">({})</span>",
        badge(c.status),
        escape(&c.title),
        match c.kind {
            super::rows::Kind::Static => "static check".to_string(),
            super::rows::Kind::Test => format!("test <code>{}</code>", escape(&c.id)),
        },
        s = c.status.word(),
        id = escape(&c.id),
    );
    if !c.why.is_empty() {
        out!(h, "<p class=\"msg\">{}</p>", escape(&clean(&c.why)));
    }
    if !c.logs.is_empty() {
        h.push_str("<span class=\"logs\">");
        for l in &c.logs {
            out!(
                h,
                "<a data-log=\"{}\" href=\"{}\">{}</a>",
                escape(&l.label),
                escape(&href(&l.href)),
                escape(&l.label)
            );
        }
        h.push_str("</span>");
    }
    h.push_str("</li>");
}

/// A relative path as a link: each character that is not safe in a URL path percent-encoded.
fn href(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::rows::{Board, Kind, Link, Verdict};

    fn report() -> Report {
        Report {
            board: Board {
                machine: "qemux86-64".into(),
                slug: "qemux86-64".into(),
                description: "a <PC>".into(),
                rig: None,
            },
            image: "/img/a&b.img".into(),
            date: "2025-06-01 02:00:00 UTC".into(),
            contracts: None,
            suites: vec!["suite/os".into()],
            static_only: false,
            booted: true,
            verdict: Verdict {
                status: Status::Failed,
                line: "FAIL: 1 of 2 contracts broken: 1. Disk layout".into(),
            },
            rows: vec![Row {
                section: Some(1),
                title: "Disk layout".into(),
                status: Status::Failed,
                why: "static/partitions: no partition labelled resin-state".into(),
                checks: vec![Check {
                    id: "os/fsck".into(),
                    kind: Kind::Test,
                    title: "fsck <at> boot".into(),
                    status: Status::Passed,
                    why: String::new(),
                    logs: vec![Link {
                        label: "SSH transcript".into(),
                        href: "porting-logs/os/fsck#1.ssh.txt".into(),
                    }],
                }],
            }],
            run_report: Some("run/report.html".into()),
            notes: vec![],
        }
    }

    #[test]
    fn the_page_escapes_and_links() {
        let h = render(&report());
        assert!(h.starts_with("<!DOCTYPE html>"), "{h}");
        assert!(h.contains("<title>Porting report: qemux86-64</title>"));
        assert!(h.contains("<code id=\"image\">/img/a&amp;b.img</code>"));
        assert!(h.contains("a &lt;PC&gt;"));
        assert!(h.contains("id=\"verdict\" data-status=\"failed\">FAIL: 1 of 2"));
        assert!(h.contains("<tr class=\"contract status-failed\" data-section=\"1\""));
        assert!(h.contains("data-check=\"os/fsck\" data-kind=\"test\" data-status=\"passed\""));
        assert!(h.contains("fsck &lt;at&gt; boot"));
        assert!(
            h.contains("href=\"porting-logs/os/fsck%231.ssh.txt\""),
            "{h}"
        );
        assert!(h.contains("the contracts page was not found"));
        assert!(!h.contains("<script"));
    }
}
