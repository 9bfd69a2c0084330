//! The step-cache index: which result each step key names (its blob, model, original cost and
//! size), refreshed on use, and trimmed by `cache gc`.

use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::{LedgerError, Store};
use crate::ledger::{StepKey, unix_now};
use crate::money::Usd;
use crate::qa::Qa;

/// A cache entry is touched (its `last_used` refreshed) at most this often, so a cached rerun
/// reads far more than it writes.
const TOUCH_EVERY_SECS: i64 = 3_600;

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
    /// The local quality checks of the result (`None` for entries recorded before retouch kept
    /// them).
    pub qa: Option<Qa>,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcStats {
    pub entries_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
}

impl Store {
    /// The cached result of a step, if any and its blob is still present. Refreshes the entry's
    /// last use (for [`Store::gc`]). An entry whose blob is gone is dropped and reported missing.
    pub fn lookup(&self, key: &StepKey) -> Result<Option<CachedStep>, LedgerError> {
        let conn = self.conn();
        let found = conn
            .prepare_cached(
                "SELECT blob, model, cost_micros, latency_ms, out_w, out_h, created_at, last_used,
                 qa_flags FROM steps WHERE key = ?1",
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
                        qa: super::runs::qa_from(r, 8)?,
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
        let now = unix_now();
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
                 (key, blob, model, cost_micros, latency_ms, out_w, out_h, created_at, last_used,
                  qa_flags)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
                params![
                    &key.0[..],
                    step.blob,
                    step.model,
                    step.cost.micros(),
                    step.latency_ms as i64,
                    step.out_w,
                    step.out_h,
                    step.created_at,
                    step.qa.as_ref().map(Qa::flags_text),
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Deletes cache entries not used for `older_than`, then every blob no entry refers to that
    /// is at least as old (including temp files a crash left behind).
    pub fn gc(&self, older_than: Duration) -> Result<GcStats, LedgerError> {
        self.gc_before(unix_now() - older_than.as_secs() as i64)
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
