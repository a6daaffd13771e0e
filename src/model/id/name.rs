//! [`Name`]: a string inline up to 22 bytes, else shared, with a one-bit
//! mark.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::id::EventId;

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
}
