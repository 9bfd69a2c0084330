//! The run's report and history as images finish, and the report's publication at the end.
//!
//! One task owns the CSV: it appends and flushes each finished image's rows (so a killed run
//! leaves a valid CSV), records them in the run history of the state store, and tells the
//! observer. When the run ends the CSV is rewritten in input order; with `output.presign` it gets
//! presigned URLs, and a report bound for S3 is uploaded (its local copy stays).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::RunObserver;
use crate::ledger::{StepRecord, Store};
use crate::manifest::{self, Manifest, Place, S3Location};
use crate::report::{CsvReport, ReportError, write_with_output_urls};
use crate::s3_client::S3;
use crate::scheduler::RowSender;

/// Starts the report task; rows sent to the returned sender are written, recorded in `history`
/// (the store and run id, unless a dry run) and passed to `observer`. The task ends when the
/// sender is dropped, returning every row in input-then-step order.
pub(super) fn spawn_writer(
    mut report: CsvReport,
    history: Option<(Arc<Store>, String)>,
    observer: Arc<dyn RunObserver>,
    capacity: usize,
) -> (RowSender, JoinHandle<Result<Vec<StepRecord>, ReportError>>) {
    let (tx, mut rx) = mpsc::channel::<Vec<StepRecord>>(capacity.max(1));
    let task = tokio::spawn(async move {
        let mut failure = None;
        let mut history_failed = false;
        while let Some(rows) = rx.recv().await {
            if failure.is_none()
                && let Err(e) = report.append(&rows)
            {
                failure = Some(e);
            }
            // Each image's rows are in the run history as soon as it finishes, so a killed run
            // can still be reviewed.
            if let Some((store, run_id)) = &history
                && !history_failed
                && let Err(e) = store.record_rows(run_id, &rows)
            {
                tracing::warn!("could not record rows in the state store: {e}");
                history_failed = true;
            }
            observer.image_finished(&rows);
        }
        match failure {
            Some(e) => Err(e),
            None => report.finish(),
        }
    });
    (tx, task)
}

/// What became of the finished report beyond its local file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Where the report was uploaded, if it belongs in S3.
    pub uploaded_to: Option<S3Location>,
    /// What went wrong adding URLs or uploading (the local report is kept).
    pub error: Option<String>,
}

/// Adds presigned output URLs to the report when asked, and uploads it when it belongs in S3.
pub(super) async fn publish(
    manifest: &Manifest,
    s3: Option<&S3>,
    local: &Path,
    run_id: &str,
    rows: &[StepRecord],
) -> Published {
    let Some(s3) = s3 else {
        return Published::default();
    };
    if let Some(expires) = manifest.output.presign {
        let urls = presign_outputs(s3, rows, expires).await;
        if let Err(e) = write_with_output_urls(local, run_id, rows, &urls) {
            return Published {
                uploaded_to: None,
                error: Some(e.to_string()),
            };
        }
    }
    let Place::S3(dest) = &manifest.report else {
        return Published::default();
    };
    // A shard's part goes with its status, the status last: a part in S3 without a finished
    // status is one whose upload broke off.
    let status = crate::report::parts::status_path(local);
    let uploaded = match crate::sinks::upload_file(s3, local, dest, "text/csv").await {
        Ok(()) if status.is_file() => {
            let key = S3Location {
                bucket: dest.bucket.clone(),
                key: format!("{}.json", dest.key),
            };
            crate::sinks::upload_file(s3, &status, &key, "application/json").await
        }
        other => other,
    };
    match uploaded {
        Ok(()) => Published {
            uploaded_to: Some(dest.clone()),
            error: None,
        },
        Err(e) => Published {
            uploaded_to: None,
            error: Some(format!(
                "cannot upload the report to {dest}: {e} (the report is kept at {})",
                local.display()
            )),
        },
    }
}

/// Presigned GET URLs for every S3 output in `rows`, keyed by the row's `output`.
async fn presign_outputs(
    s3: &S3,
    rows: &[StepRecord],
    expires: std::time::Duration,
) -> HashMap<String, String> {
    let mut urls = HashMap::new();
    for row in rows {
        if urls.contains_key(&row.output) {
            continue;
        }
        let Ok(loc) = manifest::parse_s3(&row.output) else {
            continue;
        };
        match s3.presign_get(&loc.bucket, &loc.key, expires).await {
            Ok(url) => {
                urls.insert(row.output.clone(), url);
            }
            Err(e) => tracing::warn!("cannot presign {}: {e}", row.output),
        }
    }
    urls
}

/// Where a report is written locally: its own path, or for a report bound for S3, the
/// pipeline's state folder.
pub fn local_report_path(manifest: &Manifest) -> std::path::PathBuf {
    match &manifest.report {
        Place::Local(path) => path.clone(),
        Place::S3(loc) => {
            let name = loc.key.rsplit('/').next().unwrap_or("report.csv");
            manifest.state_dir().join(name)
        }
    }
}
