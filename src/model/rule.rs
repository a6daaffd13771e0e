//! The contract's rule ids (`BRIEF.md`, "Drift rules"): names, default
//! SLAs and severities, framework controls and contributing owner roles.
//! Data of the contract, with no logic of detection: the rules themselves
//! are in [`crate::detect::rules`].

use super::event::System;
use super::finding::{OwnerRole, Severity};
use super::time::{MS_PER_DAY, MS_PER_HOUR};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A rule's defaults in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleDefaults {
    pub sla_ms: i64,
    pub severity: Severity,
    /// Severity when the subject is privileged (or SHARED_ADMIN).
    pub elevated_severity: Severity,
}

macro_rules! rules {
    ($($variant:ident => $s:literal, $sla:expr, $sev:ident, $elev:ident;)+) => {
        /// A rule id of the contract.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum Rule { $($variant),+ }

        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Rule::$variant => $s),+ }
            }

            pub fn parse(s: &str) -> Option<Rule> {
                match s { $($s => Some(Rule::$variant),)+ _ => None }
            }

            /// The contract's defaults: SLA, base and elevated severity.
            pub fn defaults(self) -> RuleDefaults {
                match self {
                    $(Rule::$variant => RuleDefaults {
                        sla_ms: $sla,
                        severity: Severity::$sev,
                        elevated_severity: Severity::$elev,
                    }),+
                }
            }
        }
    };
}

rules! {
    LeaverDirectoryAccess => "LEAVER_DIRECTORY_ACCESS", MS_PER_HOUR, High, Critical;
    LeaverAppAccess => "LEAVER_APP_ACCESS", 24 * MS_PER_HOUR, High, Critical;
    JoinerNotProvisioned => "JOINER_NOT_PROVISIONED", 24 * MS_PER_HOUR, Medium, Medium;
    OrphanAccount => "ORPHAN_ACCOUNT", MS_PER_HOUR, Medium, High;
    AttributeMismatch => "ATTRIBUTE_MISMATCH", 4 * MS_PER_HOUR, Low, Low;
    MoverRetainedPrivilege => "MOVER_RETAINED_PRIVILEGE", 7 * MS_PER_DAY, Medium, Medium;
    UnreconciledTermination => "UNRECONCILED_TERMINATION", 24 * MS_PER_HOUR, Medium, Medium;
    AccessDuringLeave => "ACCESS_DURING_LEAVE", 72 * MS_PER_HOUR, Low, Low;
    OrphanedNonHumanIdentity => "ORPHANED_NON_HUMAN_IDENTITY", 72 * MS_PER_HOUR, High, Critical;
    UnapprovedPrivilegedGrant => "UNAPPROVED_PRIVILEGED_GRANT", 0, High, High;
    ContractExpiredAccess => "CONTRACT_EXPIRED_ACCESS", 4 * MS_PER_HOUR, High, High;
    ConflictingSourceRecords => "CONFLICTING_SOURCE_RECORDS", 24 * MS_PER_HOUR, Medium, Medium;
    SourceStorm => "SOURCE_STORM", 0, Critical, Critical;
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Rule {
    pub fn index(self) -> usize {
        self as usize
    }

    /// Framework controls a finding of this rule evidences.
    pub fn frameworks(self) -> &'static [&'static str] {
        const RR: &str = "NIST CSF 2.0 GV.RR-02";
        const OV: &str = "NIST CSF 2.0 GV.OV-01";
        const AA01: &str = "NIST CSF 2.0 PR.AA-01";
        const AA05: &str = "NIST CSF 2.0 PR.AA-05";
        const SP63: &str = "NIST SP 800-63";
        const NHI1: &str = "OWASP NHI1";
        match self {
            Rule::LeaverDirectoryAccess | Rule::LeaverAppAccess => &[RR, AA01, AA05],
            Rule::JoinerNotProvisioned => &[RR, AA01],
            Rule::OrphanAccount => &[RR, AA01, SP63],
            Rule::AttributeMismatch => &[RR, AA01, SP63],
            Rule::MoverRetainedPrivilege | Rule::UnapprovedPrivilegedGrant => &[RR, AA05],
            Rule::UnreconciledTermination | Rule::ConflictingSourceRecords => &[RR, OV, AA01],
            Rule::AccessDuringLeave | Rule::ContractExpiredAccess => &[RR, AA01, AA05],
            Rule::OrphanedNonHumanIdentity => &[RR, AA01, NHI1],
            Rule::SourceStorm => &[RR, OV],
        }
    }

    /// The contributing owner's role for a subject in `system`.
    pub fn contributing_role(self, system: System) -> OwnerRole {
        match self {
            Rule::UnreconciledTermination
            | Rule::ContractExpiredAccess
            | Rule::ConflictingSourceRecords => OwnerRole::Hr,
            Rule::LeaverAppAccess => OwnerRole::AppOwner,
            _ if system == System::App => OwnerRole::AppOwner,
            Rule::SourceStorm if system == System::Hr => OwnerRole::Hr,
            _ => OwnerRole::It,
        }
    }
}
