//! How one step of one image ended, as the row builder and the image task exchange it.

use std::sync::Arc;
use std::time::Duration;

use image::RgbaImage;

use crate::money::Usd;
use crate::qa::Qa;
use crate::reason::Reason;

/// A step that finished (ran somewhere, or was skipped by `fallback: skip`).
pub(super) struct StepDone {
    pub model: String,
    pub reason: Reason,
    pub cost: Usd,
    pub attempts: u32,
    pub latency: Duration,
    /// The new image; `None` when the step was skipped.
    pub image: Option<Arc<RgbaImage>>,
    /// The local quality checks of the new image; `None` when nothing ran.
    pub qa: Option<Qa>,
}

/// A step that failed, for its row.
pub(super) struct StepFailed {
    pub model: String,
    pub reason: Reason,
    pub error: String,
    pub cost: Usd,
    pub attempts: u32,
    pub latency: Duration,
}

impl StepFailed {
    /// Failed before anything ran (the pixels could not be read).
    pub(super) fn nothing_ran(reason: Reason, error: String) -> StepFailed {
        StepFailed {
            model: "-".into(),
            reason,
            error,
            cost: Usd::ZERO,
            attempts: 0,
            latency: Duration::ZERO,
        }
    }
}
