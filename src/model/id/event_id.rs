//! [`EventId`]: a canonical UUID packed into 16 bytes, or a [`Name`].

use super::Name;
use std::fmt;
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
