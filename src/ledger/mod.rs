//! Durable per-(image, step) outcomes.
//!
//! Owns the record type every other part agrees on (the scheduler produces a [`StepRecord`] for
//! each image and step, the report renders it), the crash-safe SQLite state [`Store`] (runs,
//! report rows, daily spend, catalog lock, step cache index) and the content-addressed result
//! cache ([`StepKey`], [`BlobStore`]) that make reruns free, that cache's tier shared by
//! every machine in S3 (`shared.rs`), and the coordination of many machines in DynamoDB
//! (`coordination/`: claims, shared caps, shared rate limits). It never calls a model or routes.

mod cache;
pub mod catalog_lock;
pub mod coordination;
pub mod lease;
pub mod shared;
mod store;

use std::fmt;
use std::path::PathBuf;

pub use cache::{BlobStore, StepKey, StepSpec, input_hash, output_spec, spec_for};
pub use store::{
    CachedStep, CallRecord, Claim, GcStats, HOLD_EXPIRES_SECS, HoldId, KnownInput, OutputRecord,
    PaidCall, RunInfo, RunMoney, RunSummary, Store,
};

/// Unix seconds now (the clock every record of the state store is stamped with).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A state store or blob that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("state store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state store {path} has schema version {found}; this retouch understands up to {supported}"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}

use crate::catalog::Op;
use crate::money::Usd;
use crate::reason::Reason;

/// What happened to one image at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    Failed,
    Skipped,
    /// Dry run: the route this image would take; nothing was called.
    Planned,
    /// An attempt at a step whose result is not the one kept (`escalate:` redid the step); the
    /// step's kept row follows it.
    Superseded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Planned => "planned",
            Status::Superseded => "superseded",
        }
    }

    /// The inverse of [`Status::as_str`].
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Ok,
            Status::Failed,
            Status::Skipped,
            Status::Planned,
            Status::Superseded,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one step of one image: one report row.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Position of the image in the sorted input list (for deterministic ordering).
    pub image_index: usize,
    /// The image as the user knows it (manifest-relative path, or S3 URI).
    pub image: String,
    /// 0-based step index.
    pub step: usize,
    pub op: Op,
    /// `local` or a model id.
    pub model: String,
    /// Why this model, or why the step failed.
    pub reason: Reason,
    pub status: Status,
    /// What this step was billed.
    pub cost: Usd,
    pub latency_ms: u64,
    /// Calls made (remote) or 1 (local); 0 when nothing ran.
    pub attempts: u32,
    pub input_size: Option<(u32, u32)>,
    pub output_size: Option<(u32, u32)>,
    /// Where the image's final result was written, once it was.
    pub output: String,
    pub error: String,
    /// The local quality checks of the step's result; `None` when no result was measured
    /// (failed, skipped, planned, or a cached result from before retouch kept them).
    pub qa: Option<crate::qa::Qa>,
}
