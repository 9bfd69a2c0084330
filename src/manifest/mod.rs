//! YAML manifest → validated [`Manifest`], or every diagnostic at once.
//!
//! Owns the manifest format (version 1): raw serde types, validation, and diagnostics that point at
//! the file, line and column or key path. No `Raw*` type leaves this module.

mod model;

pub use model::*;

use std::path::Path;

/// Every problem found in a manifest, in source order.
#[derive(Debug, thiserror::Error)]
#[error("manifest {path} is invalid")]
pub struct ManifestErrors {
    pub path: std::path::PathBuf,
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path, catalog: &crate::catalog::Catalog) -> Result<Manifest, ManifestErrors> {
    todo!("{} {catalog:?}", path.display())
}
