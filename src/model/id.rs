//! Compact identifiers for the state held per worker.
//!
//! Memory per tracked worker is a product feature (BENCHMARKS.md), and the
//! state of a million workers is mostly identifiers: keys, account ids and
//! the event ids of the evidence. Three types keep them small:
//!
//! - [`Name`]: a string of up to 22 bytes stored inline (worker ids,
//!   account ids, generated event ids), a longer one shared on the heap.
//!   Inline names cost no allocation, and comparing keys in a hash-table
//!   probe touches no other cache line.
//! - [`EventId`]: a [`Name`], or a canonical lower-case UUID (the usual
//!   event id) packed into its 16 bytes.
//! - [`Topic`]: a topic name interned for the life of the process, two bytes.
//! - [`Sym`]: a shared string behind one thin pointer, eight bytes, for
//!   the names the engine interns (scopes, source systems, grant names,
//!   departments, titles); equal symbols usually share the pointer.
//!
//! Each string has exactly one representation, so the derived equality and
//! hash of the representation agree with those of the string.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, OnceLock, RwLock};

const INLINE: usize = 22;

/// An immutable string: inline up to 22 bytes, else shared.
///
/// A name can carry a one-bit mark in space its layout leaves free (the
/// correlation key's "uncorrelated" flag, which would otherwise cost eight
/// bytes of padding in every key). Equality, hash and order ignore it.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    /// `len`'s top bit is the mark.
    Inline {
        len: u8,
        buf: [u8; INLINE],
    },
    Shared {
        marked: bool,
        s: Arc<str>,
    },
}

const MARK: u8 = 0x80;

/// Copies `b` (at most `INLINE` bytes) to the start of `buf` in a few
/// fixed-size moves that may overlap, instead of a call to memmove: names
/// are made for every string field of every decoded event.
#[inline(always)]
fn fill(buf: &mut [u8; INLINE], b: &[u8]) {
    let n = b.len();
    if n >= 8 {
        buf[..8].copy_from_slice(&b[..8]);
        if n > 16 {
            buf[8..16].copy_from_slice(&b[8..16]);
        }
        buf[n - 8..n].copy_from_slice(&b[n - 8..]);
    } else if n >= 4 {
        buf[..4].copy_from_slice(&b[..4]);
        buf[n - 4..n].copy_from_slice(&b[n - 4..]);
    } else {
        buf[..n].copy_from_slice(b);
    }
}

impl Name {
    pub fn new(s: &str) -> Name {
        Name::with_mark(s, false)
    }

    /// A name carrying `mark`.
    pub fn with_mark(s: &str, mark: bool) -> Name {
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            fill(&mut buf, s.as_bytes());
            let len = s.len() as u8 | if mark { MARK } else { 0 };
            Name(Repr::Inline { len, buf })
        } else {
            Name(Repr::Shared {
                marked: mark,
                s: s.into(),
            })
        }
    }

    pub fn is_marked(&self) -> bool {
        match &self.0 {
            Repr::Inline { len, .. } => len & MARK != 0,
            Repr::Shared { marked, .. } => *marked,
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, buf } => {
                let bytes = &buf[..usize::from(len & !MARK)];
                // SAFETY: `with_mark` is the only place an inline name is
                // made, and it copies a whole `&str` into the buffer and
                // records that string's length: these bytes are valid UTF-8.
                // (Checking them again was 4% of decode-plus-apply, in
                // every hash and comparison of a key.)
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Repr::Shared { s, .. } => s,
        }
    }

    /// Whether the name lives inline (no allocation of its own).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name::new(&s)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        // A string has one representation (inline exactly when it fits),
        // and an inline buffer is zero past its length: two inline names
        // are equal when their lengths and whole buffers are, which
        // compares in a few instructions, without a call to memcmp.
        match (&self.0, &other.0) {
            (Repr::Inline { len: a, buf: x }, Repr::Inline { len: b, buf: y }) => {
                (a & !MARK) == (b & !MARK) && x == y
            }
            (Repr::Shared { s: x, .. }, Repr::Shared { s: y, .. }) => x == y,
            _ => false,
        }
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Takes what `String` takes (a string, or bytes that are UTF-8), with the
/// same error otherwise, so a field's type can change from `String` to
/// `Name` without changing what a decoder accepts or says.
impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name::new(v))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Name, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => Ok(Name::new(s)),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
                }
            }
        }
        d.deserialize_string(V)
    }
}

/// An event id: a packed canonical UUID, or any other string as a [`Name`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum EventId {
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lower-case hex.
    Uuid([u8; 16]),
    Other(Name),
}

impl EventId {
    pub fn new(s: &str) -> EventId {
        match parse_uuid(s) {
            Some(b) => EventId::Uuid(b),
            None => EventId::Other(Name::new(s)),
        }
    }

    /// The id as published in evidence.
    pub fn to_arc(&self) -> Arc<str> {
        match self {
            EventId::Other(n) => n.as_str().into(),
            EventId::Uuid(_) => self.to_string().into(),
        }
    }
}

const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || UUID_DASHES.iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !UUID_DASHES.contains(i))
        .map(|(_, &c)| c);
    for byte in &mut out {
        let hi = lower_hex(digits.next()?)?;
        let lo = lower_hex(digits.next()?)?;
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

/// Only lower-case digits, so that printing gives back the same string.
fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventId::Other(n) => f.write_str(n),
            EventId::Uuid(b) => {
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A topic name, interned for the life of the process (the set of topics
/// a process reads is small and fixed by its configuration and files).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic(u16);

fn topic_table() -> &'static RwLock<Vec<&'static str>> {
    static TABLE: OnceLock<RwLock<Vec<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(Vec::new()))
}

impl Topic {
    /// The topic called `name`; the first call for a name records it.
    ///
    /// # Panics
    /// After 65,536 distinct topic names in one process.
    pub fn new(name: &str) -> Topic {
        let table = topic_table();
        let find = |t: &[&str]| t.iter().position(|n| *n == name);
        if let Some(i) = find(&table.read().unwrap_or_else(|e| e.into_inner())) {
            return Topic(i as u16);
        }
        let mut t = table.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = find(&t) {
            return Topic(i as u16);
        }
        let i = u16::try_from(t.len()).expect("at most 65,536 topic names per process");
        t.push(Box::leak(name.to_owned().into_boxed_str()));
        Topic(i)
    }

    pub fn as_str(self) -> &'static str {
        topic_table().read().unwrap_or_else(|e| e.into_inner())[usize::from(self.0)]
    }
}

impl From<&str> for Topic {
    fn from(s: &str) -> Topic {
        Topic::new(s)
    }
}

impl From<String> for Topic {
    fn from(s: String) -> Topic {
        Topic::new(&s)
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Topic) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// By name, like the strings they stand for.
impl Ord for Topic {
    fn cmp(&self, other: &Topic) -> Ordering {
        if self.0 == other.0 {
            Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A shared immutable string behind a thin pointer (the `Arc<str>` it
/// wraps can be handed to a finding without copying the text). Equality,
/// hash and order are the string's; equality tries the pointer first, which
/// decides for names from the same interner.
#[derive(Clone)]
pub struct Sym(Arc<Arc<str>>);

impl Sym {
    pub fn new(s: &str) -> Sym {
        Sym(Arc::new(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as an `Arc<str>`, shared, not copied.
    pub fn to_arc(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    pub fn ptr_eq(&self, other: &Sym) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Sym {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Sym {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Sym {
    fn from(s: &str) -> Sym {
        Sym::new(s)
    }
}

impl PartialEq for Sym {
    fn eq(&self, other: &Sym) -> bool {
        self.ptr_eq(other) || self.as_str() == other.as_str()
    }
}

impl Eq for Sym {}

impl Hash for Sym {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialOrd for Sym {
    fn partial_cmp(&self, other: &Sym) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sym {
    fn cmp(&self, other: &Sym) -> Ordering {
        if self.ptr_eq(other) {
            Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_deserialises_from_what_a_string_does_with_the_same_errors() {
        for json in [
            r#""W000001""#,
            r#""an-identifier-well-over-twenty-two-bytes""#,
            r#""esc\"aped\u00e9""#,
            r#""""#,
            "5",
            "null",
            "true",
            "[\"a\"]",
            "{\"a\":1}",
            r#""unterminated"#,
        ] {
            let name = serde_json::from_str::<Name>(json).map(|n| n.as_str().to_string());
            let string = serde_json::from_str::<String>(json);
            match (name, string) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{json}"),
                (a, b) => panic!("{json}: {a:?} against {b:?}"),
            }
        }
    }

    #[test]
    fn names_of_every_length_keep_their_bytes_and_a_zeroed_tail() {
        let text = "abcdefghijklmnopqrstuvwxyz";
        for n in 0..=text.len() {
            let s = &text[..n];
            let name = Name::with_mark(s, n % 2 == 0);
            assert_eq!(name.as_str(), s);
            if let Repr::Inline { buf, .. } = &name.0 {
                assert!(buf[n..].iter().all(|b| *b == 0), "length {n}: {buf:?}");
            } else {
                assert!(n > INLINE);
            }
        }
    }

    #[test]
    fn names_round_trip_inline_and_shared() {
        for s in [
            "",
            "W000001",
            "exactly-twenty-two-b22",
            "twenty-three-bytes-long",
        ] {
            let n = Name::new(s);
            assert_eq!(n.as_str(), s);
            assert_eq!(n.is_inline(), s.len() <= 22, "{s}");
            assert_eq!(n, Name::from(s.to_string()));
        }
        assert!(Name::new("a") < Name::new("b"));
        assert!(Name::new("zz") > Name::new("a-much-longer-name-than-inline"));
        assert_eq!(std::mem::size_of::<Name>(), 24);
        assert_eq!(std::mem::size_of::<EventId>(), 24);
    }

    #[test]
    fn name_equality_and_hash_agree_with_the_strings() {
        let strings = [
            "",
            "a",
            "a\0",
            "ab",
            "W000001",
            "W000002",
            "Zoë",
            "Zoe",
            "exactly-twenty-two-b22",
            "exactly-twenty-two-b2",
            "twenty-three-bytes-long",
            "twenty-three-bytes-lonG",
        ];
        let hasher = ahash::RandomState::new();
        for a in strings {
            for b in strings {
                for (ma, mb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let (x, y) = (Name::with_mark(a, ma), Name::with_mark(b, mb));
                    assert_eq!(x == y, a == b, "{a:?} {ma} / {b:?} {mb}");
                    assert_eq!(x.cmp(&y), a.cmp(b), "{a:?} / {b:?}");
                    if a == b {
                        assert_eq!(hasher.hash_one(&x), hasher.hash_one(&y));
                    }
                    assert_eq!(hasher.hash_one(&x), hasher.hash_one(a));
                }
            }
        }
    }

    #[test]
    fn uuids_pack_and_print_back_exactly() {
        let s = "0559c919-4f3a-4b8e-9d2c-7e1f00aa12ff";
        let id = EventId::new(s);
        assert!(matches!(id, EventId::Uuid(_)));
        assert_eq!(id.to_string(), s);
        assert_eq!(&*id.to_arc(), s);
        // Anything not canonical keeps its exact spelling.
        for other in [
            "0559C919-4F3A-4B8E-9D2C-7E1F00AA12FF",
            "0559c9194f3a4b8e9d2c7e1f00aa12ff",
            "0559c919-4f3a-4b8e-9d2c-7e1f00aa12f",
            "0559c919-4f3a-4b8e-9d2c_7e1f00aa12ff",
            "hr-000000123",
        ] {
            let id = EventId::new(other);
            assert!(matches!(id, EventId::Other(_)), "{other}");
            assert_eq!(id.to_string(), other);
        }
    }

    #[test]
    fn topics_intern_by_name() {
        let a = Topic::new("id-test.topic-a");
        assert_eq!(a, Topic::from("id-test.topic-a".to_string()));
        assert_eq!(a.as_str(), "id-test.topic-a");
        let b = Topic::new("id-test.topic-b");
        assert_ne!(a, b);
        assert!(a < b);
    }

    #[test]
    fn a_mark_rides_along_and_equality_ignores_it() {
        for s in ["w-1", "a-name-longer-than-twenty-two-bytes"] {
            let plain = Name::new(s);
            let marked = Name::with_mark(s, true);
            assert!(marked.is_marked() && !plain.is_marked());
            assert_eq!((marked.as_str(), plain.as_str()), (s, s));
            assert_eq!(marked, plain);
        }
        assert_eq!(std::mem::size_of::<Name>(), 24);
    }

    #[test]
    fn symbols_compare_as_strings_whether_shared_or_not() {
        let a = Sym::new("Sales");
        let shared = a.clone();
        let separate = Sym::new("Sales");
        assert!(a.ptr_eq(&shared) && !a.ptr_eq(&separate));
        assert_eq!(a, separate);
        assert_eq!(a.cmp(&separate), Ordering::Equal);
        assert!(a < Sym::new("Support"));
        assert_eq!(&*a.to_arc(), "Sales");
        let set: std::collections::HashSet<Sym> = [separate].into_iter().collect();
        assert!(set.contains("Sales"));
        assert_eq!(std::mem::size_of::<Sym>(), 8);
        assert_eq!(std::mem::size_of::<Option<Sym>>(), 8);
    }
}
