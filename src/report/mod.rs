//! What a run tells its user: the per-image-and-step CSV, the end-of-run summary, and the
//! after-the-fact review (`retouch report`: text, JSON, HTML contact sheet).
//!
//! Renders [`crate::ledger::StepRecord`]s; never decides anything about them.

pub mod analysis;
mod csv_report;
pub mod html;
mod summary;
mod unfinished;

pub use analysis::{Analysis, AnalysisError, ReportRows, read_csv};
pub use csv_report::{COLUMNS, CsvReport, OUTPUT_URL, ReportError, write_with_output_urls};
pub use summary::{StepLatency, Summary};
pub use unfinished::Unfinished;
