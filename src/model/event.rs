//! The event model of the three input topic families, exactly as the
//! product contract names them (`BRIEF.md`, "Input topics").
//!
//! Field names and enum symbols are a public contract: serde renames nothing
//! and every enum is `SCREAMING_SNAKE_CASE` on the wire. Unknown extra fields
//! are ignored; missing required fields are decode errors.

use crate::model::id::{Name, Topic};
use crate::model::time::Ts;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Which of the three topic families a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Hr,
    Directory,
    App,
}

impl System {
    pub fn as_str(self) -> &'static str {
        match self {
            System::Hr => "hr",
            System::Directory => "directory",
            System::App => "app",
        }
    }
}

macro_rules! wire_enum {
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
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// HR event types; status follows from them at their `effective_at`.
    HrEventType {
        Hire => "HIRE",
        Rehire => "REHIRE",
        Transfer => "TRANSFER",
        Update => "UPDATE",
        LeaveStart => "LEAVE_START",
        LeaveEnd => "LEAVE_END",
        Termination => "TERMINATION",
        ContractExtension => "CONTRACT_EXTENSION",
    }
);

wire_enum!(
    WorkerType {
        Employee => "EMPLOYEE",
        Contractor => "CONTRACTOR",
        Intern => "INTERN",
        Contingent => "CONTINGENT",
    }
);

wire_enum!(
    DirectoryEventType {
        AccountCreated => "ACCOUNT_CREATED",
        AccountEnabled => "ACCOUNT_ENABLED",
        AccountDisabled => "ACCOUNT_DISABLED",
        AccountDeleted => "ACCOUNT_DELETED",
        AttributesChanged => "ATTRIBUTES_CHANGED",
        GroupAdded => "GROUP_ADDED",
        GroupRemoved => "GROUP_REMOVED",
    }
);

wire_enum!(
    AccountKind {
        Human => "HUMAN",
        Service => "SERVICE",
        SharedAdmin => "SHARED_ADMIN",
    }
);

wire_enum!(
    AppEventType {
        AppAccountCreated => "APP_ACCOUNT_CREATED",
        AppAccountDisabled => "APP_ACCOUNT_DISABLED",
        AppAccountDeleted => "APP_ACCOUNT_DELETED",
        EntitlementGranted => "ENTITLEMENT_GRANTED",
        EntitlementRevoked => "ENTITLEMENT_REVOKED",
        AccessRecertified => "ACCESS_RECERTIFIED",
    }
);

/// An event on `hr.worker-events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HrEvent {
    pub event_id: Name,
    pub event_type: HrEventType,
    pub occurred_at: Ts,
    pub effective_at: Ts,
    pub source_system: Name,
    pub worker_id: Name,
    pub worker_type: WorkerType,
    #[serde(default)]
    pub email: Option<Name>,
    #[serde(default)]
    pub department: Option<Name>,
    #[serde(default)]
    pub title: Option<Name>,
    #[serde(default)]
    pub manager_id: Option<Name>,
    #[serde(default)]
    pub cost_center: Option<Name>,
    #[serde(default)]
    pub contract_end: Option<Ts>,
}

/// An event on `directory.account-changes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryEvent {
    pub event_id: Name,
    pub event_type: DirectoryEventType,
    pub occurred_at: Ts,
    pub directory: Name,
    pub account_id: Name,
    #[serde(default)]
    pub worker_id: Option<Name>,
    pub account_kind: AccountKind,
    #[serde(default)]
    pub owner_worker_id: Option<Name>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub email: Option<Name>,
    #[serde(default)]
    pub department: Option<Name>,
    #[serde(default)]
    pub title: Option<Name>,
    #[serde(default)]
    pub manager_id: Option<Name>,
    #[serde(default)]
    pub group: Option<Name>,
    #[serde(default, deserialize_with = "null_as_false")]
    pub privileged: bool,
    #[serde(default)]
    pub approved_by: Option<Name>,
    #[serde(default)]
    pub approval_ref: Option<Name>,
    #[serde(default)]
    pub actor: Option<Name>,
}

/// An event on `app.entitlement-changes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppEvent {
    pub event_id: Name,
    pub event_type: AppEventType,
    pub occurred_at: Ts,
    pub app_id: Name,
    pub account_id: Name,
    #[serde(default)]
    pub worker_id: Option<Name>,
    pub account_kind: AccountKind,
    #[serde(default)]
    pub owner_worker_id: Option<Name>,
    #[serde(default)]
    pub entitlement: Option<Name>,
    #[serde(default, deserialize_with = "null_as_false")]
    pub privileged: bool,
    #[serde(default)]
    pub approved_by: Option<Name>,
    #[serde(default)]
    pub approval_ref: Option<Name>,
}

/// `privileged`: a boolean where null (or absence) means false.
fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean or null")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<bool, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

/// The type of an event of any family, in two bytes (held in every
/// `detect::state::EvRef`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Hr(HrEventType),
    Directory(DirectoryEventType),
    App(AppEventType),
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Hr(t) => t.as_str(),
            EventType::Directory(t) => t.as_str(),
            EventType::App(t) => t.as_str(),
        }
    }
}

/// A decoded input event of any family.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Hr(HrEvent),
    Directory(DirectoryEvent),
    App(AppEvent),
}

/// The state-store key that joins the three families.
///
/// `worker_id` for HUMAN accounts, `owner_worker_id` for SERVICE and
/// SHARED_ADMIN accounts, else the `account_id` (uncorrelated). The flag
/// keeps an uncorrelated account id from ever colliding with a worker id.
///
/// 24 bytes, half of a tracked worker's map entry: the flag is the
/// mark of the id [`Name`]. Keys compare by flag, then id.
#[derive(Clone, Debug)]
pub struct Key {
    id: Name,
}

impl Key {
    pub fn worker(id: &str) -> Key {
        Key { id: Name::new(id) }
    }

    /// The key of an account correlated to no worker.
    pub fn account(account_id: &str) -> Key {
        Key {
            id: Name::with_mark(account_id, true),
        }
    }

    /// The worker id, or the account id of an uncorrelated key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// An account correlated to no worker: the id is its account id.
    pub fn uncorrelated(&self) -> bool {
        self.id.is_marked()
    }

    /// The worker id of a correlated key.
    pub fn worker_id(&self) -> Option<&str> {
        (!self.uncorrelated()).then_some(&*self.id)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.uncorrelated() == other.uncorrelated() && self.id == other.id
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.uncorrelated().hash(h);
        self.id.hash(h);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        (self.uncorrelated(), &self.id).cmp(&(other.uncorrelated(), &other.id))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.uncorrelated() {
            write!(f, "account:{}", self.id)
        } else {
            f.write_str(&self.id)
        }
    }
}

fn account_key(
    kind: AccountKind,
    worker_id: Option<&str>,
    owner: Option<&str>,
    account_id: &str,
) -> Key {
    let correlated = match kind {
        AccountKind::Human => worker_id,
        AccountKind::Service | AccountKind::SharedAdmin => owner,
    };
    match correlated.filter(|s| !s.is_empty()) {
        Some(id) => Key::worker(id),
        None => Key::account(account_id),
    }
}

impl Event {
    pub fn system(&self) -> System {
        match self {
            Event::Hr(_) => System::Hr,
            Event::Directory(_) => System::Directory,
            Event::App(_) => System::App,
        }
    }

    pub fn event_id(&self) -> &str {
        match self {
            Event::Hr(e) => &e.event_id,
            Event::Directory(e) => &e.event_id,
            Event::App(e) => &e.event_id,
        }
    }

    pub fn occurred_at(&self) -> Ts {
        match self {
            Event::Hr(e) => e.occurred_at,
            Event::Directory(e) => e.occurred_at,
            Event::App(e) => e.occurred_at,
        }
    }

    pub fn event_type(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn kind(&self) -> EventType {
        match self {
            Event::Hr(e) => EventType::Hr(e.event_type),
            Event::Directory(e) => EventType::Directory(e.event_type),
            Event::App(e) => EventType::App(e.event_type),
        }
    }

    /// The correlation key (see [`Key`]).
    pub fn key(&self) -> Key {
        match self {
            Event::Hr(e) => Key::worker(&e.worker_id),
            Event::Directory(e) => account_key(
                e.account_kind,
                e.worker_id.as_deref(),
                e.owner_worker_id.as_deref(),
                &e.account_id,
            ),
            Event::App(e) => account_key(
                e.account_kind,
                e.worker_id.as_deref(),
                e.owner_worker_id.as_deref(),
                &e.account_id,
            ),
        }
    }
}

/// Where a message was read: the evidence coordinates of the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub topic: Topic,
    pub partition: i32,
    pub offset: i64,
}

/// A decoded event with the coordinates it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub origin: Origin,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncorrelated_account_never_shares_a_workers_key() {
        let worker = Key::worker("u123");
        let account = account_key(AccountKind::Human, None, None, "u123");
        assert!(account.uncorrelated() && !worker.uncorrelated());
        assert_eq!(account.id(), worker.id());
        assert_ne!(account, worker);
        assert!(worker < account, "correlated keys sort first");
        assert_eq!(
            (account.to_string(), account.worker_id()),
            ("account:u123".into(), None)
        );
        let set: std::collections::HashSet<Key> = [worker.clone(), account].into_iter().collect();
        assert_eq!(set.len(), 2);
        assert_eq!(
            account_key(AccountKind::Service, None, Some("u123"), "svc-1"),
            worker
        );
    }
}
