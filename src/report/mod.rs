//! What a run tells its user: the per-image-and-step CSV, the end-of-run summary, and the
//! after-the-fact review (`retouch report`: text, JSON, HTML contact sheet).
//!
//! Renders [`crate::ledger::StepRecord`]s; never decides anything about them.

pub mod analysis;
mod csv_report;
pub mod html;
pub mod parts;
mod summary;
mod unfinished;

pub use analysis::{Analysis, AnalysisError, ReportRows, read_csv, read_csv_from};
pub use csv_report::{COLUMNS, CsvReport, OUTPUT_URL, ReportError, write_with_output_urls};
pub use summary::{StepLatency, Summary};
pub use unfinished::Unfinished;

/// `s` for a terminal: each control character written as a `\u{..}` escape, so a hostile file
/// or S3 key name cannot move the cursor, clear the screen or retitle the window when a review
/// is printed. The CSV, JSON and HTML keep (or escape in their own way) the real text.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    crate::sinks::escape_controls(s).into()
}
