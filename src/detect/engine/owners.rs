//! Accounts that change hands. An account (directory + account_id, or
//! app_id + account_id) is one entity held under one correlation key at a
//! time: the key its newest event names. The engine indexes, for every
//! account its state holds, the key holding it. An account event naming
//! another key moves the account there when the event is at least as new
//! as the account's state under the old key: the account leaves the old
//! key with everything known of it (state, attributes, grants), that
//! key's findings on it resolve (or never open if the move beats their
//! SLA), and the event applies to it under its new key. An older event
//! applies to the account where it is (each part only where newer, as any
//! late event): it does not bring the account back.
//! At equal times a correlated key wins over an uncorrelated one, then
//! the greater key, so the outcome depends on neither the order in which
//! the two keys' events arrive nor where they are applied.
//!
//! With routing by payload the old key may live in another partition. An
//! engine that sends [`Note`]s (the partition task gives them a round and
//! carries them through the repartition topic) claims every account new
//! to its partition from every other one; a partition holding an older
//! copy lets it go and hands it over, one holding a newer copy claims it
//! back. A handed-over copy merges into the new holder's, newest state,
//! attributes and grant winning.

use super::cause::Cause;
use super::Engine;
use crate::detect::state::{
    Account, AccountRef, CodecError, EvRef, Reader, Store, Summary, Writer,
};
use crate::model::event::Key;
use crate::model::finding::Finding;
use crate::model::id::Sym;
use crate::model::time::Ts;
use hashbrown::HashTable;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Where a [`Note`] goes.
#[derive(Debug, Clone, PartialEq)]
pub enum To {
    /// Every other partition.
    Every,
    /// The partition of this key.
    KeyOf(Key),
}

/// A message from one partition's engine to another's about an account.
#[derive(Debug, Clone)]
pub enum Note {
    /// `key` holds `account` as of `at` (the event `ev`): a key holding an
    /// older copy lets it go.
    Claim {
        account: AccountRef,
        key: Key,
        at: Ts,
        ev: EvRef,
    },
    /// An account as the key that let it go held it, for its new holder.
    Handover(Account),
}

/// Encodes one note for the repartition topic (once, whatever the number
/// of partitions it goes to).
pub fn encode_note(n: &Note) -> Vec<u8> {
    let mut one = Writer::default();
    match n {
        Note::Claim {
            account,
            key,
            at,
            ev,
        } => {
            one.u8(0);
            write_account_ref(&mut one, account);
            one.key(key);
            one.ts(*at);
            ev.encode(&mut one);
        }
        Note::Handover(account) => {
            one.u8(1);
            account.encode(&mut one);
        }
    }
    one.buf
}

/// Writes an account's identity (a claim's, a forward's);
/// [`Engine::read_account_ref`] reads it.
pub(super) fn write_account_ref(w: &mut Writer, a: &AccountRef) {
    w.system(a.system);
    w.sym(&a.scope);
    w.str(&a.account_id);
}

/// Packs encoded notes, in order, into records of at most about
/// `max_bytes` each (a record holds at least one note): a round's
/// handovers of accounts with many grants stay within what a broker
/// accepts. [`Engine::decode_notes`] reads a record.
pub fn pack_notes<'a>(notes: impl IntoIterator<Item = &'a [u8]>, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let mut chunk: Vec<&[u8]> = Vec::new();
    let mut size = 0;
    let flush = |chunk: &mut Vec<&[u8]>, records: &mut Vec<Vec<u8>>| {
        let mut w = Writer::default();
        w.seq(chunk, |w, one| w.bytes(one));
        records.push(w.buf);
        chunk.clear();
    };
    for one in notes {
        if !chunk.is_empty() && size + one.len() > max_bytes {
            flush(&mut chunk, &mut records);
            size = 0;
        }
        size += one.len() + 4;
        chunk.push(one);
    }
    if !chunk.is_empty() {
        flush(&mut chunk, &mut records);
    }
    records
}

/// Which key holds each account of one engine's state: 16 bytes an
/// account (about 34 with the table's slack), the account's hash and its
/// key's hash in the store. The key is the one of that hash whose state
/// holds the account, so two accounts, or two keys, of one hash are never
/// confused (two entries alike in both hashes are interchangeable).
#[derive(Default)]
pub(super) struct Owners {
    table: HashTable<Held>,
    hasher: ahash::RandomState,
}

struct Held {
    account: u64,
    key: u64,
}

impl Owners {
    fn hash(&self, id: &AccountRef) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Room for `n` more accounts.
    pub(super) fn reserve(&mut self, n: usize) {
        self.table.reserve(n, |e| e.account);
    }

    /// The key whose state holds `id`.
    pub(super) fn get(&self, id: &AccountRef, store: &Store) -> Option<Key> {
        self.verified(id, store).next()
    }

    /// Every key whose state holds `id` (one, but after a checkpoint cut
    /// short, several until [`Engine::settle_moves`]).
    fn holders(&self, id: &AccountRef, store: &Store) -> Vec<Key> {
        self.verified(id, store).collect()
    }

    /// The keys indexed for `id` whose state holds it.
    fn verified<'a>(
        &'a self,
        id: &'a AccountRef,
        store: &'a Store,
    ) -> impl Iterator<Item = Key> + 'a {
        let h = self.hash(id);
        self.table
            .iter_hash(h)
            .filter(move |e| e.account == h)
            .filter_map(move |e| {
                store.holder(
                    e.key,
                    |st| st.account(id).is_some(),
                    |frozen| {
                        Summary::owned(frozen.record(), &mut Sym::new)
                            .is_ok_and(|owned| owned.contains(id))
                    },
                )
            })
    }

    /// `id` is held by `to` now, no longer by `from`.
    pub(super) fn set(&mut self, id: &AccountRef, from: Option<&Key>, to: &Key, store: &Store) {
        let h = self.hash(id);
        let to = store.key_hash(to);
        if let Some(from) = from.map(|k| store.key_hash(k)) {
            if let Ok(mut e) = self
                .table
                .find_entry(h, |e| e.account == h && e.key == from)
            {
                e.get_mut().key = to;
                return;
            }
        }
        self.table.insert_unique(
            h,
            Held {
                account: h,
                key: to,
            },
            |e| e.account,
        );
    }

    /// `from` no longer holds `id`.
    pub(super) fn remove(&mut self, id: &AccountRef, from: &Key, store: &Store) {
        let h = self.hash(id);
        let from = store.key_hash(from);
        if let Ok(e) = self
            .table
            .find_entry(h, |e| e.account == h && e.key == from)
        {
            e.remove();
        }
    }
}

/// Accounts let go to another partition, remembered before the first
/// sweep of those older than a day.
pub(super) const MIN_FORWARDS_SWEEP: usize = 1024;

/// Accounts let go to another partition: the key they went to and when.
pub(super) type Forwards = std::collections::HashMap<AccountRef, (Key, Ts), ahash::RandomState>;

/// Keys whose records a checkpoint cut short wrote holding an account that
/// moved to them after the partition record: each takes it when the input
/// re-read reaches the event that moved it.
pub(super) type Waiting = std::collections::HashMap<AccountRef, Vec<Key>, ahash::RandomState>;

/// Orders a checkpoint's keys (given in key order) so that a key an
/// account moved off since the last checkpoint comes after the key it
/// moved to, and the key holding it now first: a checkpoint cut short
/// between them leaves the account under two keys, which the restore
/// settles, never under none. Otherwise keys keep their order. Where
/// accounts moved in opposite directions between keys (a cycle), one of
/// the keys on the cycle must come first.
pub(super) fn receivers_first(dirty: Vec<Key>, moves: &[(AccountRef, Key, Key)]) -> Vec<Key> {
    if moves.is_empty() {
        return dirty;
    }
    // Where each account is now.
    let mut holder: HashMap<&AccountRef, &Key> = HashMap::new();
    for (id, _, to) in moves {
        holder.insert(id, to);
    }
    // Each key an account left comes after the key it went to, but for
    // the key holding it now (an account moved away and back): that one
    // comes first.
    let present: HashSet<&Key> = dirty.iter().collect();
    let mut after: BTreeMap<&Key, BTreeSet<&Key>> = BTreeMap::new();
    for (id, from, to) in moves {
        if from != to && from != holder[id] && present.contains(from) && present.contains(to) {
            after.entry(from).or_default().insert(to);
        }
    }
    // Depth first, a key after the keys it waits for: only the edges that
    // close a cycle are not followed.
    let mut out = Vec::with_capacity(dirty.len());
    let mut seen: HashSet<&Key> = HashSet::with_capacity(dirty.len());
    for root in &dirty {
        if !seen.insert(root) {
            continue;
        }
        let mut stack: Vec<(&Key, Vec<&Key>)> = vec![(root, waits(&after, root))];
        while let Some((key, pending)) = stack.last_mut() {
            match pending.pop() {
                Some(next) => {
                    if seen.insert(next) {
                        let w = waits(&after, next);
                        stack.push((next, w));
                    }
                }
                None => {
                    out.push((*key).clone());
                    stack.pop();
                }
            }
        }
    }
    out
}

/// The keys `key` is written after, the first to visit last.
fn waits<'a>(after: &BTreeMap<&'a Key, BTreeSet<&'a Key>>, key: &Key) -> Vec<&'a Key> {
    after
        .get(key)
        .map(|s| s.iter().rev().copied().collect())
        .unwrap_or_default()
}

/// Which of two holders of an account is newer: its state's time, then a
/// correlated key before an uncorrelated one, then the greater key.
fn rank(at: Ts, key: &Key) -> (Ts, bool, &str) {
    (at, !key.uncorrelated(), key.id())
}

impl Engine {
    /// Before an event of account `id` is applied under `key` at `t`: when
    /// another key holds the account and the event is at least as new,
    /// that key lets it go (its findings reconcile with `cause` as
    /// evidence) and the account is returned, for `key` to take in.
    /// `Err(holder)` when the other key's copy is newer: the event applies
    /// to the account there.
    pub(super) fn take_account(
        &mut self,
        id: &AccountRef,
        key: &Key,
        t: Ts,
        cause: &Cause,
        out: &mut Vec<Finding>,
    ) -> Result<Option<Account>, Key> {
        let held = match self.owners.get(id, &self.store) {
            Some(k) if k == *key => return Ok(None),
            Some(k) => k,
            None => {
                self.owners.set(id, None, key, &self.store);
                if let (Some(notes), Some(ev)) = (&mut self.notes, &cause.ev) {
                    notes.push((
                        To::Every,
                        Note::Claim {
                            account: id.clone(),
                            key: key.clone(),
                            at: t,
                            ev: ev.clone(),
                        },
                    ));
                }
                return Ok(None);
            }
        };
        let moved = match self.holding(&held, id) {
            Some((at, _)) if rank(at, &held) > rank(t, key) => return Err(held),
            Some(_) => self.release(&held, id, cause, out),
            None => None,
        };
        if let (Some(_), Some(c)) = (&moved, &mut self.changes) {
            c.moves.push((id.clone(), held.clone(), key.clone()));
        }
        self.owners.set(id, Some(&held), key, &self.store);
        Ok(moved)
    }

    /// After a restore from a checkpoint cut short: `newer` holds the keys
    /// whose records were written after the partition record restored,
    /// with the input offsets each reflects. An account listed by several
    /// keys moved within that checkpoint's interval: the index keeps it
    /// under the key of the oldest record (the one that held it where the
    /// input is re-read from), and each newer key's copy waits for the
    /// event that moved the account to it. When the re-read input reaches
    /// that event (an event of the account under that key, at least as
    /// new as the copy where it is then), the copy where it is then is let
    /// go, its findings reconciling with that event as evidence, and the
    /// account is the newer key's again, as in the engine that wrote the
    /// checkpoint. The number of copies waiting.
    pub fn settle_moves(&mut self, newer: &std::collections::HashMap<Key, Vec<i64>>) -> usize {
        // Older records first: not rewritten since the partition record,
        // then by the input they reflect.
        let age = |k: &Key| newer.get(k).map(|o| o.iter().sum::<i64>());
        let mut waiting = 0;
        let mut keys: Vec<&Key> = newer.keys().collect();
        keys.sort();
        for key in keys {
            let owned = {
                let Some(frozen) = self.store.frozen().get(key) else {
                    continue;
                };
                Summary::owned(frozen.record(), &mut |s| Sym::new(s)).unwrap_or_default()
            };
            for id in owned {
                let mut holders = self.owners.holders(&id, &self.store);
                if holders.len() < 2 {
                    continue;
                }
                holders.sort_by(|a, b| age(a).cmp(&age(b)).then_with(|| a.cmp(b)));
                for later in holders.split_off(1) {
                    self.owners.remove(&id, &later, &self.store);
                    self.waiting.entry(id.clone()).or_default().push(later);
                    waiting += 1;
                }
            }
        }
        waiting
    }

    /// An event of account `id` under `key` at `t`, before the account is
    /// taken (`reflected`: an event re-read after a checkpoint cut short
    /// that `key`'s record already holds, which is not applied again).
    /// When it moved the account in the engine that wrote the checkpoint
    /// (the copy where the account is now is no newer) and either `key`'s
    /// copy waits for it (see [`Engine::settle_moves`]) or it is
    /// reflected, that copy is let go, its findings reconciling with this
    /// event as evidence; the account is then `key`'s if its copy waited,
    /// and nowhere for now if it moved on from `key` later.
    pub(super) fn settle_move(
        &mut self,
        id: &AccountRef,
        key: &Key,
        (t, reflected): (Ts, bool),
        cause: &Cause,
        out: &mut Vec<Finding>,
    ) {
        let waits = self.waiting.get(id).is_some_and(|keys| keys.contains(key));
        if !waits && !reflected {
            return;
        }
        let held = self.owners.get(id, &self.store);
        if held.as_ref() == Some(key) {
            return;
        }
        if let Some(held) = &held {
            match self.holding(held, id) {
                // Not a move: in the engine that wrote the checkpoint the
                // event applied to the account where it was.
                Some((at, _)) if rank(at, held) > rank(t, key) => return,
                Some(_) => {
                    self.release(held, id, cause, out);
                }
                None => {}
            }
        }
        if !waits {
            if let Some(held) = &held {
                self.owners.remove(id, held, &self.store);
            }
            return;
        }
        self.owners.set(id, held.as_ref(), key, &self.store);
        if let Some(keys) = self.waiting.get_mut(id) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.waiting.remove(id);
            }
        }
    }

    /// The time of the newest event of account `id` under `key`, and the
    /// event that set its state.
    fn holding(&mut self, key: &Key, id: &AccountRef) -> Option<(Ts, EvRef)> {
        self.thaw(key);
        self.store
            .with_state(key, |st| {
                st.account(id).map(|a| (a.last_at(), a.state_ev.clone()))
            })
            .flatten()
    }

    /// Removes account `id` from `key`'s state and reconciles the key; a
    /// key left with nothing is removed.
    fn release(
        &mut self,
        key: &Key,
        id: &AccountRef,
        cause: &Cause,
        out: &mut Vec<Finding>,
    ) -> Option<Account> {
        let store = self.store.clone();
        let now = self.now;
        let (account, empty) = {
            let mut st = store.map().get_mut(key)?;
            let account = st.remove_account(id)?;
            self.entries -= 1 + account.grants.len();
            st.catch_up(now);
            self.reconcile(key, &mut st, now, cause, out);
            let empty = st.hr.is_empty() && st.accounts.is_empty() && st.episodes().is_empty();
            (account, empty)
        };
        if empty {
            // Nothing left under the key (an orphan's own key once the
            // account is correlated): it goes, from the changelog too.
            store.map().remove(key);
            self.tracked -= 1;
        }
        self.touched(key);
        Some(account)
    }

    /// From now on, accounts new to this engine are claimed from other
    /// partitions, and what other partitions claim is answered, with
    /// [`Note`]s taken by [`Engine::take_notes`].
    pub fn send_notes(&mut self) {
        self.notes.get_or_insert_with(Vec::new);
    }

    /// The notes for other partitions since the last call.
    pub fn take_notes(&mut self) -> Vec<(To, Note)> {
        self.notes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Applies a note from another partition; transitions go to `out`.
    pub fn receive(&mut self, note: Note, out: &mut Vec<Finding>) {
        match note {
            Note::Claim {
                account,
                key,
                at,
                ev,
            } => {
                let Some(held) = self.owners.get(&account, &self.store) else {
                    return;
                };
                if held == key {
                    return;
                }
                let reply = match self.holding(&held, &account) {
                    None => {
                        self.owners.remove(&account, &held, &self.store);
                        return;
                    }
                    // Newer here: the claimer lets its copy go.
                    Some((held_at, held_ev)) if rank(held_at, &held) > rank(at, &key) => {
                        Note::Claim {
                            account,
                            key: held,
                            at: held_at,
                            ev: held_ev,
                        }
                    }
                    Some(_) => {
                        // The move is an event of this stream at `at`.
                        if at > self.now {
                            self.advance_to(at, out);
                        }
                        let cause = Cause {
                            system: account.system,
                            scope: account.scope.clone(),
                            ev: Some(ev),
                        };
                        let Some(copy) = self.release(&held, &account, &cause, out) else {
                            return;
                        };
                        self.owners.remove(&account, &held, &self.store);
                        self.forward(account, key.clone());
                        Note::Handover(copy)
                    }
                };
                if let Some(notes) = &mut self.notes {
                    notes.push((To::KeyOf(key), reply));
                }
            }
            Note::Handover(copy) => {
                let id = copy.identity();
                // Where the account is now (it may have moved on here).
                let Some(holder) = self.owners.get(&id, &self.store) else {
                    // Let go here within the last day (two partitions
                    // claimed it at once): it follows the account. The
                    // day is checked here, not left to the sweep, so that
                    // a restored engine, whose checkpoint kept a day's,
                    // forwards what this one would.
                    let now = self.now;
                    let to = self
                        .forwards
                        .get(&id)
                        .filter(|(_, at)| at.plus(crate::model::time::MS_PER_DAY) >= now);
                    if let (Some((to, _)), Some(notes)) = (to, &mut self.notes) {
                        notes.push((To::KeyOf(to.clone()), Note::Handover(copy)));
                    }
                    return;
                };
                self.thaw(&holder);
                let cause = Cause {
                    system: id.system,
                    scope: id.scope.clone(),
                    ev: Some(copy.state_ev.clone()),
                };
                let store = self.store.clone();
                let now = self.now;
                {
                    let Some(mut st) = store.map().get_mut(&holder) else {
                        return;
                    };
                    let Some(a) = st.accounts.iter_mut().find(|a| a.is(&id)) else {
                        return;
                    };
                    self.entries += a.absorb(copy);
                    st.catch_up(now);
                    self.reconcile(&holder, &mut st, now, &cause, out);
                }
                self.touched(&holder);
            }
        }
    }

    /// Remembers, for a day of stream time, that `account` went to `key`
    /// of another partition: a handover that arrives for it afterwards
    /// follows it there.
    fn forward(&mut self, account: AccountRef, key: Key) {
        let now = self.now;
        if self.forwards.len() >= self.forwards_sweep_at {
            self.forwards
                .retain(|_, (_, at)| at.plus(crate::model::time::MS_PER_DAY) >= now);
            self.forwards_sweep_at = (2 * self.forwards.len()).max(MIN_FORWARDS_SWEEP);
        }
        self.forwards.insert(account, (key, now));
    }

    /// Reads what [`write_account_ref`] wrote, the scope interned.
    pub(super) fn read_account_ref(
        &mut self,
        r: &mut Reader<'_>,
    ) -> Result<AccountRef, CodecError> {
        Ok(AccountRef {
            system: r.system()?,
            scope: self.intern(r.str()?),
            account_id: r.name()?,
        })
    }

    /// Decodes a record of notes [`pack_notes`] packed.
    pub fn decode_notes(&mut self, bytes: &[u8]) -> Result<Vec<Note>, CodecError> {
        let mut r = Reader::new(bytes);
        let list: Vec<&[u8]> = r.seq(|r| r.bytes())?;
        r.finish()?;
        let mut notes = Vec::with_capacity(list.len());
        for b in list {
            let mut r = Reader::new(b);
            let note = match r.u8()? {
                0 => Note::Claim {
                    account: self.read_account_ref(&mut r)?,
                    key: r.key()?,
                    at: r.ts()?,
                    ev: EvRef::decode(&mut r)?,
                },
                1 => Note::Handover(Account::decode(&mut r, &mut |s| self.intern(s))?),
                n => return r.fail(format!("note kind {n}")),
            };
            r.finish()?;
            notes.push(note);
        }
        Ok(notes)
    }
}
