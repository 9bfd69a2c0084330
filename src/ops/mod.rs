//! Synchronous, pure image operations: one per file. Never sees Tokio or the manifest.
//! PLACEHOLDER until the real implementations land.

pub mod lighting;
pub mod remove_bg;
pub mod upscale;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("invalid size {0}x{1}")]
    BadSize(u32, u32),
}
