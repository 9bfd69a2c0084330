//! Per-model request rate limits for remote calls, with governor, slowed down when a model
//! answers with throttling and recovered gradually after.
//!
//! Each model gets two GCRA limiters. The *base* limiter enforces the configured requests per
//! minute as a hard guarantee: no window of 60 s ever holds more than `rpm` request starts. With
//! burst `b` and period `T`, `n` consecutive starts span at least `(n - b) * T`; the base limiter
//! uses a period of `60 s / (rpm + 1 - b)` plus one nanosecond, so `rpm + 1` starts span more
//! than 60 s. (Governor's `Quota::per_minute(rpm)` has burst `rpm`, which lets up to `2 * rpm`
//! starts into the first minute.) The burst is 1 for slow limits; fast ones (period of 50 ms or
//! less) get a burst of 2, one slot of slack, because a waiter wakes up to a millisecond late
//! (Tokio's timer resolution) and with burst 1 every later slot would be pushed back by that
//! lateness: at 10 ms periods the pace falls ~10% short. With burst 2, lateness under one
//! period is absorbed, any window of `t` holds at most `t / T + 2` starts, and the slack costs
//! one slot a minute. The base limiter is never replaced, so the guarantee holds across every
//! adaptation. The *adaptive* limiter exists only while a model is slowed down after
//! throttling, at a lower rate (burst 1); a request waits for both.
//!
//! Time is Tokio's clock (`tokio::time::Instant`, and `tokio::time::sleep` for waiting), so tests
//! pause and auto-advance it. This module never calls a model; the scheduler reports outcomes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};
use tokio::time::Instant;

use crate::ledger::coordination::{Coordination, interval_us};

/// How a model's effective rate reacts to throttling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptation {
    /// On throttling, the effective rate is multiplied by this.
    pub decrease: f64,
    /// The effective rate never goes below this fraction of the configured rpm (nor below 1 rpm).
    pub floor_fraction: f64,
    /// Throttles reported within this long after a decrease belong to the same episode (calls
    /// that were already in flight) and do not decrease the rate again.
    pub debounce: Duration,
    /// No recovery until this long after the last throttle.
    pub cooldown: Duration,
    /// After the cooldown, this many successes in a row raise the rate by one step.
    pub recover_after: u32,
    /// One recovery step, as a fraction of the configured rpm.
    pub recover_step: f64,
}

impl Default for Adaptation {
    fn default() -> Adaptation {
        Adaptation {
            decrease: 0.5,
            floor_fraction: 0.1,
            debounce: Duration::from_secs(5),
            cooldown: Duration::from_secs(30),
            recover_after: 5,
            recover_step: 0.1,
        }
    }
}

/// Governor's view of Tokio's clock: time since the limits were created.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// The run's per-model rate limits, shared by every task.
///
/// Lifecycle: created once per run by the scheduler from the manifest's `rpm` map; each task
/// holds a clone (an `Arc`). A model's limiters are created on its first use and live until the
/// last clone is dropped at the end of the run. The std `Mutex`es guard only map lookups and the
/// adaptive state, never an `.await`.
#[derive(Clone)]
pub struct RateLimits {
    inner: Arc<Inner>,
}

struct Inner {
    configured: BTreeMap<String, u32>,
    default_rpm: Box<dyn Fn(&str) -> u32 + Send + Sync>,
    adaptation: Adaptation,
    clock: TokioClock,
    models: Mutex<HashMap<String, Arc<ModelLimit>>>,
    /// The schedule every machine shares (the coordination table), and the shard count whose
    /// fixed share paces a request when the table cannot be reached.
    shared: std::sync::OnceLock<(Coordination, u32)>,
}

/// One model's limiters. Lifecycle: owned by [`RateLimits`]'s map; a waiting `acquire` holds an
/// `Arc` clone for the length of its wait.
struct ModelLimit {
    rpm: u32,
    base: Limiter,
    adaptive: Mutex<Adaptive>,
}

struct Adaptive {
    effective: f64,
    /// `None` while running at the configured rpm. Replaced on each rate change; a waiting
    /// `acquire` holds the old one only until its next look.
    limiter: Option<Arc<Limiter>>,
    last_decrease: Option<Instant>,
    recover_from: Option<Instant>,
    streak: u32,
}

impl RateLimits {
    /// Limits from the manifest's `rpm` map (canonical model id → requests per minute), and
    /// `default_rpm` for models not in it. An rpm of 0 is treated as 1.
    pub fn new(
        rpm: &BTreeMap<String, u32>,
        default_rpm: impl Fn(&str) -> u32 + Send + Sync + 'static,
    ) -> RateLimits {
        RateLimits::with_adaptation(rpm, default_rpm, Adaptation::default())
    }

    /// As [`RateLimits::new`], with a non-default reaction to throttling.
    pub fn with_adaptation(
        rpm: &BTreeMap<String, u32>,
        default_rpm: impl Fn(&str) -> u32 + Send + Sync + 'static,
        adaptation: Adaptation,
    ) -> RateLimits {
        let inner = Inner {
            configured: rpm.clone(),
            default_rpm: Box::new(default_rpm),
            adaptation,
            clock: TokioClock {
                origin: Instant::now(),
            },
            models: Mutex::new(HashMap::new()),
            shared: std::sync::OnceLock::new(),
        };
        RateLimits {
            inner: Arc::new(inner),
        }
    }

    /// Every model's rpm is also a schedule shared with every machine through `coordination`
    /// (one slot per request, see `ledger::coordination`); when the table cannot be reached, a
    /// request waits its fixed 1/`shards` share of the interval instead. The limits given to
    /// [`RateLimits::new`] should then be the whole rpm (this process's own pace).
    pub fn share_through(&self, coordination: Coordination, shards: u32) {
        let _ = self.inner.shared.set((coordination, shards.max(1)));
    }

    /// Waits until a request to `model` may start.
    ///
    /// Cancel-safe: a local slot is taken only by a successful check, never by a wait, so
    /// dropping the future takes nothing from the base limit. (Cancelled between the two
    /// limiters, it may have used one slot of the slowed-down rate: that only errs on the slow
    /// side; a shared slot is taken before its wait, and a cancelled wait leaves it unused.)
    /// Waiters are not queued in order; each retries when the limiter says a slot may be free.
    pub async fn acquire(&self, model: &str) {
        let limit = self.limit(model);
        while let Some(adaptive) = limit.adaptive_limiter() {
            match adaptive.check() {
                Ok(()) => break,
                Err(not_until) => self.wait(not_until).await,
            }
        }
        while let Err(not_until) = limit.base.check() {
            self.wait(not_until).await;
        }
        if let Some((coordination, shards)) = self.inner.shared.get() {
            let wait = match coordination.rate_slot(model, limit.rpm).await {
                Ok(wait) => wait,
                Err(e) => {
                    coordination.rate_failed(&e);
                    let share = interval_us(limit.rpm) as u64 * u64::from(*shards);
                    Duration::from_micros(share)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The model answered with throttling: divide its effective rate (down to the floor), and
    /// hold off recovery for the cooldown.
    pub fn on_throttled(&self, model: &str) {
        let limit = self.limit(model);
        let a = &self.inner.adaptation;
        let now = Instant::now();
        let mut state = limit.adaptive();
        state.streak = 0;
        state.recover_from = Some(now + a.cooldown);
        if state.last_decrease.is_some_and(|at| now < at + a.debounce) {
            return;
        }
        state.last_decrease = Some(now);
        let floor = (f64::from(limit.rpm) * a.floor_fraction).clamp(1.0, f64::from(limit.rpm));
        let slower = (state.effective * a.decrease).max(floor);
        tracing::debug!(model, rpm = slower, "throttled: slowing down");
        self.set_rate(&mut state, limit.rpm, slower);
    }

    /// A call to the model succeeded: after the cooldown, each streak of successes brings the
    /// effective rate a step back toward the configured rpm, never above it.
    pub fn on_success(&self, model: &str) {
        let limit = self.limit(model);
        let a = &self.inner.adaptation;
        let mut state = limit.adaptive();
        if state.limiter.is_none() || state.recover_from.is_some_and(|at| Instant::now() < at) {
            return;
        }
        state.streak += 1;
        if state.streak < a.recover_after {
            return;
        }
        state.streak = 0;
        let rpm = f64::from(limit.rpm);
        let faster = (state.effective + rpm * a.recover_step).min(rpm);
        tracing::debug!(model, rpm = faster, "recovering");
        self.set_rate(&mut state, limit.rpm, faster);
    }

    /// The requests per minute `model` is currently held to.
    pub fn effective_rpm(&self, model: &str) -> f64 {
        self.limit(model).adaptive().effective
    }

    fn set_rate(&self, state: &mut Adaptive, rpm: u32, effective: f64) {
        state.effective = effective;
        if effective >= f64::from(rpm) {
            state.limiter = None;
            return;
        }
        let limiter = Limiter::direct_with_clock(quota(effective), self.inner.clock.clone());
        // The new rate starts now: the next request waits one full new period.
        let _ = limiter.check();
        state.limiter = Some(Arc::new(limiter));
    }

    async fn wait(&self, not_until: NotUntil<Duration>) {
        let wait = not_until.wait_time_from(self.inner.clock.now());
        tokio::time::sleep(wait).await;
    }

    fn limit(&self, model: &str) -> Arc<ModelLimit> {
        let mut models = lock(&self.inner.models);
        if let Some(limit) = models.get(model) {
            return limit.clone();
        }
        let rpm = self
            .inner
            .configured
            .get(model)
            .copied()
            .unwrap_or_else(|| (self.inner.default_rpm)(model))
            .max(1);
        let limit = Arc::new(ModelLimit {
            rpm,
            base: Limiter::direct_with_clock(base_quota(rpm), self.inner.clock.clone()),
            adaptive: Mutex::new(Adaptive {
                effective: f64::from(rpm),
                limiter: None,
                last_decrease: None,
                recover_from: None,
                streak: 0,
            }),
        });
        models.insert(model.to_owned(), limit.clone());
        limit
    }
}

impl ModelLimit {
    fn adaptive(&self) -> MutexGuard<'_, Adaptive> {
        lock(&self.adaptive)
    }

    /// The current slowed-down limiter, if any. A function of its own so that the guard is
    /// dropped before the caller awaits (a `while let` scrutinee's guard would live on).
    fn adaptive_limiter(&self) -> Option<Arc<Limiter>> {
        self.adaptive().limiter.clone()
    }
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("configured", &self.inner.configured)
            .field("adaptation", &self.inner.adaptation)
            .finish_non_exhaustive()
    }
}

/// From this rpm up (periods of 50 ms or less), the base limiter gets a burst of 2.
const FAST_RPM: u32 = 1_200;

/// The base limiter's quota for `rpm`: burst 2 when fast, else 1, and the period that keeps
/// `rpm + 1` starts over 60 s apart with that burst.
fn base_quota(rpm: u32) -> Quota {
    if rpm >= FAST_RPM {
        quota_with_burst(f64::from(rpm - 1), 2)
    } else {
        quota(f64::from(rpm))
    }
}

/// One request per `60 s / rpm` (rounded up, plus 1 ns), burst 1: `rpm + 1` requests always span
/// more than 60 s.
fn quota(rpm: f64) -> Quota {
    quota_with_burst(rpm, 1)
}

/// One request per `60 s / rate` (rounded up, plus 1 ns), with `burst`.
fn quota_with_burst(rate: f64, burst: u32) -> Quota {
    let period_ns = (60e9 / rate.max(1e-3)).ceil().min(u64::MAX as f64) as u64 + 1;
    Quota::with_period(Duration::from_nanos(period_ns))
        .expect("period is at least 1 ns")
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each guarded update is a few plain assignments; a poisoned lock still holds valid state.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const MINUTE: Duration = Duration::from_secs(60);

    fn limits(rpm: &[(&str, u32)]) -> RateLimits {
        let map = rpm.iter().map(|&(m, r)| (m.to_owned(), r)).collect();
        RateLimits::new(&map, |_| 30)
    }

    /// The most timestamps in any closed window `[t, t + window]`.
    fn most_in_a_window(stamps: &[Duration], window: Duration) -> usize {
        let mut stamps = stamps.to_vec();
        stamps.sort();
        let mut end = 0;
        let mut most = 0;
        for (start, &t) in stamps.iter().enumerate() {
            while end < stamps.len() && stamps[end] <= t + window {
                end += 1;
            }
            most = most.max(end - start);
        }
        most
    }

    async fn acquire_n(limits: &RateLimits, model: &str, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut stamps = Vec::with_capacity(n);
        for _ in 0..n {
            limits.acquire(model).await;
            stamps.push(start.elapsed());
        }
        stamps
    }

    #[tokio::test(start_paused = true)]
    async fn no_minute_holds_more_than_rpm_and_the_pace_is_near_ideal() {
        let limits = limits(&[("m", 120)]);
        let stamps = acquire_n(&limits, "m", 1_000).await;
        assert_eq!(most_in_a_window(&stamps, MINUTE), 120);
        assert_eq!(
            stamps[0],
            Duration::ZERO,
            "the first request is not delayed"
        );
        let ideal = Duration::from_millis(500) * 999;
        let took = *stamps.last().unwrap();
        assert!(took >= ideal && took <= ideal * 1_005 / 1_000, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_tasks_share_the_limit() {
        let limits = limits(&[("m", 120), ("other", 60)]);
        let start = Instant::now();
        let stamps = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (limits, stamps) = (limits.clone(), stamps.clone());
                tokio::spawn(async move {
                    for _ in 0..63 {
                        limits.acquire("m").await;
                        stamps.lock().unwrap().push(start.elapsed());
                    }
                })
            })
            .collect();
        // Another model runs at its own pace alongside.
        let other = acquire_n(&limits, "other", 61).await;
        for task in tasks {
            task.await.unwrap();
        }
        let stamps = stamps.lock().unwrap();
        assert_eq!(stamps.len(), 1_008);
        assert_eq!(most_in_a_window(&stamps, MINUTE), 120);
        assert!(*stamps.iter().max().unwrap() <= Duration::from_millis(501) * 1_007);
        assert_eq!(most_in_a_window(&other, MINUTE), 60);
        assert!(
            other[60] <= Duration::from_millis(60_100),
            "{:?}",
            other[60]
        );
    }

    /// Callers that come back up to a millisecond late (a timer tick) would, with burst 1,
    /// push every later slot back: here the pace would fall ~5% short. Burst 2 absorbs
    /// it, and neither a minute nor a second holds more than it may.
    #[tokio::test(start_paused = true)]
    async fn fast_limits_absorb_late_callers_without_breaking_any_window() {
        let limits = limits(&[("m", 6_000)]);
        let start = Instant::now();
        let mut stamps = Vec::new();
        for i in 0..15_000u64 {
            limits.acquire("m").await;
            stamps.push(start.elapsed());
            tokio::time::advance(Duration::from_micros(100 + i * 7919 % 900)).await;
        }
        assert!(most_in_a_window(&stamps, MINUTE) <= 6_000);
        assert!(most_in_a_window(&stamps, Duration::from_secs(1)) <= 101);
        let ideal = Duration::from_millis(10) * 14_999;
        let took = *stamps.last().unwrap();
        assert!(took <= ideal * 1_002 / 1_000, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_two_is_still_capped_at_rpm_per_minute() {
        // Saturated from many tasks, and bursty after idle gaps: neither breaks the window.
        let limits = limits(&[("m", 1_200)]);
        let start = Instant::now();
        let stamps = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (limits, stamps) = (limits.clone(), stamps.clone());
                tokio::spawn(async move {
                    for i in 0..400u64 {
                        limits.acquire("m").await;
                        stamps.lock().unwrap().push(start.elapsed());
                        if (i + t) % 37 == 0 {
                            tokio::time::sleep(Duration::from_millis(120)).await;
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let stamps = stamps.lock().unwrap();
        assert_eq!(stamps.len(), 3_200);
        assert!(most_in_a_window(&stamps, MINUTE) <= 1_200);
        assert!(most_in_a_window(&stamps, Duration::from_secs(1)) <= 21);
    }

    /// Why the burst is small: governor's per-minute quota lets twice the rpm into the first minute.
    #[tokio::test(start_paused = true)]
    async fn a_per_minute_quota_with_full_burst_would_break_the_window() {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        let naive = Limiter::direct_with_clock(
            Quota::per_minute(NonZeroU32::new(120).unwrap()),
            clock.clone(),
        );
        let mut stamps = Vec::new();
        while stamps.len() < 300 {
            match naive.check() {
                Ok(()) => stamps.push(clock.now()),
                Err(nu) => tokio::time::sleep(nu.wait_time_from(clock.now())).await,
            }
        }
        assert!(most_in_a_window(&stamps, MINUTE) >= 239);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_takes_no_slot() {
        let limits = limits(&[("m", 120)]);
        let start = Instant::now();
        limits.acquire("m").await;
        let timed_out = tokio::time::timeout(Duration::from_millis(100), limits.acquire("m")).await;
        assert!(timed_out.is_err());
        limits.acquire("m").await;
        // The next slot is the one 500 ms after the first, not one after a phantom request.
        assert!(
            start.elapsed() <= Duration::from_millis(501),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rpm_comes_from_the_map_then_the_default() {
        let map = BTreeMap::from([("a".to_owned(), 6), ("zero".to_owned(), 0)]);
        let limits = RateLimits::new(&map, |model| if model == "b" { 3 } else { 12 });
        assert_eq!(limits.effective_rpm("a"), 6.0);
        assert_eq!(limits.effective_rpm("b"), 3.0);
        assert_eq!(limits.effective_rpm("c"), 12.0);
        assert_eq!(limits.effective_rpm("zero"), 1.0);
        let gaps = |s: Vec<Duration>| s[1] - s[0];
        assert!(gaps(acquire_n(&limits, "a", 2).await) >= Duration::from_secs(10));
        assert!(gaps(acquire_n(&limits, "b", 2).await) >= Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_once_per_episode_down_to_the_floor() {
        let limits = limits(&[("m", 120)]);
        limits.acquire("m").await;
        limits.on_throttled("m");
        assert_eq!(limits.effective_rpm("m"), 60.0);
        let stamps = acquire_n(&limits, "m", 3).await;
        assert!(
            stamps[0] >= Duration::from_secs(1),
            "waits a full new period"
        );
        assert!(stamps[2] - stamps[1] >= Duration::from_secs(1));
        // In-flight calls throttled in the same episode do not compound the decrease.
        limits.on_throttled("m");
        assert_eq!(limits.effective_rpm("m"), 60.0);
        tokio::time::advance(Duration::from_secs(5)).await;
        limits.on_throttled("m");
        assert_eq!(limits.effective_rpm("m"), 30.0);
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(5)).await;
            limits.on_throttled("m");
        }
        assert_eq!(
            limits.effective_rpm("m"),
            12.0,
            "floor is 10% of the configured rpm"
        );
        assert_eq!(
            limits.effective_rpm("other"),
            30.0,
            "other models untouched"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn successes_recover_gradually_after_the_cooldown_never_above_rpm() {
        let limits = limits(&[("m", 100)]);
        limits.on_success("m");
        assert_eq!(
            limits.effective_rpm("m"),
            100.0,
            "no adaptation, nothing to recover"
        );
        limits.on_throttled("m");
        assert_eq!(limits.effective_rpm("m"), 50.0);
        for _ in 0..20 {
            limits.on_success("m");
        }
        assert_eq!(
            limits.effective_rpm("m"),
            50.0,
            "no recovery during the cooldown"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..4 {
            limits.on_success("m");
        }
        assert_eq!(limits.effective_rpm("m"), 50.0);
        limits.on_success("m");
        assert_eq!(limits.effective_rpm("m"), 60.0);
        // A throttle resets the streak and restarts the cooldown.
        for _ in 0..4 {
            limits.on_success("m");
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        limits.on_throttled("m");
        assert_eq!(limits.effective_rpm("m"), 30.0);
        tokio::time::advance(Duration::from_secs(30)).await;
        let mut seen = Vec::new();
        for _ in 0..100 {
            limits.on_success("m");
            seen.push(limits.effective_rpm("m"));
        }
        assert!(
            seen.windows(2)
                .all(|w| w[1] >= w[0] && w[1] - w[0] <= 10.0 + 1e-9)
        );
        assert_eq!(*seen.last().unwrap(), 100.0);
        assert!(seen.iter().all(|&r| r <= 100.0));
        let stamps = acquire_n(&limits, "m", 3).await;
        assert!(
            stamps[2] - stamps[1] < Duration::from_millis(700),
            "full pace again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_holds_through_throttling_and_recovery() {
        let adaptation = Adaptation {
            debounce: Duration::ZERO,
            cooldown: Duration::from_secs(2),
            recover_after: 1,
            recover_step: 0.5,
            ..Adaptation::default()
        };
        let map = BTreeMap::from([("m".to_owned(), 120)]);
        let limits = RateLimits::with_adaptation(&map, |_| 1, adaptation);
        let mut rng = StdRng::seed_from_u64(3);
        let start = Instant::now();
        let mut stamps = Vec::new();
        let mut throttles = 0;
        for _ in 0..1_000 {
            limits.acquire("m").await;
            stamps.push(start.elapsed());
            if rng.random_bool(0.03) {
                limits.on_throttled("m");
                throttles += 1;
            } else {
                limits.on_success("m");
            }
        }
        assert!(throttles > 10);
        assert!(most_in_a_window(&stamps, MINUTE) <= 120);
    }
}
