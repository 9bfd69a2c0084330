//! Money: every paid call held while in flight and settled with what it billed, the spend per
//! UTC day every run sharing the store counts against a daily budget, and a run's money beyond
//! its rows (images a killed run never finished, calls it may have been billed for).

use rusqlite::{Connection, TransactionBehavior, params};

use super::{LedgerError, Store};
use crate::catalog::Date;
use crate::money::Usd;

/// A hold older than this is taken to belong to a run that died mid-call (a live call settles
/// long before: at most `attempts` × the 300 s read timeout, plus back-off). Until then a dead
/// run's holds keep counting against the day, which errs on the side of spending less.
pub const HOLD_EXPIRES_SECS: i64 = 3_600;

/// Money held for one paid call in flight; see [`Store::hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldId(i64);

/// One paid call, as the money records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaidCall<'a> {
    pub run_id: &'a str,
    /// The image as the report names it.
    pub image: &'a str,
    /// 0-based step index.
    pub step: usize,
    pub model: &'a str,
}

/// A billed or held call, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub image: String,
    /// 0-based step index (`None` for calls recorded before schema version 5).
    pub step: Option<usize>,
    pub model: String,
    /// Billed, or held (the price of the call).
    pub cost: Usd,
}

/// A run's money beyond its rows; see [`Store::run_money`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunMoney {
    /// Everything the run was billed, rows or not.
    pub billed: Usd,
    /// Billed calls of steps that have no row (the run stopped before their image finished).
    pub outside_rows: Vec<CallRecord>,
    /// Calls held and never settled: in flight, or, if the run is dead, possibly billed.
    pub held: Vec<CallRecord>,
}

impl RunMoney {
    /// The total of [`RunMoney::held`].
    pub fn possibly_billed(&self) -> Usd {
        self.held.iter().map(|c| c.cost).sum()
    }
}

impl Store {
    /// Records money billed by one call (for the daily budget across runs, and the run's
    /// history).
    pub fn record_spend(
        &self,
        call: &PaidCall<'_>,
        cost: Usd,
        at_unix: i64,
    ) -> Result<(), LedgerError> {
        insert_spend(&self.conn(), call, cost, at_unix).map_err(|e| self.err(e))
    }

    /// Holds `amount` for a paid call about to be made, until [`Store::settle_hold`] records
    /// what it billed. A hold that is never settled is a call in flight when its run died: it
    /// shows as "possibly billed" in that run's history.
    ///
    /// With a daily budget (`daily`: the UTC day and its cap) the hold is taken in one
    /// transaction that no other run sharing the store can interleave with, and granted only if
    /// what every run was billed that day plus every live hold plus `amount` stays within the
    /// cap; when refused, the error is what was already spent or held. Holds older than
    /// [`HOLD_EXPIRES_SECS`] no longer count against the day.
    pub fn hold(
        &self,
        call: &PaidCall<'_>,
        amount: Usd,
        daily: Option<(Date, Usd)>,
        now_unix: i64,
    ) -> Result<Result<HoldId, Usd>, LedgerError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        if let Some((day, cap)) = daily {
            let held: i64 = tx
                .query_row(
                    "SELECT COALESCE(SUM(amount_micros), 0) FROM holds WHERE at_unix >= ?1",
                    params![now_unix - HOLD_EXPIRES_SECS],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            let committed = spent_during(&tx, day).map_err(|e| self.err(e))? + Usd(held);
            let total = i128::from(committed.micros()) + i128::from(amount.micros());
            if total > i128::from(cap.micros()) {
                return Ok(Err(committed));
            }
        }
        tx.execute(
            "INSERT INTO holds (run_id, amount_micros, at_unix, model, image, step)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                call.run_id,
                amount.micros(),
                now_unix,
                call.model,
                call.image,
                call.step as i64
            ],
        )
        .map_err(|e| self.err(e))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Ok(HoldId(id)))
    }

    /// Ends a hold: records what its call was billed (if anything) and drops the hold, in one
    /// transaction, so the money is never counted neither as held nor as spent.
    pub fn settle_hold(
        &self,
        hold: HoldId,
        call: &PaidCall<'_>,
        billed: Usd,
        at_unix: i64,
    ) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        insert_spend(&tx, call, billed, at_unix).map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM holds WHERE id = ?1", params![hold.0])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Where a run's money went beyond its report rows: calls it was billed for steps that
    /// have no row (images unfinished when it stopped) and calls still held (in flight, or, for
    /// a run that died, possibly billed).
    pub fn run_money(&self, run_id: &str) -> Result<RunMoney, LedgerError> {
        let conn = self.conn();
        let calls = |sql: &str| -> rusqlite::Result<Vec<CallRecord>> {
            let mut stmt = conn.prepare_cached(sql)?;
            stmt.query_map([run_id], |r| {
                Ok(CallRecord {
                    image: r.get(0)?,
                    step: r.get::<_, Option<i64>>(1)?.map(|s| s as usize),
                    model: r.get(2)?,
                    cost: Usd(r.get(3)?),
                })
            })?
            .collect()
        };
        let billed: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(cost_micros), 0) FROM spend WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let outside_rows = calls(
            // A join (SQLite indexes the rows for it on the fly), so recording rows, which
            // every run does, pays for no extra index.
            "SELECT s.image, s.step, s.model, s.cost_micros FROM spend s
             LEFT JOIN rows w ON w.run_id = s.run_id AND w.image = s.image AND w.step = s.step
             WHERE s.run_id = ?1 AND w.run_id IS NULL
             ORDER BY s.id",
        )
        .map_err(|e| self.err(e))?;
        let held = calls(
            "SELECT image, step, model, amount_micros FROM holds WHERE run_id = ?1 ORDER BY id",
        )
        .map_err(|e| self.err(e))?;
        Ok(RunMoney {
            billed: Usd(billed),
            outside_rows,
            held,
        })
    }

    /// Everything billed on the UTC day `day`, over all runs.
    pub fn spent_on(&self, day: Date) -> Result<Usd, LedgerError> {
        spent_during(&self.conn(), day).map_err(|e| self.err(e))
    }
}

fn insert_spend(
    conn: &Connection,
    call: &PaidCall<'_>,
    cost: Usd,
    at_unix: i64,
) -> rusqlite::Result<()> {
    if cost == Usd::ZERO {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO spend (run_id, model, cost_micros, at_unix, image, step)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        call.run_id,
        call.model,
        cost.micros(),
        at_unix,
        call.image,
        call.step as i64
    ])
    .map(drop)
}

/// Everything billed on the UTC day `day`, over all runs.
fn spent_during(conn: &Connection, day: Date) -> rusqlite::Result<Usd> {
    let start = days_from_civil(day) * 86_400;
    conn.query_row(
        "SELECT COALESCE(SUM(cost_micros), 0) FROM spend WHERE at_unix >= ?1 AND at_unix < ?2",
        params![start, start + 86_400],
        |r| r.get(0),
    )
    .map(Usd)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`; the inverse of
/// [`Date::from_days_since_epoch`]).
pub(super) fn days_from_civil(d: Date) -> i64 {
    let y = i64::from(d.y) - i64::from(d.m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(d.m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d.d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
