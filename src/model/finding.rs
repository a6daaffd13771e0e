//! Findings: the records published to `identity.drift-findings`, one per
//! lifecycle transition (OPEN -> ESCALATED -> RESOLVED).
//!
//! The field names here are the public contract (`BRIEF.md`, "Findings
//! topic"). `finding_id` is a 128-bit FNV-1a hash of the rule, the subject
//! and the moment the episode's condition became true, so the same input
//! always gives the same id.

use super::rule::Rule;
use crate::model::event::System;
use crate::model::time::Ts;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// Ordered from least to most severe.
    Severity {
        Low => "LOW",
        Medium => "MEDIUM",
        High => "HIGH",
        Critical => "CRITICAL",
    }
);

label_enum!(
    Status {
        Open => "OPEN",
        Escalated => "ESCALATED",
        Resolved => "RESOLVED",
    }
);

label_enum!(
    OwnerRole {
        Hr => "HR",
        It => "IT",
        AppOwner => "APP_OWNER",
        IdentityGovernanceProcessOwner => "IDENTITY_GOVERNANCE_PROCESS_OWNER",
    }
);

/// What a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub system: System,
    pub directory: Option<Arc<str>>,
    pub app_id: Option<Arc<str>>,
    pub account_id: Option<Arc<str>>,
    pub entitlement: Option<Arc<str>>,
}

impl Subject {
    pub fn hr() -> Subject {
        Subject {
            system: System::Hr,
            directory: None,
            app_id: None,
            account_id: None,
            entitlement: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountableOwner {
    pub role: OwnerRole,
    pub team: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributingOwner {
    pub role: OwnerRole,
    pub team: Arc<str>,
    pub contact: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub target: Arc<str>,
    pub level: u8,
}

/// One source event behind a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub topic: Cow<'static, str>,
    pub partition: i32,
    pub offset: i64,
    pub event_id: Arc<str>,
    pub event_type: Cow<'static, str>,
    pub occurred_at: Ts,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detector {
    pub version: Arc<str>,
    pub instance: Arc<str>,
}

/// One finding transition, as published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub finding_id: String,
    pub status: Status,
    pub rule: Rule,
    pub severity: Severity,
    pub worker_id: Option<Arc<str>>,
    pub subject: Subject,
    pub summary: String,
    pub accountable_owner: AccountableOwner,
    pub contributing_owner: ContributingOwner,
    /// Event time the SLA expired and the finding opened.
    pub detected_at: Ts,
    pub remediation_deadline: Ts,
    pub escalation: Escalation,
    pub evidence: Vec<Evidence>,
    /// The rule's controls: static text, borrowed, never copied.
    pub frameworks: Vec<Cow<'static, str>>,
    pub detector: Detector,
    /// Stream time of this transition (equals `detected_at` for OPEN).
    pub transitioned_at: Ts,
}

impl Finding {
    /// The contract's JSON encoding, one line.
    pub fn to_json(&self) -> String {
        String::from_utf8(self.to_json_bytes()).expect("serde_json writes UTF-8")
    }

    /// The same, as the bytes of a message value.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Room for a finding with its evidence (1.0-1.5 KB in the generated
        // stream), so that the buffer is not grown and copied on the way.
        let mut out = Vec::with_capacity(2048);
        serde_json::to_writer(&mut out, self).expect("a finding always serializes");
        out
    }
}

/// What the open-findings gauges count of a finding open or escalated:
/// a restore lists these without decoding whole findings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFinding {
    pub finding_id: String,
    pub status: Status,
    pub rule: Rule,
    pub severity: Severity,
    pub role: OwnerRole,
    pub team: Arc<str>,
}

impl From<&Finding> for OpenFinding {
    fn from(f: &Finding) -> OpenFinding {
        OpenFinding {
            finding_id: f.finding_id.clone(),
            status: f.status,
            rule: f.rule,
            severity: f.severity,
            role: f.contributing_owner.role,
            team: f.contributing_owner.team.clone(),
        }
    }
}

/// 128-bit FNV-1a over length-prefixed parts: stable across versions and
/// platforms, which `std`'s hasher is not.
pub fn stable_id(parts: &[&[u8]]) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    let mut eat = |b: u8| {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    };
    for part in parts {
        for b in (part.len() as u32).to_le_bytes() {
            eat(b);
        }
        for &b in *part {
            eat(b);
        }
    }
    format!("{h:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_id_is_stable_and_separates_parts() {
        assert_eq!(stable_id(&[b"a", b"bc"]), stable_id(&[b"a", b"bc"]));
        assert_ne!(stable_id(&[b"a", b"bc"]), stable_id(&[b"ab", b"c"]));
        // Pinned: a change here changes every finding id ever published.
        assert_eq!(
            stable_id(&[b"LEAVER_DIRECTORY_ACCESS", b"w1"]),
            "35748753e312474c77c1c8b97664a45e"
        );
        assert_eq!(stable_id(&[]).len(), 32);
    }

    #[test]
    fn severity_orders() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Medium > Severity::Low);
        assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
        assert_eq!(Severity::parse("high"), None);
    }
}
