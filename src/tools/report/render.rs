//! A [`Report`] as Markdown (for the weekly governance review), CSV (one
//! row per team and rule, then per team, then all teams) and one
//! self-contained HTML page with an inline SVG chart per team: no script,
//! no style sheet, font or image from elsewhere, no URL at all.

use super::{OpenFinding, Outcome, Report, RuleRow, TeamReport};
use crate::model::event::System;
use crate::model::finding::{OwnerRole, Subject};
use crate::model::time::{MS_PER_HOUR, MS_PER_MINUTE};
use std::fmt::Write;

/// The title of every rendering.
pub const TITLE: &str = "Control performance by owner";

/// A duration for people, to its two largest units, rounded: `45s`,
/// `12m`, `5h 30m`, `3d 4h`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    let round = |unit: i64| (ms + unit / 2) / unit;
    let s = round(1000);
    if s < 60 {
        return format!("{s}s");
    }
    let m = round(MS_PER_MINUTE);
    let (big, unit, small, small_unit) = if m < 60 {
        return format!("{m}m");
    } else if m < 24 * 60 {
        (m / 60, "h", m % 60, "m")
    } else {
        let h = round(MS_PER_HOUR);
        (h / 24, "d", h % 24, "h")
    };
    if small == 0 {
        format!("{big}{unit}")
    } else {
        format!("{big}{unit} {small}{small_unit}")
    }
}

fn opt_duration(ms: Option<i64>) -> String {
    ms.map_or_else(|| "–".to_string(), duration)
}

fn share(o: &Outcome) -> String {
    o.within_share()
        .map_or_else(|| "–".to_string(), |s| format!("{:.0}%", s * 100.0))
}

fn roles(roles: &[OwnerRole]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a finding is about, in a few words: `ad/acct-1`, `salesforce/u-7
/// (Admin)`, `hr`.
pub fn subject(s: &Subject) -> String {
    let scope = match s.system {
        System::Hr => None,
        System::Directory => s.directory.as_deref(),
        System::App => s.app_id.as_deref(),
    };
    let mut out = match (scope, s.account_id.as_deref()) {
        (Some(scope), Some(account)) => format!("{scope}/{account}"),
        (Some(scope), None) => scope.to_string(),
        (None, Some(account)) => account.to_string(),
        (None, None) => s.system.as_str().to_string(),
    };
    if let Some(e) = s.entitlement.as_deref() {
        out.push_str(&format!(" ({e})"));
    }
    out
}

fn period(r: &Report) -> String {
    let from = r
        .from
        .map_or_else(|| "the first finding".to_string(), |t| t.to_string());
    let to = r.to.map_or_else(
        || match r.as_of {
            Some(t) => format!("the end of the input ({t})"),
            None => "the end of the input".to_string(),
        },
        |t| t.to_string(),
    );
    format!("{from} to {to}")
}

const DEFINITIONS: &str = "Event time throughout. *Opened*: detected in the period. \
*Within deadline* / *late*: resolved in the period, at or before the remediation deadline / after it. \
*Open* / *overdue*: not resolved at the end of the period / and escalated (past its remediation deadline) by then. \
*Time to remediate*: from detection to resolution, over the findings resolved in the period.";

// ---------------------------------------------------------------- Markdown

/// Escapes what would end a Markdown table cell or start markup.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// The counts of an outcome as text, in the order of the count headers.
fn count_cells(o: &Outcome) -> [String; 8] {
    [
        o.opened.to_string(),
        o.resolved_within.to_string(),
        o.resolved_late.to_string(),
        share(o),
        o.open_at_end.to_string(),
        o.overdue_at_end.to_string(),
        opt_duration(o.median_ms()),
        opt_duration(o.p90_ms()),
    ]
}

fn md_counts(o: &Outcome) -> String {
    count_cells(o).join(" | ")
}

const MD_COUNT_HEADER: &str = "Opened | Resolved within deadline | Resolved late | % within deadline | Open at end | Overdue at end | Median time to remediate | p90 time to remediate";
const MD_COUNT_ALIGN: &str = "---: | ---: | ---: | ---: | ---: | ---: | ---: | ---:";

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# {TITLE}\n");
    let _ = writeln!(w, "Period: {}.  ", period(r));
    let _ = writeln!(
        w,
        "Read: {} finding transitions of {} findings ({} duplicates ignored).\n",
        r.transitions, r.findings, r.duplicates
    );
    let _ = writeln!(w, "{DEFINITIONS}\n");
    if r.is_empty() {
        let _ = writeln!(w, "No finding was open or changed in the period.");
        return out;
    }
    let _ = writeln!(w, "## Summary\n");
    let _ = writeln!(w, "| Team | Role | {MD_COUNT_HEADER} |");
    let _ = writeln!(w, "|---|---| {MD_COUNT_ALIGN} |");
    for t in &r.teams {
        let _ = writeln!(
            w,
            "| {} | {} | {} |",
            md(&t.team),
            roles(&t.roles),
            md_counts(&t.total)
        );
    }
    let _ = writeln!(w, "| All teams | | {} |", md_counts(&r.total));
    for t in &r.teams {
        let _ = writeln!(w, "\n## {} ({})\n", md(&t.team), roles(&t.roles));
        let multi = t.roles.len() > 1;
        let role_head = if multi { "Role | " } else { "" };
        let role_align = if multi { "---|" } else { "" };
        let _ = writeln!(w, "| Rule | {role_head}{MD_COUNT_HEADER} |");
        let _ = writeln!(w, "|---|{role_align} {MD_COUNT_ALIGN} |");
        for row in &t.rows {
            let role = if multi {
                format!("{} | ", row.role)
            } else {
                String::new()
            };
            let _ = writeln!(w, "| {} | {role}{} |", row.rule, md_counts(&row.outcome));
        }
        if t.oldest_open.is_empty() {
            let _ = writeln!(w, "\nNo finding open at the end of the period.");
            continue;
        }
        let _ = writeln!(
            w,
            "\nOldest open findings ({} of {} open):\n",
            t.oldest_open.len(),
            t.total.open_at_end
        );
        let _ = writeln!(
            w,
            "| Detected | Deadline | Age | Overdue | Rule | Severity | Worker | Subject | Finding | Contributing owner | Accountable owner |"
        );
        let _ = writeln!(w, "|---|---|---:|---|---|---|---|---|---|---|---|");
        for f in &t.oldest_open {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | `{}` | {} | {} |",
                f.detected_at,
                f.remediation_deadline,
                duration(f.age_ms),
                if f.overdue { "yes" } else { "no" },
                f.rule,
                f.severity,
                f.worker_id.as_deref().map_or_else(|| "–".to_string(), md),
                md(&subject(&f.subject)),
                f.finding_id,
                md(&owner(f)),
                md(&f.accountable_owner.team),
            );
        }
    }
    out
}

fn owner(f: &OpenFinding) -> String {
    let c = &f.contributing_owner;
    match c.contact.as_deref() {
        Some(contact) => format!("{} {} ({contact})", c.role, c.team),
        None => format!("{} {}", c.role, c.team),
    }
}

// ---------------------------------------------------------------- CSV

/// RFC 4180: quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Milliseconds as seconds, with no trailing zeros: `19800`, `0.25`.
fn seconds(ms: i64) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        let s = format!("{}.{:03}", ms / 1000, (ms % 1000).abs());
        s.trim_end_matches('0').to_string()
    }
}

/// The CSV header.
pub const CSV_HEADER: &str = "level,team,role,rule,period_from,period_to,opened,resolved_within_deadline,resolved_late,open_at_end,overdue_at_end,median_time_to_remediate_seconds,p90_time_to_remediate_seconds";

/// The report as CSV: a row per team, role and rule (`level` = `rule`),
/// per team (`team`, its roles joined by `+`) and for all teams (`all`).
/// Times are seconds; empty when nothing was resolved.
pub fn csv(r: &Report) -> String {
    let from = r.from.map(|t| t.to_string()).unwrap_or_default();
    let to = r.to.or(r.as_of).map(|t| t.to_string()).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "{CSV_HEADER}");
    let mut line = |level: &str, team: &str, role: &str, rule: &str, o: &Outcome| {
        let _ = writeln!(
            out,
            "{level},{},{},{},{from},{to},{},{},{},{},{},{},{}",
            csv_field(team),
            csv_field(role),
            rule,
            o.opened,
            o.resolved_within,
            o.resolved_late,
            o.open_at_end,
            o.overdue_at_end,
            o.median_ms().map(seconds).unwrap_or_default(),
            o.p90_ms().map(seconds).unwrap_or_default(),
        );
    };
    for t in &r.teams {
        for row in &t.rows {
            line(
                "rule",
                &t.team,
                row.role.as_str(),
                row.rule.as_str(),
                &row.outcome,
            );
        }
    }
    for t in &r.teams {
        let joined: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
        line("team", &t.team, &joined.join("+"), "", &t.total);
    }
    line("all", "", "", "", &r.total);
    out
}

// ---------------------------------------------------------------- HTML

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The chart's segments: what they count, their colour and CSS class.
const SEGMENTS: [(&str, &str, &str); 4] = [
    ("resolved within deadline", "#1b7f3b", "within"),
    ("resolved late", "#e08a00", "late"),
    ("open, not overdue", "#2f6fb5", "open"),
    ("open and overdue", "#c0392b", "overdue"),
];

fn segment_counts(o: &Outcome) -> [u64; 4] {
    [
        o.resolved_within,
        o.resolved_late,
        o.open_at_end - o.overdue_at_end,
        o.overdue_at_end,
    ]
}

const CHART_LABEL_W: f64 = 230.0;
const CHART_BAR_W: f64 = 400.0;
const CHART_W: f64 = 720.0;
const CHART_ROW_H: f64 = 24.0;
const CHART_TOP: f64 = 34.0;

/// One team's chart: a bar per rule, stacked by outcome.
fn chart(t: &TeamReport, index: usize) -> String {
    let rows: Vec<&RuleRow> = t.rows.iter().collect();
    let max = rows
        .iter()
        .map(|r| segment_counts(&r.outcome).iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let multi = t.roles.len() > 1;
    let height = CHART_TOP + CHART_ROW_H * rows.len() as f64 + 8.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="team-chart" data-team="{team}" role="img" aria-labelledby="chart-title-{index}" width="{CHART_W}" height="{height}" viewBox="0 0 {CHART_W} {height}">"#,
        team = html_escape(&t.team),
    );
    let _ = write!(
        s,
        r#"<title id="chart-title-{index}">{}: findings of the period by rule and outcome</title>"#,
        html_escape(&t.team)
    );
    // Legend.
    let mut x = 0.0;
    for (name, colour, class) in SEGMENTS {
        let _ = write!(
            s,
            r#"<rect class="legend legend-{class}" x="{x}" y="6" width="12" height="12" fill="{colour}"></rect><text x="{}" y="16">{name}</text>"#,
            x + 16.0
        );
        x += 16.0 + 7.0 * name.len() as f64 + 18.0;
    }
    for (i, row) in rows.iter().enumerate() {
        let y = CHART_TOP + CHART_ROW_H * i as f64;
        let label = if multi {
            format!("{} ({})", row.rule, row.role)
        } else {
            row.rule.to_string()
        };
        let _ = write!(
            s,
            r#"<text class="rule" x="{}" y="{}" text-anchor="end">{}</text>"#,
            CHART_LABEL_W - 8.0,
            y + 13.0,
            html_escape(&label)
        );
        let counts = segment_counts(&row.outcome);
        let mut x = CHART_LABEL_W;
        for ((name, colour, class), n) in SEGMENTS.iter().zip(counts) {
            if n == 0 {
                continue;
            }
            // At least 2 px: a count is never invisible.
            let w = (CHART_BAR_W * n as f64 / max).max(2.0);
            let _ = write!(
                s,
                r#"<rect class="bar bar-{class}" x="{x:.1}" y="{y}" width="{w:.1}" height="16" fill="{colour}"><title>{}: {n} {name}</title></rect>"#,
                html_escape(&label)
            );
            x += w;
        }
        let total: u64 = counts.iter().sum();
        let _ = write!(
            s,
            r#"<text class="count" x="{:.1}" y="{}">{total} ({} opened)</text>"#,
            x + 6.0,
            y + 13.0,
            row.outcome.opened
        );
    }
    s.push_str("</svg>");
    s
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1d1d1f;max-width:80rem}\
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}\
th,td{border:1px solid #d0d0d0;padding:0.25rem 0.5rem;text-align:left;font-size:0.9rem}\
td{white-space:nowrap}\
td.text{white-space:normal;min-width:18rem}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f3f3f3}\
tr.total td{font-weight:bold}\
.team-chart text{font-size:12px;fill:#1d1d1f}\
.team-chart text.rule{font-family:ui-monospace,monospace;font-size:11px}\
p.definitions{color:#555;font-size:0.9rem}\
code{font-size:0.8rem}";

fn html_counts_cells(o: &Outcome) -> String {
    count_cells(o)
        .iter()
        .map(|c| format!("<td class=\"n\">{c}</td>"))
        .collect()
}

const HTML_COUNT_HEADER: &str = "<th>Opened</th><th>Resolved within deadline</th><th>Resolved late</th><th>% within deadline</th><th>Open at end</th><th>Overdue at end</th><th>Median time to remediate</th><th>p90 time to remediate</th>";

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = write!(
        w,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{TITLE}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{TITLE}</h1>\n"
    );
    let _ = writeln!(
        w,
        "<p class=\"period\">Period: {}.<br>Read: {} finding transitions of {} findings ({} duplicates ignored).</p>",
        html_escape(&period(r)),
        r.transitions,
        r.findings,
        r.duplicates
    );
    let definitions = DEFINITIONS.replace('*', "");
    let _ = writeln!(
        w,
        "<p class=\"definitions\">{}</p>",
        html_escape(&definitions)
    );
    if r.is_empty() {
        let _ = writeln!(
            w,
            "<p>No finding was open or changed in the period.</p>\n</body>\n</html>"
        );
        return out;
    }
    let _ = writeln!(w, "<h2>Summary</h2>\n<table class=\"summary\">");
    let _ = writeln!(w, "<tr><th>Team</th><th>Role</th>{HTML_COUNT_HEADER}</tr>");
    for (i, t) in r.teams.iter().enumerate() {
        let _ = writeln!(
            w,
            "<tr><td><a href=\"#team-{i}\">{}</a></td><td>{}</td>{}</tr>",
            html_escape(&t.team),
            roles(&t.roles),
            html_counts_cells(&t.total)
        );
    }
    let _ = writeln!(
        w,
        "<tr class=\"total\"><td>All teams</td><td></td>{}</tr>\n</table>",
        html_counts_cells(&r.total)
    );
    for (i, t) in r.teams.iter().enumerate() {
        let _ = writeln!(
            w,
            "<section class=\"team\" id=\"team-{i}\">\n<h2>{} ({})</h2>",
            html_escape(&t.team),
            roles(&t.roles)
        );
        let _ = writeln!(w, "{}", chart(t, i));
        let _ = writeln!(
            w,
            "<table class=\"rules\">\n<tr><th>Rule</th><th>Role</th>{HTML_COUNT_HEADER}</tr>"
        );
        for row in &t.rows {
            let _ = writeln!(
                w,
                "<tr><td>{}</td><td>{}</td>{}</tr>",
                row.rule,
                row.role,
                html_counts_cells(&row.outcome)
            );
        }
        let _ = writeln!(w, "</table>");
        if t.oldest_open.is_empty() {
            let _ = writeln!(
                w,
                "<p>No finding open at the end of the period.</p>\n</section>"
            );
            continue;
        }
        let _ = writeln!(
            w,
            "<h3>Oldest open findings ({} of {} open)</h3>\n<table class=\"open\">\n<tr><th>Detected</th><th>Deadline</th><th>Age</th><th>Overdue</th><th>Rule</th><th>Severity</th><th>Worker</th><th>Subject</th><th>Summary</th><th>Finding</th><th>Contributing owner</th><th>Accountable owner</th></tr>",
            t.oldest_open.len(),
            t.total.open_at_end
        );
        for f in &t.oldest_open {
            let _ = writeln!(
                w,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                f.detected_at,
                f.remediation_deadline,
                duration(f.age_ms),
                if f.overdue { "yes" } else { "no" },
                f.rule,
                f.severity,
                html_escape(f.worker_id.as_deref().unwrap_or("–")),
                html_escape(&subject(&f.subject)),
                html_escape(&f.summary),
                html_escape(&f.finding_id),
                html_escape(&owner(f)),
                html_escape(&f.accountable_owner.team),
            );
        }
        let _ = writeln!(w, "</table>\n</section>");
    }
    let _ = writeln!(w, "</body>\n</html>");
    out
}

/// The rendering named by `format` (`markdown`, `csv` or `html`).
pub fn render(r: &Report, format: &str) -> Option<String> {
    Some(match format {
        "markdown" | "md" => markdown(r),
        "csv" => csv(r),
        "html" => html(r),
        _ => return None,
    })
}
