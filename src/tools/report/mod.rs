//! `driftwatch report`: how each contributing owner performs against its
//! remediation deadlines over a period, for the identity governance process
//! owner's review. Pure: finding transitions in ([`Collector::add`]), a
//! [`Report`] out ([`Collector::report`]); [`render`] writes it as
//! Markdown, CSV or a self-contained HTML page, and [`kafka`] reads the
//! transitions from the findings topic.
//!
//! Definitions, for a period `[from, to)` of event time:
//!
//! - **opened**: `detected_at` in the period.
//! - **resolved within deadline** / **resolved late**: the RESOLVED
//!   transition's `transitioned_at` in the period, at or before the
//!   `remediation_deadline` / after it.
//! - **open at end**: detected before `to`, with no RESOLVED transition
//!   before `to`; **overdue at end**: open at end and escalated (the
//!   ESCALATED transition: its deadline passed in stream time) before `to`.
//! - **time to remediate**: RESOLVED `transitioned_at` minus `detected_at`,
//!   over the findings resolved in the period; its median and 90th
//!   percentile interpolate between ranks as spreadsheets' `PERCENTILE.INC`
//!   does.
//!
//! A transition is the contract's [`Finding`], read whole from JSON or Avro
//! as published. Transitions are de-duplicated on (finding_id, status):
//! the topic is at-least-once, and a redelivered transition is the same
//! transition.

pub mod kafka;
pub mod render;

use crate::model::finding::{
    AccountableOwner, ContributingOwner, Finding, OwnerRole, Severity, Status, Subject,
};
use crate::model::rule::Rule;
use crate::model::time::Ts;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One finding's life as the transitions read tell it.
#[derive(Debug, Clone)]
struct Life {
    /// The first transition read of the finding.
    first: Finding,
    opened: Option<Ts>,
    escalated: Option<Ts>,
    resolved: Option<Ts>,
}

impl Life {
    /// When it became overdue: its ESCALATED transition, else (when only a
    /// later transition was read, which carries escalation level 2) its
    /// deadline.
    fn escalated_at(&self) -> Option<Ts> {
        self.escalated.or_else(|| {
            (self.first.escalation.level >= 2).then_some(self.first.remediation_deadline)
        })
    }
}

/// Finding transitions gathered for a report, de-duplicated on
/// (finding_id, status).
#[derive(Debug, Default)]
pub struct Collector {
    lives: HashMap<String, Life>,
    /// Transitions added, duplicates included.
    read: u64,
    duplicates: u64,
    /// Stream time of the input: the latest `transitioned_at` read.
    latest: Option<Ts>,
}

/// What to report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// Start of the period (included); none: from the first finding read.
    pub from: Option<Ts>,
    /// End of the period (excluded); none: everything read.
    pub to: Option<Ts>,
    /// The oldest open findings listed per team.
    pub oldest: usize,
}

impl Default for ReportOptions {
    fn default() -> ReportOptions {
        ReportOptions {
            from: None,
            to: None,
            oldest: 10,
        }
    }
}

/// Counts and times of one group of findings over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub opened: u64,
    pub resolved_within: u64,
    pub resolved_late: u64,
    pub open_at_end: u64,
    pub overdue_at_end: u64,
    /// Times to remediate (ms) of the findings resolved in the period, sorted.
    pub times_ms: Vec<i64>,
}

impl Outcome {
    pub fn resolved(&self) -> u64 {
        self.resolved_within + self.resolved_late
    }

    /// Median time to remediate, in milliseconds.
    pub fn median_ms(&self) -> Option<i64> {
        percentile(&self.times_ms, 0.5)
    }

    /// 90th percentile of the time to remediate, in milliseconds.
    pub fn p90_ms(&self) -> Option<i64> {
        percentile(&self.times_ms, 0.9)
    }

    /// Share of the resolutions in the period that came by the deadline.
    pub fn within_share(&self) -> Option<f64> {
        let n = self.resolved();
        (n > 0).then(|| self.resolved_within as f64 / n as f64)
    }

    fn add(&mut self, other: &Outcome) {
        self.opened += other.opened;
        self.resolved_within += other.resolved_within;
        self.resolved_late += other.resolved_late;
        self.open_at_end += other.open_at_end;
        self.overdue_at_end += other.overdue_at_end;
        self.times_ms.extend_from_slice(&other.times_ms);
        self.times_ms.sort_unstable();
    }
}

/// The `p` quantile (0 to 1) of sorted values, interpolated between the
/// two nearest ranks (`PERCENTILE.INC`), rounded to the millisecond.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    let (&first, &last) = (sorted.first()?, sorted.last()?);
    if sorted.len() == 1 {
        return Some(first);
    }
    let rank = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    let v = a + (b - a) * (rank - lo as f64);
    Some((v.round() as i64).clamp(first, last))
}

/// One rule of one team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    pub role: OwnerRole,
    pub rule: Rule,
    pub outcome: Outcome,
}

/// A finding open at the end of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFinding {
    pub finding_id: String,
    pub rule: Rule,
    pub severity: Severity,
    pub worker_id: Option<Arc<str>>,
    pub subject: Subject,
    pub summary: String,
    pub detected_at: Ts,
    pub remediation_deadline: Ts,
    pub overdue: bool,
    /// From `detected_at` to the report's `as_of`.
    pub age_ms: i64,
    pub contributing_owner: ContributingOwner,
    pub accountable_owner: AccountableOwner,
}

/// One contributing owner team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamReport {
    pub team: String,
    /// The roles it contributes in (usually one).
    pub roles: Vec<OwnerRole>,
    /// By role and rule, in the contract's rule order.
    pub rows: Vec<RuleRow>,
    pub total: Outcome,
    /// Its oldest findings open at the end of the period, oldest first.
    pub oldest_open: Vec<OpenFinding>,
}

/// The report: per team and rule, over the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The period's start: as asked, else the first `detected_at` read.
    pub from: Option<Ts>,
    /// The period's end: as asked, else none (everything read).
    pub to: Option<Ts>,
    /// The instant ages of open findings are measured at: `to`, else the
    /// latest `transitioned_at` read (the input's stream time).
    pub as_of: Option<Ts>,
    /// Transitions read, duplicates included.
    pub transitions: u64,
    pub duplicates: u64,
    /// Distinct findings read.
    pub findings: usize,
    /// By team name.
    pub teams: Vec<TeamReport>,
    pub total: Outcome,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Adds one transition; a second one with the same finding_id and
    /// status is a redelivery and is counted as a duplicate only.
    pub fn add(&mut self, t: Finding) {
        self.read += 1;
        self.latest = Some(
            self.latest
                .map_or(t.transitioned_at, |l| l.max(t.transitioned_at)),
        );
        let at = t.transitioned_at;
        let status = t.status;
        let life = self
            .lives
            .entry(t.finding_id.clone())
            .or_insert_with(|| Life {
                first: t,
                opened: None,
                escalated: None,
                resolved: None,
            });
        let slot = match status {
            Status::Open => &mut life.opened,
            Status::Escalated => &mut life.escalated,
            Status::Resolved => &mut life.resolved,
        };
        if slot.is_some() {
            self.duplicates += 1;
        } else {
            *slot = Some(at);
        }
    }

    /// Transitions added so far, duplicates included.
    pub fn read(&self) -> u64 {
        self.read
    }

    /// The report over the period of `opts`.
    pub fn report(&self, opts: &ReportOptions) -> Report {
        let start = opts.from.unwrap_or(Ts::MIN);
        let end = opts.to.unwrap_or(Ts::MAX);
        let in_period = |t: Ts| start <= t && t < end;
        let as_of = opts.to.or(self.latest);
        let mut groups: BTreeMap<(&str, OwnerRole, Rule), Outcome> = BTreeMap::new();
        let mut open: BTreeMap<&str, Vec<OpenFinding>> = BTreeMap::new();
        for life in self.lives.values() {
            let f = &life.first;
            let opened = in_period(f.detected_at);
            let resolved_in = life.resolved.filter(|&r| in_period(r));
            let open_at_end = f.detected_at < end && life.resolved.is_none_or(|r| r >= end);
            let overdue = open_at_end && life.escalated_at().is_some_and(|e| e < end);
            if !opened && resolved_in.is_none() && !open_at_end {
                continue;
            }
            let team = &*f.contributing_owner.team;
            let o = groups
                .entry((team, f.contributing_owner.role, f.rule))
                .or_default();
            o.opened += u64::from(opened);
            if let Some(r) = resolved_in {
                if r <= f.remediation_deadline {
                    o.resolved_within += 1;
                } else {
                    o.resolved_late += 1;
                }
                o.times_ms
                    .push((r.millis() - f.detected_at.millis()).max(0));
            }
            o.open_at_end += u64::from(open_at_end);
            o.overdue_at_end += u64::from(overdue);
            if open_at_end {
                open.entry(team).or_default().push(OpenFinding {
                    finding_id: f.finding_id.clone(),
                    rule: f.rule,
                    severity: f.severity,
                    worker_id: f.worker_id.clone(),
                    subject: f.subject.clone(),
                    summary: f.summary.clone(),
                    detected_at: f.detected_at,
                    remediation_deadline: f.remediation_deadline,
                    overdue,
                    age_ms: as_of.map_or(0, |a| (a.millis() - f.detected_at.millis()).max(0)),
                    contributing_owner: f.contributing_owner.clone(),
                    accountable_owner: f.accountable_owner.clone(),
                });
            }
        }
        let mut teams: Vec<TeamReport> = Vec::new();
        let mut total = Outcome::default();
        for ((team, role, rule), mut outcome) in groups {
            outcome.times_ms.sort_unstable();
            if teams.last().is_none_or(|t| t.team != team) {
                teams.push(TeamReport {
                    team: team.to_string(),
                    roles: Vec::new(),
                    rows: Vec::new(),
                    total: Outcome::default(),
                    oldest_open: Vec::new(),
                });
            }
            let t = teams.last_mut().expect("pushed above");
            if !t.roles.contains(&role) {
                t.roles.push(role);
            }
            t.total.add(&outcome);
            total.add(&outcome);
            t.rows.push(RuleRow {
                role,
                rule,
                outcome,
            });
        }
        for t in &mut teams {
            let mut list = open.remove(t.team.as_str()).unwrap_or_default();
            list.sort_by(|a, b| {
                (a.detected_at, &a.finding_id).cmp(&(b.detected_at, &b.finding_id))
            });
            list.truncate(opts.oldest);
            t.oldest_open = list;
        }
        let first = self.lives.values().map(|l| l.first.detected_at).min();
        Report {
            from: opts.from.or(first),
            to: opts.to,
            as_of,
            transitions: self.read,
            duplicates: self.duplicates,
            findings: self.lives.len(),
            teams,
            total,
        }
    }
}

impl Report {
    /// Whether the report covers no finding at all.
    pub fn is_empty(&self) -> bool {
        self.teams.is_empty()
    }
}

/// A line of an input file that is not a finding transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    pub error: String,
}

/// Why an input file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read the input: {0}")]
    Io(#[from] std::io::Error),
    #[error("the input is an Avro object container file; write the transitions as JSON lines (`replay --format json`, the default)")]
    AvroContainer,
    #[error("the input holds OCSF findings; write the transitions in the contract's JSON (`replay --format json`, the default)")]
    Ocsf,
}

/// Reads JSON lines of finding transitions (as `replay --output` writes
/// them) into `collector`; blank lines are passed over, and lines that are
/// not a whole finding of the contract are returned, not added.
pub fn read_lines(
    input: impl std::io::BufRead,
    collector: &mut Collector,
) -> Result<Vec<BadLine>, InputError> {
    let mut bad = Vec::new();
    let mut input = input;
    if input.fill_buf()?.starts_with(b"Obj\x01") {
        return Err(InputError::AvroContainer);
    }
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Finding>(&line) {
            Ok(t) => collector.add(t),
            Err(e) => {
                if i == 0 && line.windows(11).any(|w| w == b"\"class_uid\"") {
                    return Err(InputError::Ocsf);
                }
                bad.push(BadLine {
                    line: i + 1,
                    error: e.to_string(),
                });
            }
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests;
