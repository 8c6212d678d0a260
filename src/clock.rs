//! Time, injected. Every signature window, ttl and deadline reads the clock through [`Clock`], so
//! tests can pin "now" instead of sleeping.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant, UTC.
    fn now(&self) -> DateTime<Utc>;

    /// The current Unix time in whole seconds.
    fn unix(&self) -> i64 {
        self.now().timestamp()
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved; for tests.
#[derive(Debug)]
pub struct FixedClock {
    millis: AtomicI64,
}

impl FixedClock {
    /// A clock fixed at `unix_millis`.
    pub fn at_millis(unix_millis: i64) -> Arc<Self> {
        Arc::new(Self {
            millis: AtomicI64::new(unix_millis),
        })
    }

    /// Moves the clock by `millis` (may be negative).
    pub fn advance_millis(&self, millis: i64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.millis.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

/// The shared clock handle passed around the application.
pub type SharedClock = Arc<dyn Clock>;

/// ONDC's context timestamp: `YYYY-MM-DDTHH:MM:SS.sssZ`, UTC, exactly three fraction digits.
/// (chrono's `to_rfc3339()` prints `+00:00`, which conformance checks reject.)
pub fn ondc_timestamp(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // A year of other than four digits, a leap second: as chrono writes them.
        return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    // Written digit by digit into one allocation of its size (it is stamped on every message,
    // and chrono's formatter reads its pattern and grows the string on each call).
    let mut out = String::with_capacity(24);
    let mut digits = |n: u32, width: u32, then: Option<char>| {
        for i in (0..width).rev() {
            let d = (n / 10u32.pow(i)) % 10;
            out.push(char::from(b'0' + d as u8));
        }
        if let Some(c) = then {
            out.push(c);
        }
    };
    digits(year as u32, 4, Some('-'));
    digits(t.month(), 2, Some('-'));
    digits(t.day(), 2, Some('T'));
    digits(t.hour(), 2, Some(':'));
    digits(t.minute(), 2, Some(':'));
    digits(t.second(), 2, Some('.'));
    digits(nanos / 1_000_000, 3, Some('Z'));
    out
}

/// Parses an RFC 3339 timestamp as ONDC peers send them.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_three_fraction_digits_and_z() {
        let t = DateTime::from_timestamp_millis(1_641_287_875_971).unwrap();
        assert_eq!(ondc_timestamp(t), "2022-01-04T09:17:55.971Z");
        let whole = DateTime::from_timestamp_millis(1_641_287_875_000).unwrap();
        assert_eq!(ondc_timestamp(whole), "2022-01-04T09:17:55.000Z");
        assert_eq!(parse_timestamp("2022-01-04T09:17:55.971Z"), Some(t));
    }

    #[test]
    fn timestamp_writes_what_chrono_writes() {
        let chrono_way = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut ms: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
        while ms < 253_402_300_800_000 {
            // to 9999-12-31, in steps that vary every field
            let t = DateTime::from_timestamp_millis(ms).unwrap();
            assert_eq!(ondc_timestamp(t), chrono_way(t), "{ms}");
            ms += 7_777_777_777_777 / 1000 + 123_457;
        }
        for t in [
            DateTime::from_timestamp_millis(-62_167_219_200_001).unwrap(), // year -1
            DateTime::from_timestamp_millis(253_402_300_800_000).unwrap(), // year 10000
            DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(), // a leap second
        ] {
            assert_eq!(ondc_timestamp(t), chrono_way(t));
        }
        assert_eq!(
            ondc_timestamp(DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap()),
            "2016-12-31T23:59:60.500Z"
        );
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::at_millis(1_000_000);
        assert_eq!(c.unix(), 1000);
        c.advance_millis(5_000);
        assert_eq!(c.unix(), 1005);
    }
}
