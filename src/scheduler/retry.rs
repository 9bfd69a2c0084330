//! How often and how long to wait before retrying a remote call that failed transiently
//! (throttling, 5xx, timeouts): capped exponential backoff with full jitter.
//!
//! This file only computes delays; deciding whether a failure is retryable belongs to the
//! provider's classification, and sleeping belongs to the scheduler.

use std::time::Duration;

use rand::Rng;

/// The retry budget of one call.
///
/// `attempts` counts every try, the first one included: with 4, a call is made once and retried
/// at most 3 times. After the try numbered `attempt` (from 0) fails, the caller sleeps
/// [`RetryPolicy::backoff`]`(attempt)` before the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Whether another try is allowed after `tries_made` tries have failed.
    pub fn allows_another(&self, tries_made: u32) -> bool {
        tries_made < self.attempts
    }

    /// The longest delay after failed try `attempt`: `min(cap, base * 2^attempt)`, without
    /// overflowing however large `attempt` is.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay after failed try `attempt`: uniform in `0..=ceiling(attempt)` ("full jitter"),
    /// so that callers throttled together do not retry together.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn default_is_four_tries_500ms_base_20s_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempts, 4);
        assert_eq!(p.base, Duration::from_millis(500));
        assert_eq!(p.cap, Duration::from_secs(20));
    }

    #[test]
    fn attempts_count_the_first_try() {
        let p = RetryPolicy::default();
        let tries = (1..).take_while(|&made| p.allows_another(made)).count() + 1;
        assert_eq!(tries, 4);
        assert!(p.allows_another(0));
        assert!(p.allows_another(3));
        assert!(!p.allows_another(4));
        let once = RetryPolicy { attempts: 1, ..p };
        assert!(!once.allows_another(1), "one attempt means no retry");
    }

    #[test]
    fn ceilings_double_then_stay_at_the_cap() {
        let p = RetryPolicy::default();
        let ms: Vec<u128> = (0..8).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(
            ms,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 20_000, 20_000]
        );
        assert!((0..200).all(|a| p.ceiling(a) <= p.ceiling(a + 1)));
        assert_eq!(p.ceiling(u32::MAX), p.cap);
        let huge = RetryPolicy {
            attempts: 4,
            base: Duration::MAX,
            cap: Duration::MAX,
        };
        assert_eq!(huge.ceiling(70), Duration::MAX);
    }

    #[test]
    fn backoff_is_within_bounds_and_actually_jittered() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..10 {
            let delays: Vec<Duration> = (0..500).map(|_| p.backoff(attempt, &mut rng)).collect();
            let ceiling = p.ceiling(attempt);
            assert!(delays.iter().all(|&d| d <= ceiling));
            // Full jitter spreads over the whole range, not just near the ceiling.
            assert!(delays.iter().any(|&d| d < ceiling / 4), "attempt {attempt}");
            assert!(
                delays.iter().any(|&d| d > ceiling * 3 / 4),
                "attempt {attempt}"
            );
            let mean = delays.iter().sum::<Duration>() / 500;
            assert!(
                mean > ceiling * 2 / 5 && mean < ceiling * 3 / 5,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn zero_base_means_no_wait() {
        let p = RetryPolicy {
            attempts: 3,
            base: Duration::ZERO,
            cap: Duration::from_secs(1),
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(p.backoff(5, &mut rng), Duration::ZERO);
    }
}
