//! The run cap and the daily cap across machines: one item per cap (`budget#run#<group>`,
//! `budget#day#<date>`) holding `spent` (micro-dollars billed or held) and `holds` (a map of the
//! calls in flight, `"<micros>@<unix>"` each).
//!
//! A hold is one `UpdateItem` per cap: `SET holds.<id> ADD spent :price` on condition that
//! `spent <= :room` (the room, cap minus price, worked out here: conditions cannot add) and that
//! the hold is not there yet (an SDK retry of a write that landed finds it and takes it as
//! done). Settling is `REMOVE holds.<id> ADD spent :billed-minus-price` on condition that the
//! hold is still there, so it is applied once. A hold whose run died mid-call is never settled:
//! its price stays in `spent` (the call may have been billed), and once older than
//! [`HOLD_EXPIRES_SECS`] the next run to start removes its entry (keeping the item small). With
//! two caps, the run cap is held first; a refusal by the daily cap gives the run's hold back.
//! A failure to reach the table refuses the call: spending must never be counted in memory
//! alone.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{CoordError, Coordination, condition_failed, detail, n, number, s};
use crate::catalog::Date;
use crate::ledger::HOLD_EXPIRES_SECS;
use crate::ledger::unix_now;
use crate::money::Usd;

/// How long a run group's budget item is kept after it was created.
const RUN_ITEM_SECS: i64 = 90 * 86_400;
/// How long a day's budget item is kept after it was created.
const DAY_ITEM_SECS: i64 = 3 * 86_400;

/// The caps shared through the table (the manifest's, whole: not split per shard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedCaps {
    /// `budget.max_usd`, across every run of the run group.
    pub run: Option<Usd>,
    /// `budget.daily_max_usd`, across every run using the table, per UTC day.
    pub daily: Option<Usd>,
}

/// Money held in the table for one call in flight; see [`Coordination::hold`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedHold {
    id: String,
    amount: Usd,
    /// The run group's item holds it.
    run: bool,
    /// The day whose item holds it.
    day: Option<String>,
}

/// Which shared cap refused a hold, and what was spent or held against it then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Run { committed: Usd, cap: Usd },
    Daily { committed: Usd, cap: Usd },
}

impl Coordination {
    /// Holds `amount` against the shared caps for a call about to be made. `Ok(Err(_))`: a
    /// cap cannot afford it. Without shared caps (or for a free call) nothing is written.
    pub async fn hold(&self, amount: Usd) -> Result<Result<SharedHold, Refusal>, CoordError> {
        let n_hold = self
            .inner
            .next_hold
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut hold = SharedHold {
            id: format!("{}/{n_hold}", self.inner.run_id),
            amount,
            run: false,
            day: None,
        };
        if amount <= Usd::ZERO {
            return Ok(Ok(hold));
        }
        let caps = self.inner.caps;
        if let Some(cap) = caps.run {
            match self.debit(&self.run_pk(), &hold, cap).await? {
                Ok(()) => hold.run = true,
                Err(committed) => return Ok(Err(Refusal::Run { committed, cap })),
            }
        }
        if let Some(cap) = caps.daily {
            let today = Date::today_utc().to_string();
            let pk = day_pk(&today);
            let debited = match self.ensure_day(&today).await {
                Ok(()) => self.debit(&pk, &hold, cap).await,
                Err(e) => Err(e),
            };
            match debited {
                Ok(Ok(())) => hold.day = Some(today),
                other => {
                    if hold.run {
                        self.credit(&self.run_pk(), &hold, Usd::ZERO).await;
                    }
                    return match other {
                        Ok(Err(committed)) => Ok(Err(Refusal::Daily { committed, cap })),
                        Err(e) => Err(e),
                        Ok(Ok(())) => unreachable!("handled above"),
                    };
                }
            }
        }
        Ok(Ok(hold))
    }

    /// Ends a hold with what its call was billed. A failure is logged: the hold then stays
    /// counted in full (more than the truth, never less).
    pub async fn settle(&self, hold: &SharedHold, billed: Usd) {
        if hold.run {
            self.credit(&self.run_pk(), hold, billed).await;
        }
        if let Some(day) = &hold.day {
            self.credit(&day_pk(day), hold, billed).await;
        }
    }

    /// Makes sure the run group's and today's budget items exist and clears their expired
    /// holds (see the module doc).
    pub(super) async fn prepare_budget(&self) -> Result<(), CoordError> {
        if self.inner.caps.run.is_some() {
            let pk = self.run_pk();
            self.ensure(&pk, RUN_ITEM_SECS).await?;
            self.sweep(&pk).await?;
        }
        if self.inner.caps.daily.is_some() {
            let today = Date::today_utc().to_string();
            self.ensure_day(&today).await?;
            self.sweep(&day_pk(&today)).await?;
        }
        Ok(())
    }

    /// What the run group's item and today's item hold as spent (billed or held), in
    /// micro-dollars: for tests and reports.
    pub async fn spent(&self) -> Result<(Usd, Usd), CoordError> {
        let run = self.budget_item(&self.run_pk()).await?;
        let today = self
            .budget_item(&day_pk(&Date::today_utc().to_string()))
            .await?;
        let spent = |item: &Option<HashMap<String, AttributeValue>>| {
            Usd(item
                .as_ref()
                .and_then(|i| number(i.get("spent")?))
                .unwrap_or(0))
        };
        Ok((spent(&run), spent(&today)))
    }

    fn run_pk(&self) -> String {
        format!("budget#run#{}", self.inner.group)
    }

    async fn ensure_day(&self, day: &str) -> Result<(), CoordError> {
        if self
            .inner
            .days_ready
            .lock()
            .expect("days")
            .iter()
            .any(|d| d == day)
        {
            return Ok(());
        }
        self.ensure(&day_pk(day), DAY_ITEM_SECS).await?;
        self.inner
            .days_ready
            .lock()
            .expect("days")
            .push(day.to_owned());
        Ok(())
    }

    /// Creates a budget item with nothing spent, unless it exists.
    async fn ensure(&self, pk: &str, keep_secs: i64) -> Result<(), CoordError> {
        let put = self
            .table()
            .put(pk)
            .item("spent", n(0))
            .item("holds", AttributeValue::M(HashMap::new()))
            .item("expires_at", n(unix_now() + keep_secs))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(self.err(detail(e))),
        }
    }

    /// Adds `hold` to the item `pk` if `spent + amount <= cap`; else what is spent there.
    async fn debit(
        &self,
        pk: &str,
        hold: &SharedHold,
        cap: Usd,
    ) -> Result<Result<(), Usd>, CoordError> {
        let room = cap - hold.amount;
        if room < Usd::ZERO {
            return Ok(Err(self.spent_at(pk).await?));
        }
        for _ in 0..2 {
            let update = self
                .table()
                .update(pk)
                .update_expression("SET holds.#h = :held ADD spent :amount")
                .condition_expression(
                    "attribute_exists(holds) AND attribute_not_exists(holds.#h) AND spent <= :room",
                )
                .expression_attribute_names("#h", &hold.id)
                .expression_attribute_values(
                    ":held",
                    s(format!("{}@{}", hold.amount.micros(), unix_now())),
                )
                .expression_attribute_values(":amount", n(hold.amount.micros()))
                .expression_attribute_values(":room", n(room.micros()))
                .send()
                .await;
            match update {
                Ok(_) => return Ok(Ok(())),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(self.err(detail(e))),
            }
            let item = self.budget_item(pk).await?;
            let holds = item.as_ref().and_then(|i| i.get("holds")?.as_m().ok());
            match holds {
                Some(holds) if holds.contains_key(&hold.id) => return Ok(Ok(())),
                Some(_) => {
                    let spent = item.as_ref().and_then(|i| number(i.get("spent")?));
                    return Ok(Err(Usd(spent.unwrap_or(0))));
                }
                // The item is gone (expired): make it again, kept as long as its kind is,
                // and try once more.
                None => {
                    let keep = if pk == self.run_pk() {
                        RUN_ITEM_SECS
                    } else {
                        DAY_ITEM_SECS
                    };
                    self.ensure(pk, keep).await?
                }
            }
        }
        Ok(Err(self.spent_at(pk).await?))
    }

    /// Ends `hold` on the item `pk`: its price comes off `spent`, `billed` goes on.
    async fn credit(&self, pk: &str, hold: &SharedHold, billed: Usd) {
        let delta = billed - hold.amount;
        let update = self
            .table()
            .update(pk)
            .update_expression("REMOVE holds.#h ADD spent :delta")
            .condition_expression("attribute_exists(holds.#h)")
            .expression_attribute_names("#h", &hold.id)
            .expression_attribute_values(":delta", n(delta.micros()))
            .send()
            .await;
        let failed = match update {
            Ok(_) => return,
            // Swept as expired: its price already counts as billed; add any overrun.
            Err(e) if condition_failed(&e) => {
                if delta <= Usd::ZERO {
                    return;
                }
                self.table()
                    .update(pk)
                    .update_expression("ADD spent :delta")
                    .expression_attribute_values(":delta", n(delta.micros()))
                    .send()
                    .await
                    .err()
                    .map(detail)
            }
            Err(e) => Some(detail(e)),
        };
        if let Some(e) = failed {
            tracing::warn!(
                "could not settle a call of ${billed} in {pk}: {}; its hold of ${} stays counted",
                self.err(e),
                hold.amount
            );
        }
    }

    /// Removes the entries of holds older than [`HOLD_EXPIRES_SECS`] from `pk`; their price
    /// stays spent.
    async fn sweep(&self, pk: &str) -> Result<(), CoordError> {
        let Some(item) = self.budget_item(pk).await? else {
            return Ok(());
        };
        let Some(holds) = item.get("holds").and_then(|h| h.as_m().ok()) else {
            return Ok(());
        };
        let cutoff = unix_now() - HOLD_EXPIRES_SECS;
        for (id, held) in holds {
            let at = held
                .as_s()
                .ok()
                .and_then(|v| v.split_once('@'))
                .and_then(|(_, at)| at.parse::<i64>().ok());
            if at.is_some_and(|at| at >= cutoff) {
                continue;
            }
            let removed = self
                .table()
                .update(pk)
                .update_expression("REMOVE holds.#h")
                .condition_expression("attribute_exists(holds.#h)")
                .expression_attribute_names("#h", id)
                .send()
                .await;
            match removed {
                Ok(_) => tracing::info!(
                    "{pk}: a call held by a run that died ({held:?}) is counted as billed"
                ),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(self.err(detail(e))),
            }
        }
        Ok(())
    }

    async fn spent_at(&self, pk: &str) -> Result<Usd, CoordError> {
        let item = self.budget_item(pk).await?;
        Ok(Usd(item
            .as_ref()
            .and_then(|i| number(i.get("spent")?))
            .unwrap_or(0)))
    }

    async fn budget_item(
        &self,
        pk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, CoordError> {
        self.table().get(pk).await
    }
}

fn day_pk(day: &str) -> String {
    format!("budget#day#{day}")
}
