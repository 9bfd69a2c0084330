//! Why a run could not start, or stopped without finishing its report.

use std::path::PathBuf;

use crate::catalog::CatalogError;
use crate::ledger::LedgerError;
use crate::ledger::lease::ReportBusy;
use crate::manifest::ManifestErrors;
use crate::plan::overwrite::Refusal;
use crate::report::ReportError;
use crate::sources::SourceError;

/// A run that cannot start: nothing was processed (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Every problem of the manifest, already formatted with file, line and key path.
    #[error(transparent)]
    Manifest(#[from] ManifestErrors),
    #[error("prices: {0}")]
    Prices(CatalogError),
    /// An S3 bucket of the output or the report cannot be used.
    #[error("{0}")]
    Preflight(String),
    #[error(transparent)]
    Inputs(#[from] SourceError),
    #[error(
        "{}: this run would destroy files it reads; nothing was done{}",
        manifest.display(),
        refusals.iter().map(|r| format!("\n  {r}")).collect::<String>()
    )]
    WouldOverwrite {
        manifest: PathBuf,
        refusals: Vec<Refusal>,
        /// Risky layouts found along the way (shown before the error).
        warnings: Vec<String>,
    },
    #[error(
        "{0}\n  the state folder keeps the step cache and run history; set `state:` or pass --state DIR"
    )]
    State(LedgerError),
    #[error(
        "{0}\n  two runs must not write one report: wait for it to finish, or pass --report PATH"
    )]
    ReportBusy(ReportBusy),
    #[error("cannot start the report: {0}")]
    Report(ReportError),
    /// A local network the manifest asks for is not installed, or its file is damaged.
    #[error(transparent)]
    Local(#[from] crate::providers::local::LocalError),
    /// A variation step's `style_image` cannot be read or decoded.
    #[error("step {step} (variation): cannot use style_image {}: {detail}", path.display())]
    StyleImage {
        step: usize,
        path: PathBuf,
        detail: String,
    },
}

/// A run that stopped without a report (the report task failed).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("the report task stopped unexpectedly")]
    ReportTask,
}
