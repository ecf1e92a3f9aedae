//! [`LastWriterWinsLattice`] and its [`Timestamp`].

use super::Lattice;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A value with a timestamp; merging keeps the one with the later timestamp.
///
/// Equal timestamps with different values are resolved by keeping the
/// larger value (for byte strings: in byte order), as the essa store does,
/// so every replica ends up with the same value.
///
/// ```
/// use essa_api::lattice::{Lattice, LastWriterWinsLattice};
/// use essa_api::lattice::last_writer_wins::Timestamp;
///
/// let mut value = LastWriterWinsLattice::from_pair(Timestamp::from_unix(10, 0), "old");
/// value.merge(&LastWriterWinsLattice::from_pair(Timestamp::from_unix(20, 0), "new"));
/// assert_eq!(value.reveal().value(), &"new");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LastWriterWinsLattice<T> {
    element: TimestampValuePair<T>,
}

impl<T> LastWriterWinsLattice<T> {
    /// A lattice holding the given timestamped value.
    pub fn new(element: TimestampValuePair<T>) -> Self {
        Self { element }
    }

    /// A lattice holding `value`, timestamped with the current time.
    pub fn new_now(value: T) -> Self {
        Self::from_pair(Timestamp::now(), value)
    }

    /// A lattice holding `value` with the given timestamp.
    pub fn from_pair(timestamp: Timestamp, value: T) -> Self {
        Self::new(TimestampValuePair::new(timestamp, value))
    }

    /// The timestamped value.
    pub fn element(&self) -> &TimestampValuePair<T> {
        &self.element
    }
}

impl<T: Clone + PartialOrd> Lattice for LastWriterWinsLattice<T> {
    type Element = TimestampValuePair<T>;

    fn reveal(&self) -> &TimestampValuePair<T> {
        &self.element
    }

    fn reveal_mut(&mut self) -> &mut TimestampValuePair<T> {
        &mut self.element
    }

    fn into_revealed(self) -> TimestampValuePair<T> {
        self.element
    }

    fn merge_element(&mut self, other: &TimestampValuePair<T>) {
        let newer = other.timestamp > self.element.timestamp
            || (other.timestamp == self.element.timestamp && other.value > self.element.value);
        if newer {
            self.element = other.clone();
        }
    }

    fn assign(&mut self, element: TimestampValuePair<T>) {
        self.element = element;
    }
}

/// A value and its [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampValuePair<T> {
    timestamp: Timestamp,
    value: T,
}

impl<T> TimestampValuePair<T> {
    /// A pair of the given timestamp and value.
    pub fn new(timestamp: Timestamp, value: T) -> Self {
        Self { timestamp, value }
    }

    /// The timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, taking ownership.
    pub fn into_value(self) -> T {
        self.value
    }
}

const NANOS_PER_SEC: u32 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// A UTC instant with nanosecond precision: when a value was written.
///
/// Encoded (serde) as RFC 3339 text exactly as chrono encodes a
/// `DateTime<Utc>`, which is what essa-rs stored:
/// `YYYY-MM-DDTHH:MM:SS`, then a fraction of 3, 6 or 9 digits (the
/// shortest that is exact; none for a whole second), then `Z`. Decoding
/// accepts any RFC 3339 text (`T`, `t` or a space; any number of fraction
/// digits, truncated to nanoseconds; `Z`, `z` or a `±HH:MM` offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

impl Timestamp {
    /// The current time, from the system (WASI realtime) clock.
    pub fn now() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => Self::from_unix(since.as_secs() as i64, since.subsec_nanos()),
            Err(before) => {
                let before = before.duration();
                let (secs, nanos) = (before.as_secs() as i64, before.subsec_nanos());
                if nanos == 0 {
                    Self::from_unix(-secs, 0)
                } else {
                    Self::from_unix(-secs - 1, NANOS_PER_SEC - nanos)
                }
            }
        }
    }

    /// The instant `secs` seconds plus `nanos` nanoseconds after
    /// 1970-01-01T00:00:00Z (`nanos` may exceed a second; it carries over).
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        Self {
            secs: secs + i64::from(nanos / NANOS_PER_SEC),
            nanos: nanos % NANOS_PER_SEC,
        }
    }

    /// Whole seconds since 1970-01-01T00:00:00Z (negative before it).
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// The nanoseconds after [`unix_seconds`](Self::unix_seconds), `0..1e9`.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, as chrono writes it (see [`Timestamp`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(SECS_PER_DAY);
        let secs_of_day = self.secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        if (0..=9999).contains(&year) {
            write!(f, "{:04}", year)?;
        } else {
            // chrono's form for years outside 0..=9999: a sign and 4+ digits
            write!(f, "{:+05}", year)?;
        }
        write!(
            f,
            "-{:02}-{:02}T{:02}:{:02}:{:02}",
            month,
            day,
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60
        )?;
        let nanos = self.nanos;
        if nanos == 0 {
            // a whole second: no fraction
        } else if nanos % 1_000_000 == 0 {
            write!(f, ".{:03}", nanos / 1_000_000)?;
        } else if nanos % 1_000 == 0 {
            write!(f, ".{:06}", nanos / 1_000)?;
        } else {
            write!(f, ".{:09}", nanos)?;
        }
        f.write_str("Z")
    }
}

/// Text that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseTimestampError {
    text: String,
    reason: &'static str,
}

impl fmt::Display for ParseTimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid RFC 3339 timestamp {:?}: {}", self.text, self.reason)
    }
}

impl std::error::Error for ParseTimestampError {}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(text: &str) -> Result<Self, ParseTimestampError> {
        parse_rfc3339(text.as_bytes()).map_err(|reason| ParseTimestampError {
            text: text.chars().take(64).collect(),
            reason,
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                text.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

/// Parses `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|±HH:MM)`.
fn parse_rfc3339(s: &[u8]) -> Result<Timestamp, &'static str> {
    const SHAPE: &str = "expected YYYY-MM-DDTHH:MM:SS[.fraction] then Z or +HH:MM";
    let mut pos = 0;
    let mut number = |len: usize, after: Option<&[u8]>| -> Result<i64, &'static str> {
        let digits = s.get(pos..pos + len).ok_or(SHAPE)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(SHAPE);
        }
        pos += len;
        if let Some(separators) = after {
            match s.get(pos) {
                Some(c) if separators.contains(c) => pos += 1,
                _ => return Err(SHAPE),
            }
        }
        Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let year = number(4, Some(b"-"))?;
    let month = number(2, Some(b"-"))?;
    let day = number(2, Some(b"Tt "))?;
    let hour = number(2, Some(b":"))?;
    let minute = number(2, Some(b":"))?;
    let second = number(2, None)?;

    let mut nanos: u32 = 0;
    if s.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while s.get(pos).map_or(false, u8::is_ascii_digit) {
            if pos - start < 9 {
                nanos = nanos * 10 + u32::from(s[pos] - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return Err(SHAPE);
        }
        for _ in (pos - start)..9 {
            nanos *= 10;
        }
    }

    let offset = match s.get(pos) {
        Some(b'Z') | Some(b'z') if pos + 1 == s.len() => 0,
        Some(&sign) if (sign == b'+' || sign == b'-') && pos + 6 == s.len() => {
            let digits = &s[pos + 1..];
            if digits[2] != b':'
                || !digits[..2].iter().chain(&digits[3..]).all(u8::is_ascii_digit)
            {
                return Err(SHAPE);
            }
            let hours = i64::from((digits[0] - b'0') * 10 + (digits[1] - b'0'));
            let minutes = i64::from((digits[3] - b'0') * 10 + (digits[4] - b'0'));
            if hours > 23 || minutes > 59 {
                return Err("UTC offset out of range");
            }
            let offset = hours * 3600 + minutes * 60;
            if sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return Err(SHAPE),
    };

    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range for the month");
    }
    // 60 is a leap second: it counts as the first instant of the next minute
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time of day out of range");
    }
    let secs = days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60
        + second
        - offset;
    Ok(Timestamp { secs, nanos })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Calendar arithmetic after Howard Hinnant's "chrono-compatible low-level
// date algorithms" (days since 1970-01-01 <-> proleptic Gregorian date).

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
