//! The money of a run that stopped part-way, beyond its rows: calls billed for steps of images
//! that never finished (so never got rows), and calls in flight when it stopped, which may or
//! may not have been billed. Without this a killed run's report under-states what it cost, and
//! the rerun shows those steps as free cache hits.

use std::fmt;

use serde::Serialize;

use super::printable;
use crate::ledger::{CallRecord, RunMoney};
use crate::money::Usd;

/// What a run's rows do not show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unfinished {
    /// Everything the run was billed, rows or not.
    #[serde(serialize_with = "dollars")]
    pub billed: Usd,
    /// Billed for steps whose image has no row.
    #[serde(serialize_with = "dollars")]
    pub billed_outside_rows: Usd,
    pub billed_calls: Vec<Call>,
    /// Held for calls in flight when the run stopped: billed or not, AWS knows.
    #[serde(serialize_with = "dollars")]
    pub possibly_billed: Usd,
    pub in_flight_calls: Vec<Call>,
}

/// One call, for the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    pub image: String,
    /// 1-based, as in the report; `None` for calls recorded by an older retouch.
    pub step: Option<usize>,
    pub model: String,
    #[serde(serialize_with = "dollars")]
    pub cost: Usd,
}

impl Unfinished {
    /// `None` when the rows tell the whole story.
    pub fn from_money(money: RunMoney) -> Option<Unfinished> {
        if money.outside_rows.is_empty() && money.held.is_empty() {
            return None;
        }
        let calls = |v: Vec<CallRecord>| -> Vec<Call> {
            v.into_iter()
                .map(|c| Call {
                    image: c.image,
                    step: c.step.map(|s| s + 1),
                    model: c.model,
                    cost: c.cost,
                })
                .collect()
        };
        let possibly_billed = money.possibly_billed();
        Some(Unfinished {
            billed: money.billed,
            billed_outside_rows: money.outside_rows.iter().map(|c| c.cost).sum(),
            billed_calls: calls(money.outside_rows),
            possibly_billed,
            in_flight_calls: calls(money.held),
        })
    }
}

impl fmt::Display for Unfinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "\nmoney the rows do not show (the run stopped part-way):"
        )?;
        writeln!(f, "  billed in all: ${}", self.billed)?;
        if !self.billed_calls.is_empty() {
            writeln!(
                f,
                "  billed for steps of images that never finished: ${} ({} calls)",
                self.billed_outside_rows,
                self.billed_calls.len()
            )?;
            list(f, &self.billed_calls)?;
        }
        if !self.in_flight_calls.is_empty() {
            writeln!(
                f,
                "  possibly billed: up to ${} more ({} calls in flight when it stopped)",
                self.possibly_billed,
                self.in_flight_calls.len()
            )?;
            list(f, &self.in_flight_calls)?;
        }
        Ok(())
    }
}

fn list(f: &mut fmt::Formatter<'_>, calls: &[Call]) -> fmt::Result {
    for c in calls.iter().take(20) {
        let step = c.step.map_or_else(|| "?".into(), |s| s.to_string());
        writeln!(
            f,
            "    {} step {step} {} ${}",
            printable(&c.image),
            c.model,
            c.cost
        )?;
    }
    if calls.len() > 20 {
        writeln!(f, "    … and {} more", calls.len() - 20)?;
    }
    Ok(())
}

fn dollars<S: serde::Serializer>(v: &Usd, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_whose_rows_tell_everything_has_nothing_to_add() {
        assert_eq!(Unfinished::from_money(RunMoney::default()), None);
    }

    #[test]
    fn billed_and_held_calls_are_listed_with_one_based_steps() {
        let call = |step, cost| CallRecord {
            image: "a.jpg".into(),
            step: Some(step),
            model: "m".into(),
            cost: Usd(cost),
        };
        let money = RunMoney {
            billed: Usd(100_000),
            outside_rows: vec![call(0, 30_000)],
            held: vec![call(1, 70_000)],
        };
        let u = Unfinished::from_money(money).unwrap();
        let text = u.to_string();
        assert!(
            text.contains("billed for steps of images that never finished: $0.030000 (1 calls)"),
            "{text}"
        );
        assert!(text.contains("a.jpg step 1 m $0.030000"), "{text}");
        assert!(text.contains("up to $0.070000 more"), "{text}");
        assert!(text.contains("a.jpg step 2 m $0.070000"), "{text}");
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["possibly_billed"], "0.070000");
    }
}
