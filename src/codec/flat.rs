//! The fast path of JSON decoding, for the messages producers send: one
//! flat object whose values are strings without escapes, `null`, booleans,
//! or numbers in fields the contract does not name.
//!
//! It never decides an error. Anything else (an escape, a nested value, a
//! number in a named field, a duplicate or missing field, an unknown enum
//! symbol, a timestamp that does not parse) returns `None`, and the message
//! is decoded by serde, which accepts it or names the field at fault. So a
//! message decodes to the same event, or fails with the same error, either
//! way; a differential test over generated and mutated messages holds the
//! two paths to it.
//!
//! Why it exists: serde's generic walk (a visitor per field, a seed per
//! value) cost more than the scanning itself, and decoding is a quarter of
//! a restore (BENCHMARKS.md).

use crate::model::event::{
    AccountKind, AppEvent, AppEventType, DirectoryEvent, DirectoryEventType, Event, HrEvent,
    HrEventType, System, WorkerType,
};
use crate::model::id::Name;
use crate::model::time::Ts;

/// A value the fast path understands. A number is only skipped, in a
/// field it does not know.
#[derive(Clone, Copy)]
enum Val<'a> {
    Str(&'a str),
    Null,
    Bool(bool),
    Number,
}

/// Decodes `text` (a JSON object, already checked to be UTF-8) when it is
/// in the fast path's subset; `None` sends it to serde.
pub(super) fn decode(system: System, text: &str) -> Option<Event> {
    Some(match system {
        System::Hr => Event::Hr(hr(text)?),
        System::Directory => Event::Directory(directory(text)?),
        System::App => Event::App(app(text)?),
    })
}

fn hr(text: &str) -> Option<HrEvent> {
    const NAMES: [&str; 13] = [
        "event_id",
        "event_type",
        "occurred_at",
        "effective_at",
        "source_system",
        "worker_id",
        "worker_type",
        "email",
        "department",
        "title",
        "manager_id",
        "cost_center",
        "contract_end",
    ];
    let v = fields(text, &NAMES)?;
    Some(HrEvent {
        event_id: string(v[0])?,
        event_type: symbol(v[1], HrEventType::ALL, HrEventType::as_str)?,
        occurred_at: time(v[2])?,
        effective_at: time(v[3])?,
        source_system: string(v[4])?,
        worker_id: string(v[5])?,
        worker_type: symbol(v[6], WorkerType::ALL, WorkerType::as_str)?,
        email: optional(v[7], string)?,
        department: optional(v[8], string)?,
        title: optional(v[9], string)?,
        manager_id: optional(v[10], string)?,
        cost_center: optional(v[11], string)?,
        contract_end: optional(v[12], time)?,
    })
}

fn directory(text: &str) -> Option<DirectoryEvent> {
    const NAMES: [&str; 18] = [
        "event_id",
        "event_type",
        "occurred_at",
        "directory",
        "account_id",
        "worker_id",
        "account_kind",
        "owner_worker_id",
        "enabled",
        "email",
        "department",
        "title",
        "manager_id",
        "group",
        "privileged",
        "approved_by",
        "approval_ref",
        "actor",
    ];
    let v = fields(text, &NAMES)?;
    Some(DirectoryEvent {
        event_id: string(v[0])?,
        event_type: symbol(v[1], DirectoryEventType::ALL, DirectoryEventType::as_str)?,
        occurred_at: time(v[2])?,
        directory: string(v[3])?,
        account_id: string(v[4])?,
        worker_id: optional(v[5], string)?,
        account_kind: symbol(v[6], AccountKind::ALL, AccountKind::as_str)?,
        owner_worker_id: optional(v[7], string)?,
        enabled: optional(v[8], boolean)?,
        email: optional(v[9], string)?,
        department: optional(v[10], string)?,
        title: optional(v[11], string)?,
        manager_id: optional(v[12], string)?,
        group: optional(v[13], string)?,
        privileged: optional(v[14], boolean)?.unwrap_or(false),
        approved_by: optional(v[15], string)?,
        approval_ref: optional(v[16], string)?,
        actor: optional(v[17], string)?,
    })
}

fn app(text: &str) -> Option<AppEvent> {
    const NAMES: [&str; 12] = [
        "event_id",
        "event_type",
        "occurred_at",
        "app_id",
        "account_id",
        "worker_id",
        "account_kind",
        "owner_worker_id",
        "entitlement",
        "privileged",
        "approved_by",
        "approval_ref",
    ];
    let v = fields(text, &NAMES)?;
    Some(AppEvent {
        event_id: string(v[0])?,
        event_type: symbol(v[1], AppEventType::ALL, AppEventType::as_str)?,
        occurred_at: time(v[2])?,
        app_id: string(v[3])?,
        account_id: string(v[4])?,
        worker_id: optional(v[5], string)?,
        account_kind: symbol(v[6], AccountKind::ALL, AccountKind::as_str)?,
        owner_worker_id: optional(v[7], string)?,
        entitlement: optional(v[8], string)?,
        privileged: optional(v[9], boolean)?.unwrap_or(false),
        approved_by: optional(v[10], string)?,
        approval_ref: optional(v[11], string)?,
    })
}

/// A required string field.
fn string(v: Option<Val<'_>>) -> Option<Name> {
    match v? {
        Val::Str(s) => Some(Name::new(s)),
        _ => None,
    }
}

fn boolean(v: Option<Val<'_>>) -> Option<bool> {
    match v? {
        Val::Bool(b) => Some(b),
        _ => None,
    }
}

fn time(v: Option<Val<'_>>) -> Option<Ts> {
    match v? {
        Val::Str(s) => Ts::parse(s).ok(),
        _ => None,
    }
}

/// An enum field: one of `all`, by its wire symbol.
fn symbol<T: Copy>(v: Option<Val<'_>>, all: &[T], name: fn(T) -> &'static str) -> Option<T> {
    match v? {
        Val::Str(s) => all.iter().copied().find(|t| name(*t) == s),
        _ => None,
    }
}

/// An optional field: absent or `null` is `Some(None)`; `None` when the
/// value is not what `required` takes.
fn optional<'a, T>(
    v: Option<Val<'a>>,
    required: fn(Option<Val<'a>>) -> Option<T>,
) -> Option<Option<T>> {
    match v {
        None | Some(Val::Null) => Some(None),
        Some(_) => required(v).map(Some),
    }
}

/// The values of the fields named in `names`, from a flat JSON object;
/// `None` when the text is not one the fast path reads, or names a field
/// twice.
fn fields<'a, const N: usize>(text: &'a str, names: &[&str; N]) -> Option<[Option<Val<'a>>; N]> {
    let mut c = Cursor {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut values = [None; N];
    let mut last = None;
    c.expect(b'{')?;
    if c.peek() == Some(b'}') {
        c.at += 1;
    } else {
        loop {
            c.expect(b'"')?;
            let key = c.string()?;
            c.expect(b':')?;
            let value = c.value()?;
            // Producers write the fields in the contract's order: try the
            // one after the last found before looking the name up.
            let guess = last.map_or(0, |k| k + 1);
            let k = if names.get(guess) == Some(&key) {
                Some(guess)
            } else {
                names.iter().position(|n| *n == key)
            };
            if let Some(k) = k {
                last = Some(k);
                // A number in a named field: serde decides (a timestamp
                // may be integer milliseconds; elsewhere it is an error).
                if values[k].is_some() || matches!(value, Val::Number) {
                    return None;
                }
                values[k] = Some(value);
            }
            match c.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.skip_whitespace();
    (c.at == c.bytes.len()).then_some(values)
}

/// Where a string's text stops: the offset of the first quote, backslash
/// or control character. Eight bytes at a time: a byte's high bit is set in
/// `hit` where it is one of those, and bytes above a hit may be false hits
/// (borrows run upwards), so the lowest is the right one.
fn stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let hit = zero_in(w ^ (ONES * u64::from(b'"')))
            | zero_in(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if hit != 0 {
            return Some(at + hit.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, without taking it.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    /// Takes the next byte after whitespace.
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// The rest of a string whose opening quote is taken: `None` at an
    /// escape or a control character (serde unescapes, or refuses).
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        let end = start + stop(&self.bytes[start..])?;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        // Both ends are at ASCII bytes, so at character boundaries.
        Some(&self.text[start..end])
    }

    #[inline(always)]
    fn value(&mut self) -> Option<Val<'a>> {
        match self.next()? {
            b'"' => Some(Val::Str(self.string()?)),
            b'n' => self.word(b"ull", Val::Null),
            b't' => self.word(b"rue", Val::Bool(true)),
            b'f' => self.word(b"alse", Val::Bool(false)),
            b'-' | b'0'..=b'9' => {
                self.at -= 1;
                self.number()?;
                Some(Val::Number)
            }
            _ => None,
        }
    }

    fn word(&mut self, rest: &[u8], value: Val<'a>) -> Option<Val<'a>> {
        self.bytes[self.at..].starts_with(rest).then(|| {
            self.at += rest.len();
            value
        })
    }

    /// Skips a number as JSON writes it: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::to_json;
    use crate::tools::generate::{Generator, Rng};

    /// What serde makes of a message, or its error.
    fn serde(system: System, text: &str) -> Result<Event, super::super::json::DecodeError> {
        super::super::json::event_by_serde(system, text)
    }

    fn messages() -> Vec<(System, String)> {
        let mut g = Generator::new(7, 300, Ts::parse("2026-11-02T08:00:00Z").unwrap());
        let mut events = g.baseline();
        for _ in 0..200 {
            events.extend(g.next_batch(600_000));
        }
        events.iter().map(|e| (e.system(), to_json(e))).collect()
    }

    #[test]
    fn generated_messages_take_the_fast_path_to_serde_s_result() {
        let messages = messages();
        let mut families = [0usize; 3];
        for (system, text) in &messages {
            let fast = decode(*system, text).unwrap_or_else(|| panic!("not fast: {text}"));
            assert_eq!(Ok(fast), serde(*system, text), "{text}");
            families[*system as usize] += 1;
        }
        assert!(families.iter().all(|n| *n > 100), "{families:?}");
    }

    #[track_caller]
    fn same(system: System, text: &str, fast_expected: bool) {
        let fast = decode(system, text);
        assert_eq!(fast.is_some(), fast_expected, "fast path on {text}");
        if let Some(e) = fast {
            assert_eq!(Ok(e), serde(system, text), "{text}");
        }
    }

    #[test]
    fn what_the_fast_path_takes_and_leaves() {
        let hire = r#"{"event_id":"e1","event_type":"HIRE","occurred_at":"2026-11-03T09:00:00Z","effective_at":"2026-11-03T09:00:00+01:00","source_system":"workday","worker_id":"w1","worker_type":"EMPLOYEE"}"#;
        same(System::Hr, hire, true);
        // Whitespace, nulls, unknown fields of any scalar kind, non-ASCII text.
        let spaced = hire
            .replace(',', " ,\n\t")
            .replace("\":", "\"\r: ")
            .replace(
                '}',
                r#","title":null,"x":-0.5e+3,"y":0,"z":true,"n":"Zoë"} "#,
            );
        same(System::Hr, &spaced, true);
        // Left to serde: escapes, nested values, numbers in named fields,
        // duplicates, missing fields, unknown symbols, bad times, trailing text.
        for (from, to) in [
            ("\"w1\"", "\"w\\u0031\""),
            ("\"w1\"", "\"w\\\"1\""),
            ("\"worker_id\"", "\"worker\\u005fid\""),
            ("}", ",\"x\":[1]}"),
            ("}", ",\"x\":{}}"),
            ("\"w1\"", "1"),
            ("\"2026-11-03T09:00:00Z\"", "1700000000000"),
            ("\"w1\"", "\"w1\",\"worker_id\":\"w2\""),
            (",\"worker_id\":\"w1\"", ""),
            ("\"HIRE\"", "\"FIRE\""),
            ("\"2026-11-03T09:00:00Z\"", "\"soon\""),
            ("}", "}x"),
            ("}", ",}"),
            ("\"w1\"", "\"w\u{1}1\""),
            ("\"w1\"", "null"),
            ("}", ",\"x\":01}"),
            ("}", ",\"x\":1.}"),
            ("}", ",\"x\":nul}"),
        ] {
            assert!(hire.contains(from));
            same(System::Hr, &hire.replacen(from, to, 1), false);
        }
        let group = r#"{"event_id":"d1","event_type":"GROUP_ADDED","occurred_at":"2026-11-03T09:00:00Z","directory":"entra","account_id":"a1","account_kind":"HUMAN","privileged":null,"enabled":false,"group":"admins"}"#;
        same(System::Directory, group, true);
        same(System::Directory, &group.replace("null", "true"), true);
        same(System::Directory, &group.replace("null", "\"yes\""), false);
        same(System::App, "{}", false);
    }

    #[test]
    fn stop_finds_the_first_quote_backslash_or_control_character() {
        let mut rng = Rng::new(5);
        let alphabet = [
            b'a', b'"', b'\\', 0, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xc3, 0xff, b'Z',
        ];
        for _ in 0..20_000 {
            let len = rng.below(40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.below(8) {
                    0 => alphabet[rng.below(alphabet.len() as u64) as usize],
                    _ => b'a' + rng.below(26) as u8,
                })
                .collect();
            let naive = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            assert_eq!(stop(&bytes), naive, "{bytes:?}");
        }
    }

    /// Random edits of generated messages: whatever the fast path accepts,
    /// serde accepts as the same event.
    #[test]
    fn mutated_messages_decode_alike_on_both_paths() {
        const PIECES: &[&str] = &[
            "\"",
            "\\",
            ",",
            ":",
            "{",
            "}",
            "[",
            "]",
            " ",
            "\n",
            "null",
            "true",
            "false",
            "0",
            "-1.5e3",
            "01",
            "\"x\":1,",
            "\"group\":\"g\",",
            "é",
            "\u{1}",
            "\"\"",
            "\"worker_id\":null,",
            "\"privileged\":true,",
            "\"event_id\":\"dup\",",
        ];
        let messages = messages();
        let mut rng = Rng::new(11);
        let (mut fast, mut slow) = (0, 0);
        for round in 0..20_000 {
            let (system, text) = &messages[rng.below(messages.len() as u64) as usize];
            let mut text = text.clone();
            for _ in 0..=rng.below(2) {
                let mut at = rng.below(text.len() as u64 + 1) as usize;
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.below(3) {
                    0 => {
                        let mut end = (at + 1 + rng.below(12) as usize).min(text.len());
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        text.replace_range(at..end, "");
                    }
                    _ => text.insert_str(at, PIECES[rng.below(PIECES.len() as u64) as usize]),
                }
            }
            match decode(*system, &text) {
                Some(e) => {
                    fast += 1;
                    assert_eq!(Ok(e), serde(*system, &text), "round {round}: {text}");
                }
                None => slow += 1,
            }
        }
        // Both paths are exercised.
        assert!(fast > 2_000 && slow > 2_000, "fast {fast}, slow {slow}");
    }
}
