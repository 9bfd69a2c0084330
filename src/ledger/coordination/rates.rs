//! A model's requests per minute across machines: one item per model holding the next free
//! send time (`next_us`, unix microseconds). Each request takes the next slot with one
//! `UpdateItem` (`SET next_us = next_us + :interval` on condition `next_us >= :now`, returning
//! the old value: the slot) and waits for it; when the model was idle (`next_us` in the past)
//! a conditional `SET next_us = :now + :interval` starts the schedule again from now. Slots are
//! therefore at least one interval apart whichever machine takes them, with no burst after an
//! idle spell, at one write per request. The interval is `60 s / (rpm × PACE)`: paced a little
//! under the quota so that requests sent a little late (a busy machine, a slow network) still
//! keep any 60 s window within it.

use std::time::Duration;

use aws_sdk_dynamodb::types::ReturnValue;

use super::{CoordError, Coordination, KEEP_SECS, condition_failed, detail, n, number};
use crate::ledger::unix_now;

/// The share of the quota the shared schedule is paced at.
pub const PACE: f64 = 0.97;

impl Coordination {
    /// Takes the next send slot of `model`, limited to `rpm` across machines, and says how long
    /// to wait for it.
    pub async fn rate_slot(&self, model: &str, rpm: u32) -> Result<Duration, CoordError> {
        let interval = interval_us(rpm);
        let pk = format!("rate#{model}");
        for _ in 0..8 {
            let now = now_us();
            let next = self
                .table()
                .update(&pk)
                .update_expression("SET next_us = next_us + :i")
                .condition_expression("next_us >= :now")
                .expression_attribute_values(":i", n(interval))
                .expression_attribute_values(":now", n(now))
                .return_values(ReturnValue::UpdatedOld)
                .send()
                .await;
            match next {
                Ok(out) => {
                    let slot = out
                        .attributes()
                        .and_then(|a| number(a.get("next_us")?))
                        .unwrap_or(now);
                    return Ok(Duration::from_micros((slot - now_us()).max(0) as u64));
                }
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(self.err(detail(e))),
            }
            // Idle (or new): the schedule starts again now.
            let restart = self
                .table()
                .update(&pk)
                .update_expression("SET next_us = :next, expires_at = :exp")
                .condition_expression("attribute_not_exists(next_us) OR next_us < :now")
                .expression_attribute_values(":next", n(now + interval))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":exp", n(unix_now() + KEEP_SECS))
                .send()
                .await;
            match restart {
                Ok(_) => return Ok(Duration::ZERO),
                Err(e) if condition_failed(&e) => {} // another machine restarted it first
                Err(e) => return Err(self.err(detail(e))),
            }
        }
        Err(self.err(format!("rate#{model}: no slot after 8 contended tries")))
    }

    /// Logs a failure of the shared rate limit (once per run).
    pub fn rate_failed(&self, e: &CoordError) {
        self.warn_rates_once(e);
    }
}

/// Microseconds between two requests to a model limited to `rpm` (paced at [`PACE`]).
pub fn interval_us(rpm: u32) -> i64 {
    (60_000_000.0 / (f64::from(rpm.max(1)) * PACE)).ceil() as i64
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_keeps_any_minute_within_the_quota() {
        for rpm in [1, 6, 60, 600, 1_000, 6_000, 60_000] {
            let per_minute = 60_000_000.0 / interval_us(rpm) as f64;
            assert!(per_minute <= f64::from(rpm), "{rpm}: {per_minute}");
            assert!(per_minute >= f64::from(rpm) * 0.96, "{rpm}: {per_minute}");
        }
        assert_eq!(interval_us(600), 103_093);
    }
}
