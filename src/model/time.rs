//! Event time: UTC milliseconds since the Unix epoch, parsed from and
//! printed as RFC 3339 strings.
//!
//! The engine never reads the wall clock; every `Ts` comes from an event, a
//! timer or the caller. Parsing is hand-written because it sits on the
//! decode hot path and the accepted grammar is small:
//! `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in event time, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ts(pub i64);

/// An optional time in eight bytes where `Option<Ts>` takes sixteen, for
/// the state held per worker. `Ts::MIN` stands for none: the beginning of
/// time, which no event is stamped with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OptTs(Ts);

impl OptTs {
    pub const NONE: OptTs = OptTs(Ts::MIN);

    pub fn get(self) -> Option<Ts> {
        (self != OptTs::NONE).then_some(self.0)
    }
}

impl Default for OptTs {
    fn default() -> OptTs {
        OptTs::NONE
    }
}

impl From<Ts> for OptTs {
    fn from(t: Ts) -> OptTs {
        OptTs(t)
    }
}

impl From<Option<Ts>> for OptTs {
    fn from(t: Option<Ts>) -> OptTs {
        t.map_or(OptTs::NONE, OptTs)
    }
}

impl fmt::Debug for OptTs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

impl Ts {
    pub const MIN: Ts = Ts(i64::MIN);
    pub const MAX: Ts = Ts(i64::MAX);

    pub fn millis(self) -> i64 {
        self.0
    }

    /// The wall clock now. For the edges (live idle advance, gauges, the
    /// demo and the load harness); the engine itself never reads a clock.
    pub fn wall_clock() -> Ts {
        Ts(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64))
    }

    /// Adds a duration in milliseconds, saturating at the ends of time.
    pub fn plus(self, ms: i64) -> Ts {
        Ts(self.0.saturating_add(ms))
    }

    /// Parses an RFC 3339 timestamp; the offset is applied, so the result is UTC.
    pub fn parse(s: &str) -> Result<Ts, TimeError> {
        parse_rfc3339(s.as_bytes()).ok_or_else(|| TimeError(s.chars().take(64).collect()))
    }
}

/// A string that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 timestamp (expected e.g. 2026-11-03T09:00:00Z)")]
pub struct TimeError(pub String);

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn parse_rfc3339(b: &[u8]) -> Option<Ts> {
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; it is folded into the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let h = digits(b, i + 1, 2)?;
            let m = digits(b, i + 4, 2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let v = h * 60 + m;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(Ts(secs * 1_000 + millis))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Ts {
    /// RFC 3339 in UTC written into `buf`, for years 0 to 9999 (`None`
    /// outside them): findings carry several timestamps each, and through
    /// the formatting machinery they took a quarter of a finding's encoding.
    fn rfc3339<'a>(&self, buf: &'a mut [u8; 24]) -> Option<&'a str> {
        let ms = self.0.rem_euclid(1_000);
        let secs = self.0.div_euclid(1_000);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        if !(0..=9_999).contains(&y) {
            return None;
        }
        let sod = secs.rem_euclid(86_400);
        // Every value is below 10,000 and non-negative here.
        let mut put = |at: usize, v: i64, digits: usize| {
            let mut v = v as u32;
            for i in (at..at + digits).rev() {
                buf[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, y, 4);
        put(5, mo, 2);
        put(8, d, 2);
        put(11, sod / 3_600, 2);
        put(14, sod % 3_600 / 60, 2);
        put(17, sod % 60, 2);
        let mut len = 19;
        if ms != 0 {
            put(20, ms, 3);
            buf[19] = b'.';
            len = 23;
        }
        for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
            buf[i] = c;
        }
        buf[len] = b'Z';
        std::str::from_utf8(&buf[..=len]).ok()
    }

    /// The general form, for any year.
    fn write_rfc3339_slow(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let ms = self.0.rem_euclid(1_000);
        let secs = self.0.div_euclid(1_000);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            y,
            mo,
            d,
            sod / 3_600,
            sod % 3_600 / 60,
            sod % 60
        )?;
        if ms != 0 {
            write!(f, ".{ms:03}")?;
        }
        f.write_str("Z")
    }
}

impl fmt::Display for Ts {
    /// RFC 3339 in UTC; milliseconds are printed only when non-zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rfc3339(&mut [0; 24]) {
            Some(text) => f.write_str(text),
            None => self.write_rfc3339_slow(f),
        }
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339(&mut [0; 24]) {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(self),
        }
    }
}

std::thread_local! {
    /// Set while an Avro record is read: integer milliseconds are a time.
    static MILLIS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with integer milliseconds accepted as [`Ts`] (Avro's
/// `timestamp-millis`). Outside it, a time is an RFC 3339 string only, as
/// the contract says of JSON.
pub fn reading_millis<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            MILLIS.with(|m| m.set(self.0));
        }
    }
    let _reset = Reset(MILLIS.with(|m| m.replace(true)));
    f()
}

impl<'de> Deserialize<'de> for Ts {
    /// Accepts an RFC 3339 string, and integer milliseconds only inside
    /// [`reading_millis`] (Avro `timestamp-millis`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ts, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ts, E> {
                Ts::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ts, E> {
                if !MILLIS.with(|m| m.get()) {
                    return Err(E::invalid_type(de::Unexpected::Signed(v), &self));
                }
                Ok(Ts(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ts, E> {
                if !MILLIS.with(|m| m.get()) {
                    return Err(E::invalid_type(de::Unexpected::Unsigned(v), &self));
                }
                i64::try_from(v)
                    .map(Ts)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Option<&str>) {
        let got = Ts::parse(input).ok().map(|t| t.to_string());
        assert_eq!(got.as_deref(), expect, "{input}");
    }

    #[test]
    fn json_times_are_rfc3339_strings_only() {
        let t: Ts = serde_json::from_str("\"2026-11-03T09:00:00Z\"").unwrap();
        assert_eq!(t.to_string(), "2026-11-03T09:00:00Z");
        let e = serde_json::from_str::<Ts>("1793696400000").unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        // Avro's timestamp-millis, inside reading_millis only.
        let t: Ts = reading_millis(|| serde_json::from_str("1793696400000")).unwrap();
        assert_eq!(t, Ts(1_793_696_400_000));
        assert!(serde_json::from_str::<Ts>("1793696400000").is_err());
    }

    #[test]
    fn fast_printing_agrees_with_the_general_form() {
        let slow = |t: Ts| {
            let mut s = String::new();
            t.write_rfc3339_slow(&mut s).expect("writes to a string");
            s
        };
        // Deterministic spread over years 0-9999 and around the edges.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let year0 = -62_167_219_200_000i64; // 0000-01-01T00:00:00Z
        let year10000 = 253_402_300_800_000i64; // 10000-01-01T00:00:00Z
        let mut samples = vec![0, 1, 999, 1_000, year0, year10000 - 1];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(year0 + (x % (year10000 - year0) as u64) as i64);
        }
        for ms in samples {
            let t = Ts(ms);
            assert_eq!(t.to_string(), slow(t), "{ms}");
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", slow(t))
            );
        }
        // Outside years 0-9999 the general form prints.
        for ms in [year0 - 1, year10000] {
            assert!(Ts(ms).rfc3339(&mut [0; 24]).is_none());
            assert_eq!(Ts(ms).to_string(), slow(Ts(ms)));
        }
    }

    #[test]
    fn parse_and_print() {
        check("2026-11-03T09:00:00Z", Some("2026-11-03T09:00:00Z"));
        check("2026-11-03T09:00:00.5Z", Some("2026-11-03T09:00:00.500Z"));
        check(
            "2026-11-03T09:00:00.123456Z",
            Some("2026-11-03T09:00:00.123Z"),
        );
        check("2026-11-03T10:30:00+01:30", Some("2026-11-03T09:00:00Z"));
        check("2026-11-03T01:00:00-08:00", Some("2026-11-03T09:00:00Z"));
        check("1970-01-01T00:00:00Z", Some("1970-01-01T00:00:00Z"));
        check("1969-12-31T23:59:59.999Z", Some("1969-12-31T23:59:59.999Z"));
        check("2024-02-29T00:00:00Z", Some("2024-02-29T00:00:00Z"));
        check("2026-02-29T00:00:00Z", None);
        check("2026-13-01T00:00:00Z", None);
        check("2026-11-03 09:00:00", None);
        check("2026-11-03T09:00:00", None);
        check("2026-11-03T09:00:00.Z", None);
        check("2026-11-03T09:00:00Zjunk", None);
        check("yesterday", None);
    }

    #[test]
    fn epoch_arithmetic() {
        assert_eq!(Ts::parse("1970-01-02T00:00:00Z").unwrap(), Ts(MS_PER_DAY));
        for days in [-800_000i64, -1, 0, 1, 59, 365, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
