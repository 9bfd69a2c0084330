//! What a run tells its user: the per-image-and-step CSV and the end-of-run summary.
//!
//! Renders [`crate::ledger::StepRecord`]s; never decides anything about them.

mod csv_report;
mod summary;

pub use csv_report::{COLUMNS, CsvReport, OUTPUT_URL, ReportError, write_with_output_urls};
pub use summary::{StepLatency, Summary};
