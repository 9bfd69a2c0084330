//! The run's hard money budget: every remote call reserves its estimated cost before it is made,
//! and settles the billed cost after.
//!
//! A [`Budget`] guards up to three caps (the whole run, each image, the day) with one invariant:
//! for every cap, `spent + reserved <= cap`, where `spent` is what calls were billed and
//! `reserved` what calls in flight may still cost. The one exception is a call billed more than
//! it reserved (a model returning more images than asked for): the truth is recorded, the cap is
//! overrun by that difference, and every later reservation sees the overrun. This module never
//! waits and never talks to a provider; it only does exact [`Usd`] arithmetic under a lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

use crate::money::Usd;

/// Today's allowance across runs: the cap, and what earlier runs today already spent (the state
/// store supplies the latter). This in-memory view bounds one run; runs going at the same time
/// are bounded together by the holds `remote.rs` takes in the state store before each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyAllowance {
    pub cap: Usd,
    pub already_spent_today: Usd,
}

/// Which cap refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cap {
    Run,
    PerImage,
    Daily,
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cap::Run => "run budget",
            Cap::PerImage => "per-image budget",
            Cap::Daily => "daily budget",
        })
    }
}

/// A reservation refused because it would let `spent + reserved` exceed a cap.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{which} of ${cap} exceeded: ${committed} already spent or reserved, this call needs ${requested}"
)]
pub struct BudgetExceeded {
    pub which: Cap,
    pub cap: Usd,
    /// Spent plus reserved against this cap when the reservation was refused.
    pub committed: Usd,
    pub requested: Usd,
}

/// The run's settled spending crossed `percent` of the run cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetWarning {
    pub percent: u8,
    pub spent: Usd,
    pub cap: Usd,
}

/// Percentages of the run cap that raise a [`BudgetWarning`], each once per run.
const WARN_AT_PERCENT: [u8; 2] = [80, 90];

/// Spent and reserved totals read under one lock, so they are consistent with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetSnapshot {
    pub spent: Usd,
    pub reserved: Usd,
}

/// The shared budget of one run.
///
/// Lifecycle: created once per run by the scheduler, before any task starts; every task gets a
/// clone (the handle is an `Arc`), and each [`Reservation`] holds one too. The state lives until
/// the last clone and reservation are dropped, after the run's report is written. The lock is a
/// std `Mutex`, held only for a few additions, never across an `.await`.
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<Mutex<Ledger>>,
}

#[derive(Debug, Default)]
struct Ledger {
    max_run: Option<Usd>,
    max_per_image: Option<Usd>,
    daily: Option<DailyAllowance>,
    totals: BudgetSnapshot,
    images: HashMap<String, BudgetSnapshot>,
    /// How many of [`WARN_AT_PERCENT`] have been crossed (they are ascending).
    warned: usize,
    pending_warnings: Vec<BudgetWarning>,
}

impl Budget {
    pub fn new(
        max_run: Option<Usd>,
        max_per_image: Option<Usd>,
        daily: Option<DailyAllowance>,
    ) -> Budget {
        let ledger = Ledger {
            max_run,
            max_per_image,
            daily,
            ..Ledger::default()
        };
        Budget {
            inner: Arc::new(Mutex::new(ledger)),
        }
    }

    /// Reserves `estimate` for one call on image `image_key`, before making it.
    ///
    /// Refused with the first cap (run, then per-image, then daily) that `spent + reserved +
    /// estimate` would exceed. A zero estimate is always granted, even when an overrun has pushed
    /// spending past a cap: a call that costs nothing cannot break the budget. Never blocks beyond
    /// the short lock. A negative estimate is a caller bug and is reserved as zero.
    pub fn reserve(&self, image_key: &str, estimate: Usd) -> Result<Reservation, BudgetExceeded> {
        debug_assert!(estimate >= Usd::ZERO, "negative estimate {estimate}");
        let estimate = estimate.max(Usd::ZERO);
        let mut ledger = self.lock();
        if !estimate.is_zero() {
            ledger.check(image_key, estimate)?;
        }
        ledger.totals.reserved += estimate;
        ledger.image_mut(image_key).reserved += estimate;
        drop(ledger);
        Ok(Reservation {
            budget: Some(self.clone()),
            image_key: image_key.to_owned(),
            amount: estimate,
        })
    }

    /// The daily cap, if the manifest sets one.
    pub fn daily_cap(&self) -> Option<Usd> {
        self.lock().daily.map(|d| d.cap)
    }

    /// The billed total of settled calls.
    pub fn spent(&self) -> Usd {
        self.lock().totals.spent
    }

    /// What reservations still outstanding may cost.
    pub fn reserved(&self) -> Usd {
        self.lock().totals.reserved
    }

    /// Spent and reserved, read together.
    pub fn snapshot(&self) -> BudgetSnapshot {
        self.lock().totals
    }

    /// The billed total of settled calls for one image.
    pub fn image_spent(&self, image_key: &str) -> Usd {
        self.lock()
            .images
            .get(image_key)
            .map_or(Usd::ZERO, |image| image.spent)
    }

    /// The run-cap thresholds crossed by settlements since the last call, each reported once per
    /// run, in ascending order.
    pub fn take_warnings(&self) -> Vec<BudgetWarning> {
        std::mem::take(&mut self.lock().pending_warnings)
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // The ledger is consistent after every statement that can panic (none do while
        // half-updated), so a poisoned lock still guards valid totals.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn finish(&self, image_key: &str, reserved: Usd, billed: Usd) {
        let mut ledger = self.lock();
        ledger.totals.reserved = ledger.totals.reserved - reserved;
        ledger.totals.spent += billed;
        let image = ledger.image_mut(image_key);
        image.reserved = image.reserved - reserved;
        image.spent += billed;
        ledger.note_thresholds();
    }
}

impl Ledger {
    fn image_mut(&mut self, image_key: &str) -> &mut BudgetSnapshot {
        if !self.images.contains_key(image_key) {
            self.images
                .insert(image_key.to_owned(), BudgetSnapshot::default());
        }
        self.images.get_mut(image_key).expect("inserted above")
    }

    fn check(&self, image_key: &str, estimate: Usd) -> Result<(), BudgetExceeded> {
        let committed = |s: BudgetSnapshot| s.spent + s.reserved;
        let run = committed(self.totals);
        within(Cap::Run, self.max_run, run, estimate)?;
        let image = self.images.get(image_key).copied().unwrap_or_default();
        within(
            Cap::PerImage,
            self.max_per_image,
            committed(image),
            estimate,
        )?;
        if let Some(daily) = self.daily {
            within(
                Cap::Daily,
                Some(daily.cap),
                daily.already_spent_today + run,
                estimate,
            )?;
        }
        Ok(())
    }

    fn note_thresholds(&mut self) {
        let Some(cap) = self.max_run else { return };
        while let Some(&percent) = WARN_AT_PERCENT.get(self.warned) {
            // spent / cap >= percent / 100, in integers wide enough never to overflow.
            let crossed = i128::from(self.totals.spent.micros()) * 100
                >= i128::from(cap.micros()) * i128::from(percent);
            if !crossed {
                break;
            }
            self.warned += 1;
            self.pending_warnings.push(BudgetWarning {
                percent,
                spent: self.totals.spent,
                cap,
            });
        }
    }
}

fn within(
    which: Cap,
    cap: Option<Usd>,
    committed: Usd,
    requested: Usd,
) -> Result<(), BudgetExceeded> {
    let Some(cap) = cap else { return Ok(()) };
    let wanted = i128::from(committed.micros()) + i128::from(requested.micros());
    if wanted <= i128::from(cap.micros()) {
        return Ok(());
    }
    Err(BudgetExceeded {
        which,
        cap,
        committed,
        requested,
    })
}

/// Money set aside for one call in flight.
///
/// Lifecycle: made by [`Budget::reserve`] just before the call, moved with the call, and consumed
/// by [`Reservation::settle`] with the billed amount once the call's outcome is known (zero for a
/// call that failed unbilled; more than [`Reservation::amount`] if the model billed more). Dropping
/// it unsettled releases the money as billed zero: that is only right for a call that was
/// cancelled before it could be billed (shutdown, a task aborted); any call that reached the
/// provider must be settled with what it cost.
#[must_use = "settle the reservation with the billed amount; dropping it releases it as unbilled"]
pub struct Reservation {
    /// `None` once settled, so `Drop` does not release it a second time.
    budget: Option<Budget>,
    image_key: String,
    amount: Usd,
}

impl Reservation {
    /// Records the billed amount and releases the reservation. `actual` may exceed the reserved
    /// amount; it is recorded as is and counts against every cap from now on. A negative amount is
    /// a caller bug and is recorded as zero.
    pub fn settle(mut self, actual: Usd) {
        debug_assert!(actual >= Usd::ZERO, "negative billed amount {actual}");
        self.finish(actual.max(Usd::ZERO));
    }

    /// The amount reserved.
    pub fn amount(&self) -> Usd {
        self.amount
    }

    fn finish(&mut self, billed: Usd) {
        if let Some(budget) = self.budget.take() {
            budget.finish(&self.image_key, self.amount, billed);
        }
    }
}

/// Not derived: the budget handle would print the whole ledger.
impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("image_key", &self.image_key)
            .field("amount", &self.amount)
            .field("settled", &self.budget.is_none())
            .finish()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.finish(Usd::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn usd(micros: i64) -> Usd {
        Usd(micros)
    }

    #[test]
    fn run_cap_refuses_what_would_exceed_it_and_frees_on_settle() {
        let budget = Budget::new(Some(usd(100)), None, None);
        let a = budget.reserve("a", usd(60)).unwrap();
        let err = budget.reserve("b", usd(41)).unwrap_err();
        assert_eq!(
            err,
            BudgetExceeded {
                which: Cap::Run,
                cap: usd(100),
                committed: usd(60),
                requested: usd(41)
            }
        );
        let b = budget.reserve("b", usd(40)).unwrap();
        assert_eq!(
            budget.snapshot(),
            BudgetSnapshot {
                spent: usd(0),
                reserved: usd(100)
            }
        );
        a.settle(usd(10));
        assert_eq!(
            budget.snapshot(),
            BudgetSnapshot {
                spent: usd(10),
                reserved: usd(40)
            }
        );
        assert!(
            budget
                .reserve("c", usd(50))
                .is_ok_and(|r| r.amount() == usd(50))
        );
        b.settle(usd(40));
        assert_eq!(budget.spent(), usd(50));
        assert_eq!(budget.reserved(), usd(0));
    }

    #[test]
    fn dropping_an_unsettled_reservation_releases_it_unbilled() {
        let budget = Budget::new(Some(usd(100)), None, None);
        let r = budget.reserve("a", usd(100)).unwrap();
        assert!(budget.reserve("a", usd(1)).is_err());
        drop(r);
        assert_eq!(budget.snapshot(), BudgetSnapshot::default());
        assert_eq!(budget.image_spent("a"), usd(0));
        assert!(budget.reserve("a", usd(100)).is_ok());
    }

    #[test]
    fn per_image_cap_is_per_image() {
        let budget = Budget::new(None, Some(usd(50)), None);
        let a1 = budget.reserve("a", usd(30)).unwrap();
        let err = budget.reserve("a", usd(21)).unwrap_err();
        assert_eq!((err.which, err.committed), (Cap::PerImage, usd(30)));
        // Another image has its own allowance.
        let b = budget.reserve("b", usd(50)).unwrap();
        a1.settle(usd(30));
        assert_eq!(
            budget.reserve("a", usd(21)).unwrap_err().which,
            Cap::PerImage
        );
        budget.reserve("a", usd(20)).unwrap().settle(usd(20));
        b.settle(usd(5));
        assert_eq!(budget.image_spent("a"), usd(50));
        assert_eq!(budget.image_spent("b"), usd(5));
        assert_eq!(budget.image_spent("never-seen"), usd(0));
        assert_eq!(budget.spent(), usd(55));
    }

    #[test]
    fn daily_cap_counts_what_earlier_runs_spent_today() {
        let daily = DailyAllowance {
            cap: usd(1_000),
            already_spent_today: usd(900),
        };
        let budget = Budget::new(Some(usd(500)), None, Some(daily));
        let r = budget.reserve("a", usd(60)).unwrap();
        let err = budget.reserve("b", usd(41)).unwrap_err();
        assert_eq!(
            err,
            BudgetExceeded {
                which: Cap::Daily,
                cap: usd(1_000),
                committed: usd(960),
                requested: usd(41)
            }
        );
        r.settle(usd(60));
        budget.reserve("b", usd(40)).unwrap().settle(usd(40));
        assert_eq!(budget.reserve("c", usd(1)).unwrap_err().which, Cap::Daily);
    }

    #[test]
    fn the_run_cap_is_checked_before_the_others() {
        let daily = DailyAllowance {
            cap: usd(10),
            already_spent_today: usd(0),
        };
        let budget = Budget::new(Some(usd(10)), Some(usd(10)), Some(daily));
        assert_eq!(budget.reserve("a", usd(11)).unwrap_err().which, Cap::Run);
    }

    #[test]
    fn zero_cost_reservations_always_succeed() {
        let budget = Budget::new(Some(usd(10)), Some(usd(10)), None);
        // An overrun puts spending above every cap.
        budget.reserve("a", usd(10)).unwrap().settle(usd(25));
        assert!(budget.reserve("a", usd(1)).is_err());
        let free = budget.reserve("a", Usd::ZERO).unwrap();
        assert_eq!(free.amount(), Usd::ZERO);
        free.settle(Usd::ZERO);
        assert_eq!(budget.spent(), usd(25));
        // With no caps at all, anything goes.
        let open = Budget::new(None, None, None);
        open.reserve("a", usd(i64::MAX / 2)).unwrap().settle(usd(3));
        assert_eq!(open.spent(), usd(3));
    }

    #[test]
    fn settling_more_than_reserved_records_the_truth_and_later_reservations_see_it() {
        let budget = Budget::new(Some(usd(100)), Some(usd(80)), None);
        let r = budget.reserve("a", usd(40)).unwrap();
        r.settle(usd(70));
        assert_eq!(
            budget.snapshot(),
            BudgetSnapshot {
                spent: usd(70),
                reserved: usd(0)
            }
        );
        assert_eq!(budget.image_spent("a"), usd(70));
        let err = budget.reserve("a", usd(11)).unwrap_err();
        assert_eq!((err.which, err.committed), (Cap::PerImage, usd(70)));
        let err = budget.reserve("b", usd(31)).unwrap_err();
        assert_eq!((err.which, err.committed), (Cap::Run, usd(70)));
        assert!(budget.reserve("b", usd(30)).is_ok());
    }

    #[test]
    fn warnings_at_80_and_90_percent_each_exactly_once() {
        let budget = Budget::new(Some(usd(1_000)), None, None);
        budget.reserve("a", usd(799)).unwrap().settle(usd(799));
        assert!(budget.take_warnings().is_empty());
        budget.reserve("a", usd(1)).unwrap().settle(usd(1));
        let warned = budget.take_warnings();
        assert_eq!(
            warned,
            vec![BudgetWarning {
                percent: 80,
                spent: usd(800),
                cap: usd(1_000)
            }]
        );
        assert!(budget.take_warnings().is_empty());
        budget.reserve("a", usd(50)).unwrap().settle(usd(50));
        assert!(budget.take_warnings().is_empty());
        budget.reserve("a", usd(150)).unwrap().settle(usd(150));
        let warned = budget.take_warnings();
        assert_eq!(warned.iter().map(|w| w.percent).collect::<Vec<_>>(), [90]);
        budget.reserve("a", Usd::ZERO).unwrap().settle(Usd::ZERO);
        assert!(budget.take_warnings().is_empty());
    }

    #[test]
    fn one_settlement_crossing_both_thresholds_reports_both_in_order() {
        let budget = Budget::new(Some(usd(1_000)), None, None);
        // Reservations alone never warn: the thresholds are about money billed.
        let r = budget.reserve("a", usd(950)).unwrap();
        assert!(budget.take_warnings().is_empty());
        r.settle(usd(950));
        let percents: Vec<u8> = budget.take_warnings().iter().map(|w| w.percent).collect();
        assert_eq!(percents, [80, 90]);
        // No run cap, no warnings.
        let uncapped = Budget::new(None, None, None);
        uncapped.reserve("a", usd(5)).unwrap().settle(usd(5));
        assert!(uncapped.take_warnings().is_empty());
    }

    /// 32 threads reserve random amounts and settle (at most the estimate) or drop at random,
    /// checking the invariant from inside the race; the totals must come out exact.
    #[test]
    fn caps_hold_and_totals_are_exact_under_contention() {
        const THREADS: u64 = 32;
        const ROUNDS: usize = 2_000;
        let cap = usd(4_000_000);
        let daily = DailyAllowance {
            cap: usd(5_500_000),
            already_spent_today: usd(1_000_000),
        };
        let budget = Budget::new(Some(cap), Some(usd(400_000)), Some(daily));
        let handles: Vec<_> = (0..THREADS)
            .map(|seed| {
                let budget = budget.clone();
                std::thread::spawn(move || hammer(&budget, seed, ROUNDS, cap))
            })
            .collect();
        let (mut billed, mut refused) = (Usd::ZERO, 0);
        for handle in handles {
            let (b, r) = handle.join().unwrap();
            billed += b;
            refused += r;
        }
        assert_eq!(
            budget.snapshot(),
            BudgetSnapshot {
                spent: billed,
                reserved: Usd::ZERO
            }
        );
        assert!(
            refused > 0,
            "the caps were never reached, so nothing was tested"
        );
        let per_image: Usd = (0..16)
            .map(|i| budget.image_spent(&format!("img{i}")))
            .sum();
        assert_eq!(per_image, billed);
        for i in 0..16 {
            assert!(budget.image_spent(&format!("img{i}")) <= usd(400_000));
        }
    }

    /// Returns (billed, refused) for one thread's share of the race.
    fn hammer(budget: &Budget, seed: u64, rounds: usize, cap: Usd) -> (Usd, usize) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut billed, mut refused) = (Usd::ZERO, 0);
        let mut held = Vec::new();
        for _ in 0..rounds {
            let image = format!("img{}", rng.random_range(0..16));
            match budget.reserve(&image, usd(rng.random_range(0..=40_000))) {
                Ok(r) => held.push(r),
                Err(_) => refused += 1,
            }
            let snap = budget.snapshot();
            assert!(snap.spent + snap.reserved <= cap, "{snap:?} over {cap}");
            if !held.is_empty() && (held.len() > 3 || rng.random_bool(0.5)) {
                let r = held.swap_remove(rng.random_range(0..held.len()));
                if rng.random_bool(0.7) {
                    let actual = usd(rng.random_range(0..=r.amount().micros()));
                    billed += actual;
                    r.settle(actual);
                } else {
                    drop(r);
                }
            }
        }
        for r in held {
            let amount = r.amount();
            billed += amount;
            r.settle(amount);
        }
        (billed, refused)
    }
}
