//! Durable per-(image, step) outcomes.
//!
//! Today this owns the record type every other part agrees on: the scheduler produces a
//! [`StepRecord`] for each image and step, the report renders it. The crash-safe store and the
//! content-addressed result cache that make reruns free build on these records.

use std::fmt;

use crate::catalog::Op;
use crate::money::Usd;

/// What happened to one image at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    Failed,
    Skipped,
    /// Dry run: the route this image would take; nothing was called.
    Planned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Planned => "planned",
        }
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
    /// Short kebab-case reason for the model choice or the outcome.
    pub reason: String,
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
}
