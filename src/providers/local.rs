//! The built-in local implementation of every op: free, offline, always available.
//!
//! Translates a step's manifest parameters into [`crate::ops`] options and runs the op. Synchronous
//! and CPU-bound: the scheduler calls it on the CPU pool.

use image::RgbaImage;

use crate::manifest::{OpParams, Step};
use crate::ops::{self, OpError};

/// Version of the built-in local ops: bump when any local op's output changes (cached local
/// results of older versions are then recomputed).
pub const OPS_VERSION: u32 = 1;

/// Runs `step` locally on `image`.
pub fn run_step(step: &Step, image: &RgbaImage) -> Result<RgbaImage, OpError> {
    match &step.params {
        OpParams::RemoveBg(p) => Ok(ops::remove_bg::remove_background(
            image,
            &ops::remove_bg::RemoveBgOptions {
                background: p.background.map(|c| c.0),
            },
        )),
        OpParams::FixLighting(p) => Ok(ops::lighting::fix_lighting(
            image,
            &ops::lighting::LightingOptions {
                strength: p.strength,
            },
        )),
        OpParams::Upscale(p) => {
            let (w, h) = p.target.output_size(image.width(), image.height());
            ops::upscale::resize(
                image,
                w,
                h,
                &ops::upscale::ResizeOptions { sharpen: p.sharpen },
            )
        }
    }
}
