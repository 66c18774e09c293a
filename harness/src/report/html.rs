//! `report.html`: one self-contained page for people to read after a run.
//!
//! Inline CSS, no script, no external resource: it opens from `file://` and from a CI
//! artifact alike. A header (title, image, start, counts, notes), the targets and their
//! states, then a matrix of tests (rows) by targets (columns): each cell holds the test's
//! status there as a coloured badge with a text label, its duration, its message, the figures
//! it recorded, its SSH transcript and serial console in `<details>`, and the earlier attempts
//! that ran there. A checkbox hides the rows without problems (pure CSS).
//!
//! Elements carry stable hooks for tests and scripts: `tr.test[data-test="suite/name"]`,
//! `td.cell[data-test][data-target][data-status]`, `tr.target[data-target][data-state]`,
//! `details.log[data-log="ssh"|"console"]`, `[data-count]`, `dd[data-figure]`.

use std::fmt::Write;

use super::{Attempt, Counts, Outcome, RunInfo, TargetReport, TargetStatus, TestResult};
use crate::clock::elapsed;

/// `write!` into a `String`, which cannot fail.
macro_rules! out {
    ($h:expr, $($arg:tt)*) => {
        let _ = write!($h, $($arg)*);
    };
}

const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;
--pass:#1a7f37;--pass-bg:#e8f5ec;--fail:#cf222e;--fail-bg:#fdecec;--err:#a4540a;--err-bg:#fff1e0;
--flaky:#7d5e00;--flaky-bg:#fff7d6;--skip:#59636e;--skip-bg:#f3f4f6;--run:#0969da;--run-bg:#e7f0fd}
*{box-sizing:border-box}
body{margin:0;padding:1.2em 1.6em;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .5em}
code,pre{font:12px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
.meta{color:var(--muted);margin:.2em 0}.meta code{color:var(--fg)}
.banner{border-radius:6px;padding:.6em .9em;margin:.8em 0;font-weight:600}
.banner.interrupted{background:var(--fail-bg);color:var(--fail);border:1px solid var(--fail)}
.banner.unfinished{background:var(--run-bg);color:var(--run);border:1px solid var(--run)}
ul.counts{list-style:none;padding:0;margin:.8em 0;display:flex;flex-wrap:wrap;gap:.4em}
ul.notes{margin:.3em 0;padding-left:1.3em;color:var(--muted)}
.badge{display:inline-block;border-radius:4px;padding:.05em .5em;font-weight:600;font-size:.9em;color:#fff;background:var(--skip);white-space:nowrap}
ul.counts .badge{font-size:1em;padding:.2em .7em}
ul.counts li.zero .badge{background:var(--skip-bg)!important;color:var(--muted)}
.status-passed>.badge,.badge.status-passed,.badge.state-done{background:var(--pass)}
.status-failed>.badge,.badge.status-failed,.badge.state-broken{background:var(--fail)}
.status-error>.badge,.badge.status-error{background:var(--err)}
.status-flaky>.badge,.badge.status-flaky{background:var(--flaky)}
.badge.state-running{background:var(--run)}
.badge.outline{background:#fff!important;border:1.5px solid currentColor}
.badge.outline.status-failed{color:var(--fail)}.badge.outline.status-error{color:var(--err)}
table{border-collapse:collapse}
th,td{border:1px solid var(--line);padding:.4em .6em;text-align:left;vertical-align:top}
thead th{background:#f6f8fa}
table.targets td.notes ul{margin:0;padding-left:1.1em}
table.matrix{width:100%;table-layout:fixed}
table.matrix col.test{width:15em}
table.matrix th.test{font-weight:normal;overflow-wrap:anywhere}
table.matrix th.test .suite{color:var(--muted)}
table.matrix thead .machine{display:block;font-weight:normal;color:var(--muted);font-size:.9em}
.machine .state-broken{color:var(--fail);font-weight:600}.machine .state-running{color:var(--run)}
td.status-passed{background:var(--pass-bg)}td.status-failed{background:var(--fail-bg)}
td.status-error,td.status-infra-error{background:var(--err-bg)}td.status-flaky{background:var(--flaky-bg)}
td.status-skipped{background:var(--skip-bg)}td.status-rerun{background:var(--fail-bg)}
td.status-none{color:var(--muted);text-align:center;vertical-align:middle}
.dur{color:var(--muted);margin-left:.3em}.then{color:var(--muted);font-size:.9em}
.msg{margin:.3em 0;white-space:pre-wrap;overflow-wrap:anywhere}
.attempt{margin-top:.5em;padding-top:.4em;border-top:1px dashed var(--line)}
.attempt:first-child{margin-top:0;padding-top:0;border-top:0}
dl.figures{display:grid;grid-template-columns:max-content 1fr;gap:0 .8em;margin:.3em 0;font-size:.92em}
dl.figures dt{color:var(--muted)}dl.figures dd{margin:0;font-variant-numeric:tabular-nums}
details.log{margin:.25em 0}details.log summary{cursor:pointer;color:var(--run);font-size:.92em}
details.log pre{margin:.3em 0;padding:.5em .6em;max-height:30em;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;border:1px solid var(--line);border-radius:4px}
.toggle{display:inline-block;margin:0 0 .6em;user-select:none}
#only-problems:checked~table tr.ok{display:none}
.empty-note{color:var(--muted)}
"#;

/// Renders the run as one self-contained HTML5 page.
pub fn render(
    info: &RunInfo,
    targets: &[TargetReport],
    results: &[TestResult],
    interrupted: bool,
) -> String {
    let mut h = String::with_capacity(16 * 1024);
    page_start(&mut h, &format!("harness: {}", info.title), "");
    header(&mut h, info, targets, results, interrupted);
    targets_table(&mut h, targets);
    matrix(&mut h, targets, results);
    h.push_str("</body>\n</html>\n");
    h
}

/// Starts a self-contained page: the doctype, a head with `title` and the reports' style
/// followed by `extra_style`, and `<body>`. The page ends with `</body>\n</html>\n`.
pub fn page_start(h: &mut String, title: &str, extra_style: &str) {
    out!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"harness\">\n<title>{}</title>\n\
         <style>{STYLE}{extra_style}</style>\n</head>\n<body>\n",
        escape(title)
    );
}

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Makes console output fit to show: drops terminal escape sequences (colours, cursor moves)
/// and control characters except `\n` and `\t`; `\r\n` becomes `\n`, a lone `\r` a newline.
///
/// `strip-ansi-escapes` drops the sequences, and with them every C0 control but `\n`: so line
/// ends are made `\n` first, each tab-separated piece is stripped alone and the tabs put back,
/// and what the crate lets through (DEL, C1 controls) is dropped after.
pub fn clean(s: &str) -> String {
    let s = s.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = s
        .split('\t')
        .map(strip_ansi_escapes::strip_str)
        .collect::<Vec<_>>()
        .join("\t");
    out.retain(|c| c == '\n' || c == '\t' || !c.is_control());
    out
}

fn header(
    h: &mut String,
    info: &RunInfo,
    targets: &[TargetReport],
    results: &[TestResult],
    interrupted: bool,
) {
    let mode = match info.mode.as_str() {
        "spread" => "spread: the tests shared out over the targets",
        "each" => "each: every target runs every test",
        other => other,
    };
    out!(
        h,
        "<header>\n<h1>{}</h1>\n<p class=\"meta\">image <code id=\"image\">{}</code></p>\n\
         <p class=\"meta\">started <time id=\"started\">{}</time> · mode <span id=\"mode\" \
         data-mode=\"{}\">{}</span></p>\n",
        escape(&format!("harness: {}", info.title)),
        escape(&info.image.display().to_string()),
        crate::clock::utc_at(info.started).text(),
        escape(&info.mode),
        escape(mode),
    );
    if interrupted {
        h.push_str(
            "<p class=\"banner interrupted\" id=\"interrupted\" role=\"alert\">Interrupted: the \
             run was stopped before it finished; this report holds what ran.</p>\n",
        );
    } else {
        let busy = targets
            .iter()
            .filter(|t| {
                matches!(
                    t.status,
                    TargetStatus::Starting(_) | TargetStatus::Running(_)
                )
            })
            .count();
        if busy > 0 {
            out!(
                h,
                "<p class=\"banner unfinished\" id=\"unfinished\">Not finished: {busy} target{} \
                 still at work when this was written (a run in progress, or one that was \
                 killed).</p>\n",
                if busy == 1 { " was" } else { "s were" }
            );
        }
    }
    let c = Counts::of(results);
    h.push_str("<ul class=\"counts\" id=\"counts\">\n");
    for (key, n, label) in [
        ("passed", c.passed, "passed"),
        ("failed", c.failed, "failed"),
        ("flaky", c.flaky, "flaky"),
        ("skipped", c.skipped, "skipped"),
        (
            "error",
            c.errors,
            if c.errors == 1 { "error" } else { "errors" },
        ),
    ] {
        out!(
            h,
            "<li class=\"status-{key}{}\" data-count=\"{key}\" data-n=\"{n}\"><span class=\"badge\">\
             {n} {label}</span></li>\n",
            if n == 0 { " zero" } else { "" }
        );
    }
    h.push_str("</ul>\n");
    notes(h, &info.notes, "notes");
    h.push_str("</header>\n");
}

fn notes(h: &mut String, notes: &[String], class: &str) {
    if notes.is_empty() {
        return;
    }
    out!(h, "<ul class=\"{class}\">");
    for n in notes {
        out!(h, "<li>{}</li>", escape(n));
    }
    h.push_str("</ul>\n");
}

/// A target's state: its class suffix, its label, its detail.
fn state(s: &TargetStatus) -> (&'static str, &'static str, &str) {
    match s {
        TargetStatus::Starting(d) => ("starting", "starting", d),
        TargetStatus::Running(d) => ("running", "still running", d),
        TargetStatus::Done => ("done", "done", ""),
        TargetStatus::Broken(d) => ("broken", "broken", d),
    }
}

fn targets_table(h: &mut String, targets: &[TargetReport]) {
    h.push_str("<section id=\"targets\">\n<h2>Targets</h2>\n");
    if targets.is_empty() {
        h.push_str("<p class=\"empty-note\">No target set up yet.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<table class=\"targets\">\n<thead><tr><th>Target</th><th>Machine</th><th>State</th>\
         <th>Notes</th></tr></thead>\n<tbody>\n",
    );
    for t in targets {
        let (key, label, detail) = state(&t.status);
        let name = escape(&t.name);
        out!(
            h,
            "<tr class=\"target state-{key}\" data-target=\"{name}\" data-state=\"{key}\">\
             <th scope=\"row\">{name}</th><td>{}</td><td class=\"state\"><span class=\"badge \
             state-{key}\">{label}</span>",
            escape(&t.machine)
        );
        if !detail.is_empty() {
            out!(h, " <span class=\"detail\">{}</span>", escape(detail));
        }
        h.push_str("</td><td class=\"notes\">");
        notes(h, &t.notes, "target-notes");
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// The matrix's columns: the targets in order, then any target a result names that the list
/// lacks.
fn columns<'a>(targets: &'a [TargetReport], results: &'a [TestResult]) -> Vec<&'a str> {
    let mut cols: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    for r in results {
        let names = std::iter::once(r.target.as_str()).chain(r.attempts.iter().map(|a| &*a.target));
        for n in names {
            if !cols.contains(&n) {
                cols.push(n);
            }
        }
    }
    cols
}

fn matrix(h: &mut String, targets: &[TargetReport], results: &[TestResult]) {
    h.push_str("<section id=\"tests\">\n<h2>Tests</h2>\n");
    if results.is_empty() {
        h.push_str("<p class=\"empty-note\">No test has finished yet.</p>\n</section>\n");
        return;
    }
    let cols = columns(targets, results);
    // Rows: `suite/name` in the order they first finished.
    let mut rows: Vec<(String, Vec<&TestResult>)> = Vec::new();
    for r in results {
        let key = format!("{}/{}", r.suite, r.name);
        match rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rs)) => rs.push(r),
            None => rows.push((key, vec![r])),
        }
    }
    h.push_str(
        "<input type=\"checkbox\" id=\"only-problems\"> <label class=\"toggle\" \
         for=\"only-problems\">Show only problems (failed, error, flaky, retried)</label>\n\
         <table class=\"matrix\">\n",
    );
    out!(
        h,
        "<colgroup><col class=\"test\"><col span=\"{}\"></colgroup>\n<thead><tr><th>Test</th>",
        cols.len()
    );
    for c in &cols {
        let t = targets.iter().find(|t| t.name == *c);
        out!(h, "<th data-target=\"{}\">{}", escape(c), escape(c));
        if let Some(t) = t {
            let (key, label, _) = state(&t.status);
            out!(
                h,
                "<span class=\"machine\">{} · <span class=\"state-{key}\">{label}</span></span>",
                escape(&t.machine)
            );
        }
        h.push_str("</th>");
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for (key, rs) in &rows {
        let problem = rs.iter().any(|r| {
            matches!(r.outcome, Outcome::Failed(_) | Outcome::Error(_)) || !r.attempts.is_empty()
        });
        let (suite, name) = key.split_once('/').unwrap_or(("", key));
        out!(
            h,
            "<tr class=\"test {}\" data-test=\"{}\"><th scope=\"row\" class=\"test\">\
             <span class=\"suite\">{}/</span>{}</th>",
            if problem { "problem" } else { "ok" },
            escape(key),
            escape(suite),
            escape(name)
        );
        for c in &cols {
            cell(h, key, c, rs);
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// A result's status: its class suffix and its label.
fn status(r: &TestResult) -> (&'static str, &'static str) {
    if r.flaky() {
        return ("flaky", "flaky");
    }
    match r.outcome {
        Outcome::Passed => ("passed", "passed"),
        Outcome::Failed(_) => ("failed", "failed"),
        Outcome::Skipped(_) => ("skipped", "skipped"),
        Outcome::Error(_) => ("error", "error"),
    }
}

/// An earlier attempt's status: its class suffix, its label, and the cell's status when the
/// attempt is all the cell holds.
fn attempt_status(a: &Attempt) -> (&'static str, &'static str, &'static str) {
    match a.outcome {
        Outcome::Failed(_) => ("failed", "failed, rerun", "rerun"),
        Outcome::Error(_) => ("error", "infra error", "infra-error"),
        Outcome::Passed => ("passed", "passed", "passed"),
        Outcome::Skipped(_) => ("skipped", "skipped", "skipped"),
    }
}

fn message(o: &Outcome) -> Option<&str> {
    match o {
        Outcome::Passed => None,
        Outcome::Failed(m) | Outcome::Skipped(m) | Outcome::Error(m) => Some(m),
    }
}

/// One test on one target: its final run there (if any), then its earlier attempts there.
fn cell(h: &mut String, test: &str, target: &str, rs: &[&TestResult]) {
    let finals: Vec<&TestResult> = rs.iter().copied().filter(|r| r.target == target).collect();
    let attempts: Vec<(&Attempt, &TestResult)> = rs
        .iter()
        .flat_map(|r| r.attempts.iter().map(move |a| (a, *r)))
        .filter(|(a, _)| a.target == target)
        .collect();
    let cell_status = match (finals.first(), attempts.first()) {
        (Some(r), _) => status(r).0,
        (None, Some((a, _))) => {
            if attempts
                .iter()
                .any(|(a, _)| matches!(a.outcome, Outcome::Failed(_)))
            {
                "rerun"
            } else {
                attempt_status(a).2
            }
        }
        (None, None) => "none",
    };
    out!(
        h,
        "<td class=\"cell status-{cell_status}\" data-test=\"{}\" data-target=\"{}\" \
         data-status=\"{cell_status}\">",
        escape(test),
        escape(target)
    );
    if cell_status == "none" {
        h.push_str("<span class=\"none\" title=\"not run on this target\">–</span></td>");
        return;
    }
    for r in &finals {
        let (key, label) = status(r);
        out!(
            h,
            "<div class=\"run final status-{key}\"><span class=\"badge status-{key}\">{label}</span>\
             <span class=\"dur\">{}</span>",
            elapsed(r.duration)
        );
        if let Some(m) = message(&r.outcome) {
            out!(h, "<p class=\"msg\">{}</p>", escape(&clean(m)));
        }
        if !r.properties.is_empty() {
            h.push_str("<dl class=\"figures\">");
            for (k, v) in &r.properties {
                out!(
                    h,
                    "<dt>{}</dt><dd data-figure=\"{}\">{}</dd>",
                    escape(k),
                    escape(k),
                    escape(v)
                );
            }
            h.push_str("</dl>");
        }
        logs(h, &r.transcript, &r.console);
        h.push_str("</div>");
    }
    for (i, (a, r)) in attempts.iter().enumerate() {
        let (key, label, _) = attempt_status(a);
        out!(
            h,
            "<div class=\"run attempt status-{key}\" data-attempt=\"{}\"><span class=\"badge \
             outline status-{key}\">{label}</span><span class=\"dur\">{}</span>",
            i + 1,
            elapsed(a.duration)
        );
        if r.target != target {
            out!(
                h,
                " <span class=\"then\">then ran on {}</span>",
                escape(&r.target)
            );
        }
        if let Some(m) = message(&a.outcome) {
            out!(h, "<p class=\"msg\">{}</p>", escape(&clean(m)));
        }
        logs(h, &a.transcript, &a.console);
        h.push_str("</div>");
    }
    h.push_str("</td>");
}

fn logs(h: &mut String, transcript: &str, console: &str) {
    for (kind, label, text) in [
        ("ssh", "SSH transcript", transcript),
        ("console", "serial console", console),
    ] {
        if text.is_empty() {
            continue;
        }
        let text = clean(text);
        let lines = text.lines().count();
        out!(
            h,
            "<details class=\"log\" data-log=\"{kind}\"><summary>{label} ({lines} line{})</summary>\
             <pre>{}</pre></details>",
            if lines == 1 { "" } else { "s" },
            escape(&text)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn info(mode: &str) -> RunInfo {
        RunInfo {
            title: "qemux86-64 x2".into(),
            mode: mode.into(),
            image: "images/<odd>&name.img".into(),
            started: UNIX_EPOCH + Duration::from_secs(1_748_743_200),
            notes: vec!["accelerator: tcg".into()],
        }
    }

    fn target(name: &str, status: TargetStatus) -> TargetReport {
        TargetReport {
            name: name.into(),
            machine: "qemux86-64".into(),
            status,
            notes: vec![],
        }
    }

    fn result(name: &str, target: &str, outcome: Outcome) -> TestResult {
        TestResult {
            suite: "os".into(),
            name: name.into(),
            target: target.into(),
            outcome,
            duration: Duration::from_millis(2500),
            properties: vec![],
            transcript: String::new(),
            console: String::new(),
            attempts: vec![],
        }
    }

    /// The `<td>` of `test` on `target`.
    fn cell_of<'a>(html: &'a str, test: &str, target: &str) -> &'a str {
        let needle = format!("data-test=\"{test}\" data-target=\"{target}\"");
        let at = html
            .find(&needle)
            .unwrap_or_else(|| panic!("no cell {needle}"));
        let start = html[..at].rfind("<td").unwrap();
        let end = at + html[at..].find("</td>").unwrap();
        &html[start..end]
    }

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(
            escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            clean("\x1b[1;32mOK\x1b[0m\r\nbell\x07\tx\x1b]0;title\x07 y\x1b(B\x7f\n"),
            "OK\nbell\tx y\n"
        );
        assert_eq!(clean("50%\r100%"), "50%\n100%");
        let html = render(
            &info("spread"),
            &[],
            &[TestResult {
                console: "<script>alert(1)</script> & \x1b[31mred\x1b[0m".into(),
                ..result("boot", "q#1", Outcome::Failed("got <none> & \"x\"".into()))
            }],
            false,
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; red"));
        assert!(html.contains("got &lt;none&gt; &amp; &quot;x&quot;"));
        assert!(html.contains("images/&lt;odd&gt;&amp;name.img"));
        assert!(!html.contains('\x1b'));
        assert!(html.contains("2025-06-01 02:00:00 UTC"), "{html}");
    }

    #[test]
    fn cells_show_status_duration_message_figures_and_logs() {
        let mut boot = result("boot", "q#1", Outcome::Passed);
        boot.properties = vec![("boot_seconds".into(), "31.2".into())];
        boot.transcript = "$ uname\nLinux\n".into();
        let failed = result(
            "hostname",
            "q#1",
            Outcome::Failed("hostname is wrong".into()),
        );
        let html = render(
            &info("spread"),
            &[
                target("q#1", TargetStatus::Done),
                target("q#2", TargetStatus::Broken("SSH never answered".into())),
            ],
            &[boot, failed],
            false,
        );
        let c = cell_of(&html, "os/boot", "q#1");
        assert!(c.contains("class=\"cell status-passed\""), "{c}");
        assert!(c.contains(">passed</span>") && c.contains("2.5s"), "{c}");
        assert!(c.contains("<dt>boot_seconds</dt><dd data-figure=\"boot_seconds\">31.2</dd>"));
        assert!(
            c.contains("<details class=\"log\" data-log=\"ssh\"><summary>SSH transcript (2 lines)")
        );
        assert!(!c.contains("data-log=\"console\""), "{c}");
        let c = cell_of(&html, "os/hostname", "q#1");
        assert!(
            c.contains("status-failed") && c.contains(">failed</span>"),
            "{c}"
        );
        assert!(c.contains("<p class=\"msg\">hostname is wrong</p>"), "{c}");
        let c = cell_of(&html, "os/boot", "q#2");
        assert!(c.contains("data-status=\"none\""), "{c}");
        assert!(html.contains("data-target=\"q#2\" data-state=\"broken\""));
        assert!(html.contains("SSH never answered"));
        assert!(html.contains("data-count=\"failed\" data-n=\"1\""));
        assert!(html.contains("<tr class=\"test problem\" data-test=\"os/hostname\""));
        assert!(html.contains("<tr class=\"test ok\" data-test=\"os/boot\""));
    }

    #[test]
    fn earlier_attempts_show_in_their_targets_cells() {
        let mut retried = result("ssh", "q#1", Outcome::Passed);
        retried.attempts =
            vec![result("ssh", "q#2", Outcome::Error("SSH never came up".into())).into_attempt()];
        let mut flaky = result("lan", "q#1", Outcome::Passed);
        flaky.attempts =
            vec![result("lan", "q#1", Outcome::Failed("no route".into())).into_attempt()];
        let html = render(&info("spread"), &[], &[retried, flaky], true);
        assert!(html.contains("id=\"interrupted\""));
        let c = cell_of(&html, "os/ssh", "q#2");
        assert!(c.contains("data-status=\"infra-error\""), "{c}");
        assert!(
            c.contains(">infra error</span>") && c.contains("then ran on q#1"),
            "{c}"
        );
        assert!(c.contains("SSH never came up"), "{c}");
        assert!(cell_of(&html, "os/ssh", "q#1").contains("data-status=\"passed\""));
        let c = cell_of(&html, "os/lan", "q#1");
        assert!(
            c.contains("data-status=\"flaky\"") && c.contains(">flaky</span>"),
            "{c}"
        );
        assert!(
            c.contains(">failed, rerun</span>") && c.contains("no route"),
            "{c}"
        );
        assert!(!c.contains("then ran on"), "{c}");
        assert!(html.contains("data-count=\"flaky\" data-n=\"1\""));
    }

    #[test]
    fn each_mode_has_a_result_in_every_column() {
        let html = render(
            &info("each"),
            &[
                target("q#1", TargetStatus::Done),
                target("q#2", TargetStatus::Running("os/ssh".into())),
            ],
            &[
                result("ssh", "q#1", Outcome::Passed),
                result("ssh", "q#2", Outcome::Skipped("no LAN".into())),
            ],
            false,
        );
        assert!(cell_of(&html, "os/ssh", "q#1").contains("data-status=\"passed\""));
        let c = cell_of(&html, "os/ssh", "q#2");
        assert!(c.contains(">skipped</span>") && c.contains("no LAN"), "{c}");
        assert_eq!(html.matches("<tr class=\"test").count(), 1);
        assert!(html.contains("id=\"unfinished\""));
        assert!(html.contains(">still running</span>"));
    }
}
