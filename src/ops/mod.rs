//! Synchronous, pure image operations: one per file. Never sees Tokio or the manifest.
//!
//! Everything works on 8-bit RGBA (`image::RgbaImage`). Colour maths happens in linear light
//! ([`colour`]); shared float-plane filters live in [`filter`] and the border-fitted backdrop
//! model used by both background removal and lighting lives in [`backdrop`].

pub mod backdrop;
pub mod colour;
pub mod fill;
pub mod filter;
pub mod frame;
pub mod fuse;
pub mod lighting;
pub mod outpaint;
pub mod remove_bg;
pub mod replace_bg;
pub mod saliency;
pub mod segment;
pub mod upscale;

pub use lighting::{LightingOptions, fix_lighting};
pub use remove_bg::{RemoveBgOptions, apply_alpha, estimate_alpha, remove_background};
pub use upscale::{ResizeOptions, resize};

/// Why an operation could not run.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("cannot resize {src_w}x{src_h} to {dst_w}x{dst_h}: sizes must be non-zero")]
    ZeroSize {
        src_w: u32,
        src_h: u32,
        dst_w: u32,
        dst_h: u32,
    },
    #[error("resampling failed: {0}")]
    Resize(#[from] fast_image_resize::ResizeError),
    #[error("{0} has no local implementation")]
    NoLocal(crate::catalog::Op),
    #[error("no product to frame: the image is empty or entirely transparent")]
    NoProduct,
    #[error("the segmentation network failed: {0}")]
    Network(String),
}
