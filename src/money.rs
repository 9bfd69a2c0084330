//! Exact money: US dollars as integer micro-dollars, so sums never drift.
//!
//! Every price, reservation, cost and budget is a [`Usd`]. Floating point appears only at the
//! edges: parsing a manifest or catalog value and printing a report.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub};

/// An amount of US dollars, stored as whole micro-dollars (1e-6 USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(pub i64);

impl Usd {
    pub const ZERO: Usd = Usd(0);
    const MICROS: f64 = 1_000_000.0;

    /// Converts a dollar amount as written by a person (`0.04`) to micro-dollars, rounding to the
    /// nearest micro-dollar. `None` for NaN, infinities and amounts too large to hold.
    pub fn from_dollars(dollars: f64) -> Option<Usd> {
        let micros = (dollars * Self::MICROS).round();
        (micros.is_finite() && micros.abs() < 9.0e15).then_some(Usd(micros as i64))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn as_dollars(self) -> f64 {
        self.0 as f64 / Self::MICROS
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// This amount times a count (images returned by a call, say).
    pub fn times(self, n: u32) -> Usd {
        Usd(self.0 * i64::from(n))
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0 + rhs.0)
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, rhs: Usd) {
        self.0 += rhs.0;
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, rhs: Usd) -> Usd {
        Usd(self.0 - rhs.0)
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

/// Six decimals (`0.040000`): exact, and at least the four the report promises.
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_round_trip_exactly() {
        let p = Usd::from_dollars(0.04).unwrap();
        assert_eq!(p, Usd(40_000));
        // 0.1 + 0.2 is exactly 0.3 here, unlike in f64.
        assert_eq!(
            Usd::from_dollars(0.1).unwrap() + Usd::from_dollars(0.2).unwrap(),
            Usd::from_dollars(0.3).unwrap()
        );
        assert_eq!(p.times(25).to_string(), "1.000000");
        assert_eq!(Usd(-1_500).to_string(), "-0.001500");
        assert_eq!(Usd::from_dollars(f64::NAN), None);
    }
}
