//! What files hold: inputs known by the version their listing gave (S3 ETag and size), so a
//! rerun can walk the cache without downloading them; outputs by the result written to them,
//! so an unchanged rerun rewrites nothing; and each output's provenance (what it is made of).

use rusqlite::{OptionalExtension, params};

use super::{LedgerError, Store};
use crate::ledger::{StepKey, unix_now};

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

impl Store {
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
                    unix_now()
                ])
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records what the output `dest` is made of (`json`: the provenance sidecar's content),
    /// as written by `run_id`.
    pub fn record_provenance(
        &self,
        dest: &str,
        run_id: &str,
        json: &str,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO provenance (dest, run_id, json, recorded_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![dest, run_id, json, unix_now()]))
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The provenance of the output `dest` as last written: the run that wrote it and the JSON.
    pub fn provenance(&self, dest: &str) -> Result<Option<(String, String)>, LedgerError> {
        self.conn()
            .prepare_cached("SELECT run_id, json FROM provenance WHERE dest = ?1")
            .and_then(|mut s| {
                s.query_row([dest], |r| Ok((r.get(0)?, r.get(1)?)))
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
                    unix_now()
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
}
