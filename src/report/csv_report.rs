//! The report CSV: one row per image and step, written as images finish and flushed, then
//! rewritten in input order when the run ends.
//!
//! While a run is going, rows are appended in completion order and flushed after every image, so
//! an interrupted run leaves a valid CSV. [`CsvReport::finish`] rewrites the file atomically in
//! input-then-step order, so a finished run's report is deterministic. With `output.presign`,
//! [`write_with_output_urls`] rewrites it once more with an [`OUTPUT_URL`] column appended.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::ledger::StepRecord;
use crate::qa::Qa;

/// The report's columns, in order. Later features may append columns, never reorder these (the
/// first 16 are the original report; `qa` and `qa_flags` came with the quality checks).
pub const COLUMNS: [&str; 18] = [
    "run_id",
    "image",
    "step",
    "op",
    "model",
    "reason",
    "status",
    "cost_usd",
    "latency_ms",
    "attempts",
    "in_w",
    "in_h",
    "out_w",
    "out_h",
    "output",
    "error",
    "qa",
    "qa_flags",
];

/// The optional column appended after [`COLUMNS`] when `output.presign` is set: a presigned GET
/// URL for each S3 output (empty for rows without one).
pub const OUTPUT_URL: &str = "output_url";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write report {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write report {path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
}

/// An open report. Owned by the run's report task; dropped (after `finish`) when the run ends.
pub struct CsvReport {
    path: PathBuf,
    run_id: String,
    writer: csv::Writer<BufWriter<File>>,
    /// Every row so far, for the final ordered rewrite (a few dozen bytes per row).
    rows: Vec<StepRecord>,
}

impl CsvReport {
    /// Creates (truncates) the report at `path` and writes the header.
    pub fn create(path: &Path, run_id: &str) -> Result<CsvReport, ReportError> {
        let io = |source| ReportError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let file = File::create(path).map_err(io)?;
        let mut report = CsvReport {
            path: path.to_owned(),
            run_id: run_id.to_owned(),
            writer: csv::Writer::from_writer(BufWriter::new(file)),
            rows: Vec::new(),
        };
        report.write_header()?;
        report.flush()?;
        Ok(report)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the rows of one finished image and flushes them to disk.
    pub fn append(&mut self, rows: &[StepRecord]) -> Result<(), ReportError> {
        for row in rows {
            write_row(&mut self.writer, &self.run_id, row).map_err(|e| self.csv_err(e))?;
        }
        self.rows.extend_from_slice(rows);
        self.flush()
    }

    /// Rewrites the report in input order (atomically) and returns all rows in that order.
    pub fn finish(mut self) -> Result<Vec<StepRecord>, ReportError> {
        self.flush()?;
        self.rows.sort_by_key(|r| (r.image_index, r.step));
        write_ordered(&self.path, &self.run_id, &self.rows, None)?;
        Ok(self.rows)
    }

    fn write_header(&mut self) -> Result<(), ReportError> {
        self.writer
            .write_record(COLUMNS)
            .map_err(|e| self.csv_err(e))
    }

    fn flush(&mut self) -> Result<(), ReportError> {
        self.writer.flush().map_err(|source| ReportError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn csv_err(&self, source: csv::Error) -> ReportError {
        ReportError::Csv {
            path: self.path.clone(),
            source,
        }
    }
}

/// Rewrites the report at `path` (atomically) from `rows`, in the order given, with the
/// [`OUTPUT_URL`] column holding `urls[row.output]` (empty where there is none).
pub fn write_with_output_urls(
    path: &Path,
    run_id: &str,
    rows: &[StepRecord],
    urls: &HashMap<String, String>,
) -> Result<(), ReportError> {
    write_ordered(path, run_id, rows, Some(urls))
}

fn write_ordered(
    path: &Path,
    run_id: &str,
    rows: &[StepRecord],
    urls: Option<&HashMap<String, String>>,
) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_owned(),
        source,
    };
    let csv_err = |source| ReportError::Csv {
        path: path.to_owned(),
        source,
    };
    let dir = crate::atomic_file::parent(path);
    let tmp = crate::atomic_file::temp_in(dir, ".report-", ".tmp").map_err(io)?;
    {
        let mut w = csv::Writer::from_writer(BufWriter::new(tmp.as_file()));
        let mut header: Vec<&str> = COLUMNS.to_vec();
        header.extend(urls.map(|_| OUTPUT_URL));
        w.write_record(header).map_err(csv_err)?;
        for row in rows {
            let url = urls.map(|u| u.get(&row.output).map_or("", String::as_str));
            write_row_with(&mut w, run_id, row, url).map_err(csv_err)?;
        }
        w.flush().map_err(io)?;
    }
    crate::atomic_file::commit(tmp, path).map_err(io)
}

fn write_row<W: Write>(w: &mut csv::Writer<W>, run_id: &str, r: &StepRecord) -> csv::Result<()> {
    write_row_with(w, run_id, r, None)
}

/// One row; `url` (when the report has the column) goes after the fixed columns.
fn write_row_with<W: Write>(
    w: &mut csv::Writer<W>,
    run_id: &str,
    r: &StepRecord,
    url: Option<&str>,
) -> csv::Result<()> {
    let dim = |v: Option<(u32, u32)>, first: bool| {
        v.map(|(a, b)| if first { a } else { b }.to_string())
            .unwrap_or_default()
    };
    let fixed = [
        run_id,
        &r.image,
        &(r.step + 1).to_string(),
        r.op.as_str(),
        &r.model,
        r.reason.as_str(),
        r.status.as_str(),
        &r.cost.to_string(),
        &r.latency_ms.to_string(),
        &r.attempts.to_string(),
        &dim(r.input_size, true),
        &dim(r.input_size, false),
        &dim(r.output_size, true),
        &dim(r.output_size, false),
        &r.output,
        &r.error,
        &r.qa.as_ref().map(Qa::score_text).unwrap_or_default(),
        &r.qa.as_ref().map(Qa::flags_text).unwrap_or_default(),
    ];
    w.write_record(fixed.iter().copied().chain(url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Op;
    use crate::ledger::Status;
    use crate::money::Usd;

    fn row(image_index: usize, step: usize) -> StepRecord {
        StepRecord {
            image_index,
            image: format!("img{image_index}.jpg"),
            step,
            op: Op::Upscale,
            model: "local".into(),
            reason: crate::reason::Reason::OnlyPermitted,
            status: Status::Ok,
            cost: Usd(400),
            latency_ms: 12,
            attempts: 1,
            input_size: Some((10, 20)),
            output_size: Some((20, 40)),
            output: "out/a.png".into(),
            error: "a, \"quoted\" error".into(),
            qa: Some(Qa::of(vec![crate::qa::Flag::Fragmented])),
        }
    }

    #[test]
    fn rows_are_flushed_as_written_and_sorted_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/report.csv");
        let mut rep = CsvReport::create(&path, "run-1").unwrap();
        rep.append(&[row(1, 0), row(1, 1)]).unwrap();
        rep.append(&[row(0, 0), row(0, 1)]).unwrap();
        // Before finish: readable, in completion order.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.lines().nth(1).unwrap().contains("img1.jpg"));
        let rows = rep.finish().unwrap();
        assert_eq!(rows.len(), 4);
        let mut rdr = csv::Reader::from_path(&path).unwrap();
        assert_eq!(rdr.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
        let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        let order: Vec<(&str, &str)> = recs.iter().map(|r| (&r[1], &r[2])).collect();
        assert_eq!(
            order,
            [
                ("img0.jpg", "1"),
                ("img0.jpg", "2"),
                ("img1.jpg", "1"),
                ("img1.jpg", "2")
            ]
        );
        assert_eq!(&recs[0][7], "0.000400");
        assert_eq!(&recs[0][15], "a, \"quoted\" error");
        assert_eq!(&recs[0][10], "10");
        assert_eq!(&recs[0][13], "40");
    }

    #[test]
    fn output_urls_are_appended_after_the_fixed_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        let mut other = row(1, 0);
        other.output = "s3://b/other.png".into();
        let urls = HashMap::from([("out/a.png".to_string(), "https://x/?sig=1".to_string())]);
        write_with_output_urls(&path, "run-1", &[row(0, 0), other], &urls).unwrap();
        let mut rdr = csv::Reader::from_path(&path).unwrap();
        let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header.len(), 19);
        assert_eq!(header[..18], COLUMNS.map(String::from));
        assert_eq!(header[18], OUTPUT_URL);
        let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        assert_eq!(&recs[0][16], "0.600");
        assert_eq!(&recs[0][17], "fragmented");
        assert_eq!(&recs[0][18], "https://x/?sig=1");
        assert_eq!(&recs[1][18], "");
    }
}
