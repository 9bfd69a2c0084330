//! The last refusal of a hold by a cap shared with other runs (the state store's daily budget,
//! the coordination table's run-group and daily budgets), remembered for a few seconds.
//!
//! A hold is taken only once a call has its rate-limit slot, so that it lasts no longer than
//! the call. When the shared caps are spent, every call behind the refused one would wait for a
//! slot only to be refused in turn: at a low rate limit a capped run would take minutes per
//! image to end. Calls the last refusal would refuse again (those that cost more than the room
//! it saw) fall back at once instead, without a slot. The memory ends after [`FRESH`], or as
//! soon as one of this run's holds settles or succeeds (room may have come back); the next call
//! then asks again. A table that could not be reached is not remembered: that may pass, and
//! each call asks it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::budget::BudgetExceeded;
use super::cache::NotHeld;
use crate::money::Usd;

/// How long a refusal is trusted. Room can come back when another run's call fails (it was not
/// billed) or is billed less than it held; a call refused meanwhile falls back as it would
/// have had its hold been asked a moment earlier.
pub(super) const FRESH: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(super) struct Refusals {
    last: Mutex<Option<Seen>>,
}

struct Seen {
    refusal: BudgetExceeded,
    at: Instant,
}

impl Refusals {
    /// Remembers a hold a cap refused (not one the table could not be asked for).
    pub(super) fn saw(&self, refusal: &NotHeld) {
        let NotHeld::Cap(e) = refusal else { return };
        *self.lock() = Some(Seen {
            refusal: e.clone(),
            at: Instant::now(),
        });
    }

    /// Forgets the last refusal: a hold settled or was granted, so the room it saw may have
    /// changed.
    pub(super) fn forget(&self) {
        *self.lock() = None;
    }

    /// The refusal a hold of `price` would meet now, by the last one seen: `None` when there is
    /// none fresh, or it left room for `price`.
    pub(super) fn would_refuse(&self, price: Usd) -> Option<BudgetExceeded> {
        self.would_refuse_at(price, Instant::now())
    }

    fn would_refuse_at(&self, price: Usd, now: Instant) -> Option<BudgetExceeded> {
        let last = self.lock();
        let seen = last.as_ref()?;
        // What a call may cost and still have been held when the refusal was seen.
        let room = seen.refusal.cap - seen.refusal.committed;
        if price.is_zero() || price <= room || now.duration_since(seen.at) >= FRESH {
            return None;
        }
        Some(BudgetExceeded {
            requested: price,
            ..seen.refusal.clone()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Seen>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::budget::Cap;

    fn daily(committed: i64) -> NotHeld {
        NotHeld::Cap(BudgetExceeded {
            which: Cap::Daily,
            cap: Usd(100_000),
            committed: Usd(committed),
            requested: Usd(30_000),
        })
    }

    #[test]
    fn a_fresh_refusal_refuses_what_its_room_cannot_take() {
        let r = Refusals::default();
        assert!(r.would_refuse(Usd(1)).is_none(), "nothing seen yet");
        r.saw(&daily(80_000));
        // 20,000 of room: a call of 30,000 is refused again, one of 20,000 or free is not.
        match r.would_refuse(Usd(30_000)) {
            Some(e) => {
                assert_eq!(
                    (e.which, e.committed, e.requested),
                    (Cap::Daily, Usd(80_000), Usd(30_000))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(r.would_refuse(Usd(20_000)).is_none());
        assert!(r.would_refuse(Usd::ZERO).is_none());
        // Stale after FRESH; forgotten when a hold settles.
        let later = Instant::now() + FRESH;
        assert!(r.would_refuse_at(Usd(30_000), later).is_none());
        assert!(r.would_refuse(Usd(30_000)).is_some());
        r.forget();
        assert!(r.would_refuse(Usd(30_000)).is_none());
    }

    #[test]
    fn an_unreachable_table_is_asked_again_and_an_overrun_leaves_no_room() {
        let r = Refusals::default();
        r.saw(&NotHeld::Unreachable("connection refused".into()));
        assert!(r.would_refuse(Usd(1)).is_none());
        r.saw(&daily(120_000));
        assert!(r.would_refuse(Usd(1)).is_some());
        assert!(r.would_refuse(Usd::ZERO).is_none());
    }
}
