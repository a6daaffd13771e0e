//! The `driftwatch_owner_*` metrics: how each contributing owner performs
//! against its remediation deadlines. [`OwnerBook`] keeps one partition
//! task's share of them, under bounded `team` labels ([`TeamLabels`]).

use super::Metrics;
use crate::config::Config;
use crate::model::finding::{Finding, OpenFinding, OwnerRole, Status};
use crate::model::rule::Rule;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The `team` label value of a team not named in the configuration.
pub const OTHER_TEAM: &str = "other";

/// The teams the configuration names (`owners.hr`, `owners.it`,
/// `owners.default_app` and every `[apps.*]` team): the only values of a
/// `team` label, so that its cardinality stays bounded whatever a finding
/// carries.
#[derive(Debug, Clone, Default)]
pub struct TeamLabels {
    teams: BTreeSet<Arc<str>>,
}

impl TeamLabels {
    pub fn of(cfg: &Config) -> TeamLabels {
        let mut teams: BTreeSet<Arc<str>> = BTreeSet::new();
        for t in [&cfg.hr, &cfg.it, &cfg.default_app] {
            teams.insert(t.team.clone());
        }
        teams.extend(cfg.apps.values().map(|a| a.owner.team.clone()));
        TeamLabels { teams }
    }

    /// The label of `team`: itself when configured, else [`OTHER_TEAM`].
    pub fn label(&self, team: &str) -> Arc<str> {
        self.teams
            .get(team)
            .cloned()
            .unwrap_or_else(|| Arc::from(OTHER_TEAM))
    }
}

/// A finding counted in the owner gauges.
struct Counted {
    role: OwnerRole,
    team: Arc<str>,
    rule: Rule,
    overdue: bool,
}

impl Counted {
    fn move_gauges(&self, m: &Metrics, open: i64, overdue: i64) {
        let labels = [self.role.as_str(), &*self.team, self.rule.as_str()];
        if open != 0 {
            m.owner_open.with_label_values(&labels).add(open);
        }
        if overdue != 0 {
            m.owner_overdue.with_label_values(&labels).add(overdue);
        }
    }
}

/// One partition task's share of the `driftwatch_owner_*` metrics: the
/// findings open and overdue in its partition, by finding_id, so that a
/// transition moves the gauges once whatever came before it (a finding
/// restored open, a storm finding the restore does not list). Dropping it
/// takes the partition's share of the gauges back: they belong to its
/// next owner.
pub struct OwnerBook<'m> {
    metrics: &'m Metrics,
    teams: TeamLabels,
    open: HashMap<String, Counted, ahash::RandomState>,
}

impl<'m> OwnerBook<'m> {
    pub fn new(metrics: &'m Metrics, teams: TeamLabels) -> OwnerBook<'m> {
        OwnerBook {
            metrics,
            teams,
            open: HashMap::default(),
        }
    }

    /// Findings open or escalated in the partition.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// The findings the restore found open or escalated: counted in the
    /// gauges as their status says, not as new transitions. The gauges
    /// move once per owner role, team and rule.
    pub fn restored(&mut self, found: Vec<OpenFinding>) {
        use std::collections::hash_map::Entry;
        let mut moves: HashMap<(OwnerRole, Arc<str>, Rule), (i64, i64)> = HashMap::new();
        for f in found {
            let overdue = f.status == Status::Escalated;
            match self.open.entry(f.finding_id) {
                Entry::Occupied(mut e) => {
                    let c = e.get_mut();
                    if overdue && !c.overdue {
                        c.overdue = true;
                        moves.entry((c.role, c.team.clone(), c.rule)).or_default().1 += 1;
                    }
                }
                Entry::Vacant(e) => {
                    let team = self.teams.label(&f.team);
                    let m = moves.entry((f.role, team.clone(), f.rule)).or_default();
                    m.0 += 1;
                    m.1 += i64::from(overdue);
                    e.insert(Counted {
                        role: f.role,
                        team,
                        rule: f.rule,
                        overdue,
                    });
                }
            }
        }
        for ((role, team, rule), (open, overdue)) in moves {
            let c = Counted {
                role,
                team,
                rule,
                overdue: false,
            };
            c.move_gauges(self.metrics, open, overdue);
        }
    }

    /// A finding transition the broker acknowledged.
    pub fn acknowledged(&mut self, f: &Finding) {
        match f.status {
            Status::Open | Status::Escalated => self.track(
                &f.finding_id,
                f.status,
                f.contributing_owner.role,
                &f.contributing_owner.team,
                f.rule,
            ),
            Status::Resolved => {
                if let Some(c) = self.open.remove(&f.finding_id) {
                    c.move_gauges(self.metrics, -1, -i64::from(c.overdue));
                }
                let team = self.teams.label(&f.contributing_owner.team);
                self.metrics.owner_resolved(f, &team);
            }
        }
    }

    /// Counts `f` as open, and as overdue when it is escalated.
    fn track(&mut self, id: &str, status: Status, role: OwnerRole, team: &str, rule: Rule) {
        let overdue = status == Status::Escalated;
        match self.open.get_mut(id) {
            Some(c) => {
                if overdue && !c.overdue {
                    c.overdue = true;
                    c.move_gauges(self.metrics, 0, 1);
                }
            }
            None => {
                let c = Counted {
                    role,
                    team: self.teams.label(team),
                    rule,
                    overdue,
                };
                c.move_gauges(self.metrics, 1, i64::from(overdue));
                self.open.insert(id.to_string(), c);
            }
        }
    }
}

impl Drop for OwnerBook<'_> {
    fn drop(&mut self) {
        for (_, c) in self.open.drain() {
            c.move_gauges(self.metrics, -1, -i64::from(c.overdue));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::IntGaugeVec;

    const H: i64 = crate::model::time::MS_PER_HOUR;

    /// A transition of finding `id`, detected at hour 0 with its deadline
    /// at hour 24, at hour `at`.
    fn finding(id: &str, status: &str, role: &str, team: &str, rule: &str, at: i64) -> Finding {
        let t = |h: i64| crate::model::time::Ts(h * H).to_string();
        serde_json::from_value(serde_json::json!({
            "finding_id": id, "status": status, "rule": rule, "severity": "HIGH",
            "worker_id": "W1",
            "subject": {"system": "directory", "directory": "ad", "app_id": null,
                        "account_id": "a1", "entitlement": null},
            "summary": "s",
            "accountable_owner": {"role": "IDENTITY_GOVERNANCE_PROCESS_OWNER", "team": "gov"},
            "contributing_owner": {"role": role, "team": team, "contact": null},
            "detected_at": t(0), "remediation_deadline": t(24),
            "escalation": {"target": team, "level": 1},
            "evidence": [], "frameworks": [],
            "detector": {"version": "0", "instance": "i"},
            "transitioned_at": t(at),
        }))
        .unwrap()
    }

    fn gauge(v: &IntGaugeVec, labels: [&str; 3]) -> i64 {
        v.with_label_values(&labels).get()
    }

    /// The open and overdue gauges of `labels`.
    fn counts(m: &Metrics, labels: [&str; 3]) -> (i64, i64) {
        (
            gauge(&m.owner_open, labels),
            gauge(&m.owner_overdue, labels),
        )
    }

    const IT: [&str; 3] = ["IT", "it-identity", "LEAVER_DIRECTORY_ACCESS"];

    #[test]
    fn team_labels_are_the_configured_teams_or_other() {
        let teams = TeamLabels::of(&Config::default_config());
        for t in [
            "hr-operations",
            "it-identity",
            "app-owners",
            "sales-operations",
        ] {
            assert_eq!(&*teams.label(t), t);
        }
        assert_eq!(&*teams.label("W000123's team"), OTHER_TEAM);
        assert_eq!(&*teams.label("identity-governance"), OTHER_TEAM);
    }

    #[test]
    fn the_book_follows_a_finding_open_escalated_resolved_and_gives_back_on_drop() {
        let m = Metrics::new();
        let teams = TeamLabels::of(&Config::default_config());
        let mut book = OwnerBook::new(&m, teams.clone());
        let id = "f1";
        book.acknowledged(&finding(id, "OPEN", "IT", "it-identity", IT[2], 0));
        assert_eq!(counts(&m, IT), (1, 0));
        book.acknowledged(&finding(id, "ESCALATED", "IT", "it-identity", IT[2], 24));
        assert_eq!(counts(&m, IT), (1, 1));
        // A repeated transition (at-least-once) moves nothing.
        book.acknowledged(&finding(id, "ESCALATED", "IT", "it-identity", IT[2], 24));
        assert_eq!(counts(&m, IT), (1, 1));
        book.acknowledged(&finding(id, "RESOLVED", "IT", "it-identity", IT[2], 30));
        assert_eq!(counts(&m, IT), (0, 0));
        let late = m
            .owner_resolved
            .with_label_values(&[IT[0], IT[1], IT[2], "false"]);
        assert_eq!(late.get(), 1);
        let h = m.owner_time_to_resolve.with_label_values(&IT);
        assert_eq!(h.get_sample_count(), 1);
        assert_eq!(h.get_sample_sum(), 30.0 * 3600.0);

        // Resolved by the deadline, exactly at it.
        book.acknowledged(&finding("f2", "OPEN", "IT", "it-identity", IT[2], 0));
        book.acknowledged(&finding("f2", "RESOLVED", "IT", "it-identity", IT[2], 24));
        let within = m
            .owner_resolved
            .with_label_values(&[IT[0], IT[1], IT[2], "true"]);
        assert_eq!(within.get(), 1);

        // A team the config does not name counts as `other`.
        let other = ["APP_OWNER", OTHER_TEAM, "LEAVER_APP_ACCESS"];
        book.acknowledged(&finding("f3", "OPEN", "APP_OWNER", "nobody", other[2], 0));
        assert_eq!(gauge(&m.owner_open, other), 1);

        // The partition's share goes back when its task ends.
        let f4 = finding("f4", "ESCALATED", "IT", "it-identity", IT[2], 24);
        book.restored(vec![(&f4).into()]);
        assert_eq!(counts(&m, IT), (1, 1));
        assert_eq!(book.open(), 2);
        drop(book);
        assert_eq!(counts(&m, IT), (0, 0));
        assert_eq!(gauge(&m.owner_open, other), 0);
        // Counters stay.
        assert_eq!(late.get(), 1);
    }

    #[test]
    fn a_restore_counts_each_finding_once_by_its_status() {
        let m = Metrics::new();
        let mut book = OwnerBook::new(&m, TeamLabels::of(&Config::default_config()));
        let other = ["APP_OWNER", OTHER_TEAM, "LEAVER_APP_ACCESS"];
        book.restored(vec![
            (&finding("a", "OPEN", "IT", "it-identity", IT[2], 0)).into(),
            (&finding("b", "ESCALATED", "IT", "it-identity", IT[2], 24)).into(),
            (&finding("c", "OPEN", "APP_OWNER", "nobody", other[2], 0)).into(),
            // Listed twice (by two keys of a checkpoint cut short), the
            // second time escalated: one finding, overdue.
            (&finding("a", "ESCALATED", "IT", "it-identity", IT[2], 24)).into(),
            (&finding("c", "OPEN", "APP_OWNER", "nobody", other[2], 0)).into(),
        ]);
        assert_eq!(book.open(), 3);
        assert_eq!(counts(&m, IT), (2, 2));
        assert_eq!(counts(&m, other), (1, 0));
        // Resolving one restored finding moves its own labels back.
        book.acknowledged(&finding("b", "RESOLVED", "IT", "it-identity", IT[2], 30));
        assert_eq!(counts(&m, IT), (1, 1));
        drop(book);
        assert_eq!(counts(&m, IT), (0, 0));
        assert_eq!(gauge(&m.owner_open, other), 0);
    }

    #[test]
    fn two_partitions_add_up_and_one_leaving_takes_only_its_share() {
        let m = Metrics::new();
        let teams = TeamLabels::of(&Config::default_config());
        let mut p0 = OwnerBook::new(&m, teams.clone());
        let mut p1 = OwnerBook::new(&m, teams);
        p0.acknowledged(&finding("a", "OPEN", "IT", "it-identity", IT[2], 0));
        let b = finding("b", "ESCALATED", "IT", "it-identity", IT[2], 24);
        p1.restored(vec![(&b).into()]);
        // A storm finding restored open is not listed by the restore: its
        // transitions still move the gauges once, and never below zero.
        p1.acknowledged(&finding("s", "ESCALATED", "IT", "it-identity", IT[2], 24));
        p1.acknowledged(&finding("gone", "RESOLVED", "IT", "it-identity", IT[2], 2));
        assert_eq!(counts(&m, IT), (3, 2));
        drop(p1);
        assert_eq!(counts(&m, IT), (1, 0));
        drop(p0);
        assert_eq!(counts(&m, IT), (0, 0));
    }

    #[test]
    fn the_exposition_names_the_owner_metrics() {
        let m = Metrics::new();
        let mut book = OwnerBook::new(&m, TeamLabels::of(&Config::default_config()));
        book.acknowledged(&finding(
            "f",
            "OPEN",
            "HR",
            "hr-operations",
            "CONTRACT_EXPIRED_ACCESS",
            0,
        ));
        book.acknowledged(&finding(
            "f",
            "RESOLVED",
            "HR",
            "hr-operations",
            "CONTRACT_EXPIRED_ACCESS",
            2,
        ));
        let text = m.render();
        for line in [
            "driftwatch_owner_findings_open{role=\"HR\",rule=\"CONTRACT_EXPIRED_ACCESS\",team=\"hr-operations\"} 0",
            "driftwatch_owner_findings_resolved_total{role=\"HR\",rule=\"CONTRACT_EXPIRED_ACCESS\",team=\"hr-operations\",within_deadline=\"true\"} 1",
            "driftwatch_owner_time_to_resolve_seconds_bucket{role=\"HR\",rule=\"CONTRACT_EXPIRED_ACCESS\",team=\"hr-operations\",le=\"14400\"} 1",
            "driftwatch_owner_time_to_resolve_seconds_bucket{role=\"HR\",rule=\"CONTRACT_EXPIRED_ACCESS\",team=\"hr-operations\",le=\"3600\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
