//! A calendar date (UTC, proleptic Gregorian) for model lifecycle checks.
//!
//! Owns parsing `YYYY-MM-DD`, ordering, and "today" from the system clock; nothing else. No time
//! zones and no arithmetic beyond what lifecycle comparisons need, so no date crate is pulled in.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A day: year, month (1–12), day of month (1–31). Ordered chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub y: i32,
    pub m: u8,
    pub d: u8,
}

/// Why a date string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date `{0}`: expected YYYY-MM-DD")]
pub struct DateError(pub String);

impl Date {
    /// A checked constructor: `None` for impossible days (2026-02-30).
    pub fn new(y: i32, m: u8, d: u8) -> Option<Date> {
        let ok = (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m);
        ok.then_some(Date { y, m, d })
    }

    /// Today in UTC according to the system clock.
    pub fn today_utc() -> Date {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Date::from_days_since_epoch((secs / 86_400) as i64)
    }

    /// Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    pub fn from_days_since_epoch(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
        Date { y, m, d }
    }
}

fn days_in_month(y: i32, m: u8) -> u8 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl FromStr for Date {
    type Err = DateError;

    fn from_str(s: &str) -> Result<Date, DateError> {
        let err = || DateError(s.to_string());
        let mut parts = s.trim().splitn(3, '-');
        let mut next = || parts.next().ok_or_else(err);
        let (y, m, d) = (next()?, next()?, next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(err());
        }
        let y = y.parse().map_err(|_| err())?;
        let m = m.parse().map_err(|_| err())?;
        let d = d.parse().map_err(|_| err())?;
        Date::new(y, m, d).ok_or_else(err)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.y, self.m, self.d)
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orders_and_prints() {
        let a: Date = "2026-09-30".parse().unwrap();
        let b: Date = "2026-11-22".parse().unwrap();
        assert_eq!(
            a,
            Date {
                y: 2026,
                m: 9,
                d: 30
            }
        );
        assert!(a < b);
        assert_eq!(b.to_string(), "2026-11-22");
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-01-01",
            "2026/01/01",
            "2026-1-01",
            "",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad}");
        }
        assert!("2028-02-29".parse::<Date>().is_ok());
    }

    #[test]
    fn days_since_epoch_to_civil() {
        assert_eq!(
            Date::from_days_since_epoch(0),
            Date {
                y: 1970,
                m: 1,
                d: 1
            }
        );
        // 2026-11-22 is day 20,779 since the epoch.
        assert_eq!(
            Date::from_days_since_epoch(20_779).to_string(),
            "2026-11-22"
        );
        assert_eq!(
            Date::from_days_since_epoch(11_016).to_string(),
            "2000-02-29"
        );
        assert!(Date::today_utc().y >= 2025);
    }
}
