//! The durable state of a pipeline: one SQLite file `<state>/state.db` plus the blob folder
//! `<state>/cache/`.
//!
//! Owns the schema (versioned with `PRAGMA user_version`) and every read and write of runs, report
//! rows, the step-cache index, daily spend and the catalog lock. Money is stored as integer
//! micro-dollars. The database runs in WAL mode with `synchronous=NORMAL` (every committed
//! transaction survives `kill -9`; only a power loss may drop the last few) and a busy timeout,
//! so two runs sharing one state folder wait for each other instead of failing. A [`Store`] is one
//! connection behind a `std::sync::Mutex`: every method holds it for one short statement or
//! transaction and never across an `.await`; from async code call it directly for single-row
//! calls (they take microseconds) or via `spawn_blocking` for large batches. This module never
//! decides whether to call a model; it only answers what is known and records what happened.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{BlobStore, LedgerError, Status, StepKey, StepRecord};
use crate::catalog::{Date, Op};
use crate::money::Usd;
use crate::reason::Reason;

/// The schema version this build writes and understands.
const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = "
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, manifest TEXT NOT NULL, started_at INTEGER NOT NULL,
    images INTEGER NOT NULL, finished_at INTEGER, ok INTEGER, failed INTEGER, cost_micros INTEGER
);
CREATE TABLE rows (
    run_id TEXT NOT NULL, image_index INTEGER NOT NULL, step INTEGER NOT NULL,
    image TEXT NOT NULL, op TEXT NOT NULL, model TEXT NOT NULL, reason TEXT NOT NULL,
    status TEXT NOT NULL, cost_micros INTEGER NOT NULL, latency_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL, in_w INTEGER, in_h INTEGER, out_w INTEGER, out_h INTEGER,
    output TEXT NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (run_id, image_index, step)
) WITHOUT ROWID;
CREATE TABLE steps (
    key BLOB PRIMARY KEY, blob TEXT NOT NULL, model TEXT NOT NULL, cost_micros INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL, out_w INTEGER NOT NULL, out_h INTEGER NOT NULL,
    created_at INTEGER NOT NULL, last_used INTEGER NOT NULL
);
CREATE INDEX steps_last_used ON steps (last_used);
CREATE INDEX steps_blob ON steps (blob);
CREATE TABLE spend (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, model TEXT NOT NULL,
    cost_micros INTEGER NOT NULL, at_unix INTEGER NOT NULL
);
CREATE INDEX spend_at ON spend (at_unix);
CREATE TABLE locks (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, recorded_at INTEGER NOT NULL);
CREATE TABLE lock_entries (
    seq INTEGER NOT NULL REFERENCES locks (seq), model TEXT NOT NULL, price_micros INTEGER NOT NULL,
    PRIMARY KEY (seq, model)
);
";

/// Version 2: which cached result each output file holds, so an unchanged rerun writes nothing.
const SCHEMA_V2: &str = "
CREATE TABLE outputs (
    dest TEXT PRIMARY KEY, key BLOB NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 3: money held for daily-budget calls in flight, across every run sharing the store.
const SCHEMA_V3: &str = "
CREATE TABLE holds (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, amount_micros INTEGER NOT NULL,
    at_unix INTEGER NOT NULL
);
";

/// Version 4: inputs whose content is known by a version from their listing (S3 ETag and size),
/// so a rerun can walk the cache without downloading them.
const SCHEMA_V4: &str = "
CREATE TABLE inputs (
    source TEXT PRIMARY KEY, version TEXT NOT NULL, hash BLOB NOT NULL, w INTEGER NOT NULL,
    h INTEGER NOT NULL, icc BLOB, recorded_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 5: every paid call names its image and step (spend, and holds, which every remote
/// call now takes, so calls in flight when a run is killed are known), and claims on step keys,
/// so runs going at once never pay twice for one step.
const SCHEMA_V5: &str = "
ALTER TABLE spend ADD COLUMN image TEXT NOT NULL DEFAULT '';
ALTER TABLE spend ADD COLUMN step INTEGER;
ALTER TABLE holds ADD COLUMN model TEXT NOT NULL DEFAULT '';
ALTER TABLE holds ADD COLUMN image TEXT NOT NULL DEFAULT '';
ALTER TABLE holds ADD COLUMN step INTEGER;
CREATE INDEX spend_run ON spend (run_id);
CREATE INDEX holds_run ON holds (run_id);
CREATE INDEX rows_image ON rows (run_id, image, step);
CREATE TABLE claims (
    key BLOB PRIMARY KEY, run_id TEXT NOT NULL, token INTEGER NOT NULL, at_unix INTEGER NOT NULL
) WITHOUT ROWID;
";

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

/// Who does a step now; see [`Store::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller does it.
    Mine,
    /// A live run (maybe the caller's own, for a duplicate image) is doing it.
    Theirs { run_id: String },
}

/// A cache entry is touched (its `last_used` refreshed) at most this often, so a cached rerun
/// reads far more than it writes.
const TOUCH_EVERY_SECS: i64 = 3_600;

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

/// A cached step result: the blob holding its encoded image (lossless PNG) and what producing it
/// originally cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedStep {
    /// blake3 hex of the result bytes, a name in the [`BlobStore`]; empty when the result was
    /// not kept (a free local result, recomputed when its pixels are needed).
    pub blob: String,
    /// `local` or the model id that produced it.
    pub model: String,
    /// What the original call was billed.
    pub cost: Usd,
    pub latency_ms: u64,
    pub out_w: u32,
    pub out_h: u32,
    /// Unix seconds.
    pub created_at: i64,
}

/// Which result an output file was written from, and how the file looked right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// The step key of the result, chained with the output format (see the scheduler's cache).
    pub key: StepKey,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch (0 for outputs in S3).
    pub mtime_ns: i64,
}

/// What an input listed with a version held when it was last read: its content hash (the start
/// of its cache chain), pixel size and ICC profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownInput {
    pub hash: [u8; 32],
    pub size: (u32, u32),
    pub icc: Option<Vec<u8>>,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcStats {
    pub entries_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
}

/// The state store of one pipeline. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    /// One connection; locked for one statement or transaction at a time, never across `.await`.
    conn: Mutex<Connection>,
    blobs: BlobStore,
}

/// A column value that does not parse (an op or status this build does not know).
#[derive(Debug, thiserror::Error)]
#[error("unknown value `{0}`")]
struct UnknownValue(String);

impl Store {
    /// Opens (creating if needed) `dir/state.db` and the blob folder `dir/cache/`.
    pub fn open(dir: &Path) -> Result<Store, LedgerError> {
        let path = dir.join("state.db");
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let sql = |source| LedgerError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
        // Switching a new database to WAL answers "locked" at once, without waiting, while
        // another process does the same; runs started together retry for a while instead.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let setup = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
                .and_then(|_| {
                    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
                })
                .map_err(sql)
                .and_then(|()| migrate(&mut conn, &path));
            match setup {
                Err(LedgerError::Sqlite { source, .. })
                    if is_busy(&source) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        }
        Ok(Store {
            blobs: BlobStore::new(&dir.join("cache")),
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The blob folder holding cached step results.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (it rolls back on
        // drop), so the connection is still good.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

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
    pub fn record_rows(&self, run_id: &str, rows: &[StepRecord]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO rows VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                )
                .map_err(|e| self.err(e))?;
            for r in rows {
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
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// A run's report rows in input-then-step order.
    pub fn rows(&self, run_id: &str) -> Result<Vec<StepRecord>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT image_index, image, step, op, model, reason, status, cost_micros,
                 latency_ms, attempts, in_w, in_h, out_w, out_h, output, error
                 FROM rows WHERE run_id = ?1 ORDER BY image_index, step",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([run_id], record_from_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    /// The cached result of a step, if any and its blob is still present. Refreshes the entry's
    /// last use (for [`Store::gc`]). An entry whose blob is gone is dropped and reported missing.
    pub fn lookup(&self, key: &StepKey) -> Result<Option<CachedStep>, LedgerError> {
        let conn = self.conn();
        let found = conn
            .prepare_cached(
                "SELECT blob, model, cost_micros, latency_ms, out_w, out_h, created_at, last_used
                 FROM steps WHERE key = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&key.0[..]], |r| {
                    let step = CachedStep {
                        blob: r.get(0)?,
                        model: r.get(1)?,
                        cost: Usd(r.get(2)?),
                        latency_ms: r.get::<_, i64>(3)? as u64,
                        out_w: r.get(4)?,
                        out_h: r.get(5)?,
                        created_at: r.get(6)?,
                    };
                    Ok((step, r.get::<_, i64>(7)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some((step, last_used)) = found else {
            return Ok(None);
        };
        if !step.blob.is_empty() && !self.blobs.contains(&step.blob) {
            conn.execute("DELETE FROM steps WHERE key = ?1", [&key.0[..]])
                .map_err(|e| self.err(e))?;
            return Ok(None);
        }
        let now = now_unix();
        if now - last_used >= TOUCH_EVERY_SECS {
            conn.execute(
                "UPDATE steps SET last_used = ?2 WHERE key = ?1",
                params![&key.0[..], now],
            )
            .map_err(|e| self.err(e))?;
        }
        Ok(Some(step))
    }

    /// Records a step's result under `key` (its blob must already be in [`Store::blobs`]).
    /// Replaces an older entry for the same key (a `--force` rerun).
    pub fn record_step(&self, key: &StepKey, step: &CachedStep) -> Result<(), LedgerError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO steps
                 (key, blob, model, cost_micros, latency_ms, out_w, out_h, created_at, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![
                    &key.0[..],
                    step.blob,
                    step.model,
                    step.cost.micros(),
                    step.latency_ms as i64,
                    step.out_w,
                    step.out_h,
                    step.created_at,
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// What the output file `dest` was last written from: the key of the result it holds and
    /// the file's size and modification time (nanoseconds) right after writing.
    pub fn output(&self, dest: &str) -> Result<Option<OutputRecord>, LedgerError> {
        self.conn()
            .prepare_cached("SELECT key, size, mtime_ns FROM outputs WHERE dest = ?1")
            .and_then(|mut s| {
                s.query_row([dest], |r| {
                    let key: Vec<u8> = r.get(0)?;
                    Ok(OutputRecord {
                        key: key.try_into().map(StepKey).unwrap_or(StepKey([0; 32])),
                        size: r.get::<_, i64>(1)? as u64,
                        mtime_ns: r.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// What `source` (an input's address) held when it was last read at this `version`; `None`
    /// if it was never read at that version.
    pub fn known_input(
        &self,
        source: &str,
        version: &str,
    ) -> Result<Option<KnownInput>, LedgerError> {
        self.conn()
            .prepare_cached("SELECT hash, w, h, icc FROM inputs WHERE source = ?1 AND version = ?2")
            .and_then(|mut s| {
                s.query_row([source, version], |r| {
                    let hash: Vec<u8> = r.get(0)?;
                    let (size, icc) = ((r.get(1)?, r.get(2)?), r.get(3)?);
                    Ok(hash
                        .try_into()
                        .ok()
                        .map(|hash| KnownInput { hash, size, icc }))
                })
                .optional()
            })
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    /// Records what `source` holds at `version` (replacing what an older version held).
    pub fn record_input(
        &self,
        source: &str,
        version: &str,
        known: &KnownInput,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO inputs (source, version, hash, w, h, icc, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    source,
                    version,
                    &known.hash[..],
                    known.size.0,
                    known.size.1,
                    known.icc,
                    now_unix()
                ])
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Forgets what `source` held (it turned out to hold something else), so the next run reads it.
    pub fn forget_input(&self, source: &str) -> Result<(), LedgerError> {
        self.conn()
            .execute("DELETE FROM inputs WHERE source = ?1", [source])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records that `dest` now holds the result `record.key`.
    pub fn record_output(&self, dest: &str, record: &OutputRecord) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO outputs (dest, key, size, mtime_ns, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    dest,
                    &record.key.0[..],
                    record.size as i64,
                    record.mtime_ns,
                    now_unix()
                ])
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

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
            "SELECT s.image, s.step, s.model, s.cost_micros FROM spend s WHERE s.run_id = ?1
             AND NOT EXISTS (SELECT 1 FROM rows w
                 WHERE w.run_id = s.run_id AND w.image = s.image AND w.step = s.step)
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

    /// Claims the right to do the step `key` (a claim key, see the scheduler's cache) for the
    /// task `token` of `run_id`, so that runs going at once, and duplicate images within a run,
    /// never pay twice for one step: the claimer does it, everyone else waits for its result.
    /// A claim of a run that is no longer alive (see [`super::lease`]) is taken over.
    pub fn claim(
        &self,
        key: &StepKey,
        run_id: &str,
        token: u64,
        now_unix: i64,
    ) -> Result<Claim, LedgerError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let holder: Option<(String, i64)> = tx
            .query_row(
                "SELECT run_id, token FROM claims WHERE key = ?1",
                [&key.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match holder {
            Some((run, t)) if run == run_id && t == token as i64 => return Ok(Claim::Mine),
            Some((run, _)) if run == run_id || self.is_alive(&run) => {
                return Ok(Claim::Theirs { run_id: run });
            }
            _ => {}
        }
        tx.execute(
            "INSERT OR REPLACE INTO claims (key, run_id, token, at_unix) VALUES (?1, ?2, ?3, ?4)",
            params![&key.0[..], run_id, token as i64, now_unix],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Claim::Mine)
    }

    /// Ends the claim `token` made on `key` (done, or given up).
    pub fn release_claim(&self, key: &StepKey, token: u64) -> Result<(), LedgerError> {
        self.conn()
            .execute(
                "DELETE FROM claims WHERE key = ?1 AND token = ?2",
                params![&key.0[..], token as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Ends every claim of `run_id` (when it ends).
    pub fn release_claims(&self, run_id: &str) -> Result<(), LedgerError> {
        self.conn()
            .execute("DELETE FROM claims WHERE run_id = ?1", [run_id])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Whether the run `run_id` is alive (holds its lease in this state folder).
    pub fn is_alive(&self, run_id: &str) -> bool {
        super::lease::is_alive(self.dir(), run_id)
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Everything billed on the UTC day `day`, over all runs.
    pub fn spent_on(&self, day: Date) -> Result<Usd, LedgerError> {
        spent_during(&self.conn(), day).map_err(|e| self.err(e))
    }

    /// Records the catalog entries (model id, price per image) a run used.
    pub fn record_lock(&self, run_id: &str, entries: &[(String, Usd)]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO locks (run_id, recorded_at) VALUES (?1, ?2)",
            params![run_id, now_unix()],
        )
        .map_err(|e| self.err(e))?;
        let seq = tx.last_insert_rowid();
        for (model, price) in entries {
            tx.execute(
                "INSERT OR REPLACE INTO lock_entries (seq, model, price_micros) VALUES (?1, ?2, ?3)",
                params![seq, model, price.micros()],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The most recently recorded lock, sorted by model id (empty when none).
    pub fn last_lock(&self) -> Result<Vec<(String, Usd)>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT model, price_micros FROM lock_entries
                 WHERE seq = (SELECT MAX(seq) FROM locks) ORDER BY model",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, Usd(r.get(1)?))))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    /// Deletes cache entries not used for `older_than`, then every blob no entry refers to that
    /// is at least as old (including temp files a crash left behind).
    pub fn gc(&self, older_than: Duration) -> Result<GcStats, LedgerError> {
        self.gc_before(now_unix() - older_than.as_secs() as i64)
    }

    /// [`Store::gc`] with an explicit cutoff (unix seconds).
    pub fn gc_before(&self, cutoff: i64) -> Result<GcStats, LedgerError> {
        let mut stats = GcStats::default();
        let conn = self.conn();
        stats.entries_removed = conn
            .execute("DELETE FROM steps WHERE last_used < ?1", [cutoff])
            .map_err(|e| self.err(e))? as u64;
        let mut referenced = conn
            .prepare_cached("SELECT 1 FROM steps WHERE blob = ?1 LIMIT 1")
            .map_err(|e| self.err(e))?;
        for (path, name, mtime) in self.blobs.list() {
            if mtime >= cutoff {
                continue;
            }
            let used = referenced.exists([&name]).map_err(|e| self.err(e))?;
            if !used {
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                if std::fs::remove_file(&path).is_ok() {
                    stats.blobs_removed += 1;
                    stats.bytes_freed += size;
                }
            }
        }
        Ok(stats)
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

/// SQLite's "busy" or "locked": another connection holds a lock this one needs.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let sql = |source| LedgerError::Sqlite {
        path: path.to_owned(),
        source,
    };
    // IMMEDIATE: two processes opening a fresh store at once must not both create the schema.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        tx.execute_batch(SCHEMA).map_err(sql)?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2).map_err(sql)?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3).map_err(sql)?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4).map_err(sql)?;
    }
    if version < 5 {
        tx.execute_batch(SCHEMA_V5).map_err(sql)?;
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(sql)?;
    }
    tx.commit().map_err(sql)
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
    })
}

fn unknown(col: usize, value: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, Box::new(UnknownValue(value)))
}

fn split(size: Option<(u32, u32)>) -> (Option<u32>, Option<u32>) {
    size.map_or((None, None), |(w, h)| (Some(w), Some(h)))
}

/// Unix seconds now.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`; the inverse of
/// [`Date::from_days_since_epoch`]).
fn days_from_civil(d: Date) -> i64 {
    let y = i64::from(d.y) - i64::from(d.m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(d.m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d.d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
