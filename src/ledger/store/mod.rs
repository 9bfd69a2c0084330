//! The durable state of a pipeline: one SQLite file `<state>/state.db` plus the blob folder
//! `<state>/cache/`.
//!
//! Owns the schema (versioned with `PRAGMA user_version`) and the connection; every read and
//! write lives in the file of its record kind: `runs` (runs and report rows), `steps` (the
//! step-cache index), `files` (inputs and outputs), `money` (spend and holds), `claims` (who
//! does a paid step now) and `catalog_locks` (the models each run could use). Money is stored as integer
//! micro-dollars. The database runs in WAL mode with `synchronous=NORMAL` (every committed
//! transaction survives `kill -9`; only a power loss may drop the last few) and a busy timeout,
//! so two runs sharing one state folder wait for each other instead of failing. A [`Store`] is one
//! connection behind a `std::sync::Mutex`: every method holds it for one short statement or
//! transaction and never across an `.await`; from async code call it directly for single-row
//! calls (they take microseconds) or via `spawn_blocking` for large batches. This module never
//! decides whether to call a model; it only answers what is known and records what happened.

mod catalog_locks;
mod claims;
mod files;
mod money;
mod runs;
mod steps;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, TransactionBehavior};

pub use claims::Claim;
pub use files::{KnownInput, OutputRecord};
pub use money::{CallRecord, HOLD_EXPIRES_SECS, HoldId, PaidCall, RunMoney};
pub use runs::{RunInfo, RunSummary};
pub use steps::{CachedStep, GcStats};

use super::{BlobStore, LedgerError};

/// The schema version this build writes and understands.
const SCHEMA_VERSION: i64 = 8;

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
CREATE TABLE claims (
    key BLOB PRIMARY KEY, run_id TEXT NOT NULL, token INTEGER NOT NULL, at_unix INTEGER NOT NULL
) WITHOUT ROWID;
";

/// v6: the quality checks' flags of report rows and cached results (NULL: not measured).
const SCHEMA_V6: &str = "
ALTER TABLE rows ADD COLUMN qa_flags TEXT;
ALTER TABLE steps ADD COLUMN qa_flags TEXT;
";

/// v7: a step may have several rows (attempts superseded by `escalate:`, then the kept one), so
/// rows are keyed by their attempt within the step too (0 for the first row of a step).
const SCHEMA_V7: &str = "
CREATE TABLE rows_v7 (
    run_id TEXT NOT NULL, image_index INTEGER NOT NULL, step INTEGER NOT NULL,
    image TEXT NOT NULL, op TEXT NOT NULL, model TEXT NOT NULL, reason TEXT NOT NULL,
    status TEXT NOT NULL, cost_micros INTEGER NOT NULL, latency_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL, in_w INTEGER, in_h INTEGER, out_w INTEGER, out_h INTEGER,
    output TEXT NOT NULL, error TEXT NOT NULL, qa_flags TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, image_index, step, attempt)
) WITHOUT ROWID;
INSERT INTO rows_v7 SELECT run_id, image_index, step, image, op, model, reason, status,
    cost_micros, latency_ms, attempts, in_w, in_h, out_w, out_h, output, error, qa_flags, 0
    FROM rows;
DROP TABLE rows;
ALTER TABLE rows_v7 RENAME TO rows;
";

/// v8: each output's provenance (the sidecar's JSON), by output, written whenever the output is.
const SCHEMA_V8: &str = "
CREATE TABLE provenance (
    dest TEXT PRIMARY KEY, run_id TEXT NOT NULL, json TEXT NOT NULL, recorded_at INTEGER NOT NULL
) WITHOUT ROWID;
";

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
    if version < 6 {
        tx.execute_batch(SCHEMA_V6).map_err(sql)?;
    }
    if version < 7 {
        tx.execute_batch(SCHEMA_V7).map_err(sql)?;
    }
    if version < 8 {
        tx.execute_batch(SCHEMA_V8).map_err(sql)?;
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(sql)?;
    }
    tx.commit().map_err(sql)
}

/// A column value that does not parse.
fn unknown(col: usize, value: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, Box::new(UnknownValue(value)))
}

#[cfg(test)]
mod tests;
