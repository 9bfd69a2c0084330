//! Runs and their report rows: a run's start and totals, and every row as its image finishes,
//! so `retouch runs` and `retouch report RUN_ID` work on finished and killed runs alike.

use rusqlite::params;

use super::{LedgerError, Store, unknown};
use crate::catalog::Op;
use crate::ledger::{Status, StepRecord};
use crate::money::Usd;
use crate::qa::Qa;
use crate::reason::Reason;

/// A run as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    /// The manifest path as given.
    pub manifest: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Images the run set out to process.
    pub images: u64,
}

/// A past run with its totals: as recorded by `finish_run`, or, for a run that never finished
/// (killed), computed from the rows it recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub info: RunInfo,
    pub finished_at: Option<i64>,
    pub ok: u64,
    pub failed: u64,
    /// Everything the run was billed: its rows' costs, and for a run that stopped part-way
    /// also the calls of images that never got their rows.
    pub cost: Usd,
    /// Calls held and never settled: in flight, or possibly billed if the run died.
    pub possibly_billed: Usd,
}

impl Store {
    /// Records that a run started (replacing a run of the same id).
    pub fn begin_run(&self, run: &RunInfo) -> Result<(), LedgerError> {
        self.conn()
            .execute(
                "INSERT INTO runs (run_id, manifest, started_at, images) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (run_id) DO UPDATE SET manifest = ?2, started_at = ?3, images = ?4,
                 finished_at = NULL, ok = NULL, failed = NULL, cost_micros = NULL",
                params![run.run_id, run.manifest, run.started_at, run.images as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records a run's totals when it ends.
    pub fn finish_run(
        &self,
        run_id: &str,
        ok: u64,
        failed: u64,
        cost: Usd,
        finished_at: i64,
    ) -> Result<(), LedgerError> {
        self.conn()
            .execute(
                "UPDATE runs SET ok = ?2, failed = ?3, cost_micros = ?4, finished_at = ?5
                 WHERE run_id = ?1",
                params![run_id, ok as i64, failed as i64, cost.micros(), finished_at],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Every recorded run, newest first.
    pub fn runs(&self) -> Result<Vec<RunSummary>, LedgerError> {
        self.query_runs("", None)
    }

    /// One run by id.
    pub fn run(&self, run_id: &str) -> Result<Option<RunSummary>, LedgerError> {
        Ok(self.query_runs("WHERE r.run_id = ?1", Some(run_id))?.pop())
    }

    fn query_runs(&self, filter: &str, id: Option<&str>) -> Result<Vec<RunSummary>, LedgerError> {
        let sql = format!(
            "SELECT r.run_id, r.manifest, r.started_at, r.images, r.finished_at,
                (SELECT COUNT(DISTINCT image_index) FROM rows w WHERE w.run_id = r.run_id),
                (SELECT COUNT(DISTINCT image_index) FROM rows w
                    WHERE w.run_id = r.run_id AND w.status = 'failed'),
                (SELECT COALESCE(SUM(cost_micros), 0) FROM rows w WHERE w.run_id = r.run_id),
                r.ok, r.failed, r.cost_micros,
                (SELECT COALESCE(SUM(cost_micros), 0) FROM spend s WHERE s.run_id = r.run_id),
                (SELECT COALESCE(SUM(amount_micros), 0) FROM holds h WHERE h.run_id = r.run_id)
             FROM runs r {filter} ORDER BY r.started_at DESC, r.rowid DESC"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let map = |r: &rusqlite::Row| {
            let seen: i64 = r.get(5)?;
            let failed_rows: i64 = r.get(6)?;
            Ok(RunSummary {
                info: RunInfo {
                    run_id: r.get(0)?,
                    manifest: r.get(1)?,
                    started_at: r.get(2)?,
                    images: r.get::<_, i64>(3)? as u64,
                },
                finished_at: r.get(4)?,
                ok: r.get::<_, Option<i64>>(8)?.unwrap_or(seen - failed_rows) as u64,
                failed: r.get::<_, Option<i64>>(9)?.unwrap_or(failed_rows) as u64,
                // The spend table knows calls whose rows were never written (a killed run);
                // the rows know calls recorded before spend named its run's images.
                cost: Usd(r
                    .get::<_, Option<i64>>(10)?
                    .unwrap_or(r.get(7)?)
                    .max(r.get(11)?)),
                possibly_billed: Usd(r.get(12)?),
            })
        };
        let rows = match id {
            Some(id) => stmt.query_map([id], map),
            None => stmt.query_map([], map),
        };
        rows.and_then(Iterator::collect).map_err(|e| self.err(e))
    }

    /// Records report rows of a run (one transaction; a row recorded again replaces itself).
    /// Rows of one step come together, in order: each is numbered by its place in the step.
    pub fn record_rows(&self, run_id: &str, rows: &[StepRecord]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO rows VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                      ?19)",
                )
                .map_err(|e| self.err(e))?;
            let mut attempt = 0i64;
            for (i, r) in rows.iter().enumerate() {
                let same_step =
                    i > 0 && rows[i - 1].image_index == r.image_index && rows[i - 1].step == r.step;
                attempt = if same_step { attempt + 1 } else { 0 };
                let (in_w, in_h) = split(r.input_size);
                let (out_w, out_h) = split(r.output_size);
                stmt.execute(params![
                    run_id,
                    r.image_index as i64,
                    r.step as i64,
                    r.image,
                    r.op.as_str(),
                    r.model,
                    r.reason.as_str(),
                    r.status.as_str(),
                    r.cost.micros(),
                    r.latency_ms as i64,
                    r.attempts,
                    in_w,
                    in_h,
                    out_w,
                    out_h,
                    r.output,
                    r.error,
                    r.qa.as_ref().map(Qa::flags_text),
                    attempt,
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Of the results `model` made for `op` steps in the runs recorded here (each counted once,
    /// when it ran: cache hits are not counted again), how many scored at least `mark`, and how
    /// many were measured: `(passed, measured)`.
    pub fn passed(&self, op: Op, model: &str, mark: f32) -> Result<(u64, u64), LedgerError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT qa_flags FROM rows WHERE op = ?1 AND model = ?2 AND attempts > 0
                 AND qa_flags IS NOT NULL AND status IN ('ok', 'superseded')",
            )
            .map_err(|e| self.err(e))?;
        let flags = stmt
            .query_map(params![op.as_str(), model], |r| r.get::<_, String>(0))
            .and_then(Iterator::collect::<rusqlite::Result<Vec<String>>>)
            .map_err(|e| self.err(e))?;
        let scores = flags.iter().filter_map(|f| Qa::parse_flags(f));
        let (mut passed, mut measured) = (0, 0);
        for qa in scores {
            measured += 1;
            passed += u64::from(qa.score() >= mark);
        }
        Ok((passed, measured))
    }

    /// A run's report rows in input-then-step order.
    pub fn rows(&self, run_id: &str) -> Result<Vec<StepRecord>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT image_index, image, step, op, model, reason, status, cost_micros,
                 latency_ms, attempts, in_w, in_h, out_w, out_h, output, error, qa_flags
                 FROM rows WHERE run_id = ?1 ORDER BY image_index, step, attempt",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([run_id], record_from_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }
}

fn record_from_row(r: &rusqlite::Row) -> rusqlite::Result<StepRecord> {
    let size = |w: usize, h: usize| -> rusqlite::Result<Option<(u32, u32)>> {
        Ok(r.get::<_, Option<u32>>(w)?.zip(r.get::<_, Option<u32>>(h)?))
    };
    let op: String = r.get(3)?;
    let reason: String = r.get(5)?;
    let status: String = r.get(6)?;
    Ok(StepRecord {
        image_index: r.get::<_, i64>(0)? as usize,
        image: r.get(1)?,
        step: r.get::<_, i64>(2)? as usize,
        op: Op::parse(&op).ok_or_else(|| unknown(3, op.clone()))?,
        model: r.get(4)?,
        reason: Reason::parse(&reason).ok_or_else(|| unknown(5, reason.clone()))?,
        status: Status::parse(&status).ok_or_else(|| unknown(6, status.clone()))?,
        cost: Usd(r.get(7)?),
        latency_ms: r.get::<_, i64>(8)? as u64,
        attempts: r.get(9)?,
        input_size: size(10, 11)?,
        output_size: size(12, 13)?,
        output: r.get(14)?,
        error: r.get(15)?,
        qa: qa_from(r, 16)?,
    })
}

/// A `qa_flags` column: NULL when nothing was measured.
pub(super) fn qa_from(r: &rusqlite::Row, col: usize) -> rusqlite::Result<Option<Qa>> {
    match r.get::<_, Option<String>>(col)? {
        None => Ok(None),
        Some(text) => Qa::parse_flags(&text)
            .map(Some)
            .ok_or_else(|| unknown(col, text)),
    }
}

fn split(size: Option<(u32, u32)>) -> (Option<u32>, Option<u32>) {
    size.map_or((None, None), |(w, h)| (Some(w), Some(h)))
}
