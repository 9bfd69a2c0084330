//! The run loop: fans images out with bounded concurrency and funnels their rows to the report.
//!
//! Memory is bounded by the images in flight: an image's bytes are read only once it holds one of
//! `concurrency` permits, and its pixels are dropped when its task ends. Rows go through a bounded
//! channel to a single report task, which appends and flushes them as images finish.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::image_task::{self, ImageContext};
use crate::ledger::StepRecord;
use crate::plan::Plan;
use crate::report::{CsvReport, ReportError, Summary};

/// How to run (flags, not pipeline description).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub run_id: String,
    /// Images in flight at once.
    pub concurrency: usize,
}

/// Receives progress as the run goes. Called from the report task, in completion order.
pub trait RunObserver: Send + Sync {
    /// One image finished (ok or not) with these rows.
    fn image_finished(&self, rows: &[StepRecord]);
}

/// The end of a run.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: Summary,
    /// Every row, in input-then-step order.
    pub rows: Vec<StepRecord>,
    pub cancelled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("the report task stopped unexpectedly")]
    ReportTask,
}

/// Runs `plan`, writing rows to `report` as images finish.
pub async fn run(
    plan: Plan,
    config: RunConfig,
    mut report: CsvReport,
    observer: Arc<dyn RunObserver>,
    cancel: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let manifest = plan.manifest.clone();
    let total = plan.images.len();
    let report_path = report.path().to_owned();
    let concurrency = config.concurrency.max(1);
    let (tx, mut rx) = mpsc::channel::<Vec<StepRecord>>(concurrency * 2);

    let report_task = tokio::spawn(async move {
        let mut failure = None;
        while let Some(rows) = rx.recv().await {
            if failure.is_none()
                && let Err(e) = report.append(&rows)
            {
                failure = Some(e);
            }
            observer.image_finished(&rows);
        }
        match failure {
            Some(e) => Err(e),
            None => report.finish(),
        }
    });

    let ctx = Arc::new(ImageContext {
        manifest: manifest.clone(),
    });
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for planned in plan.images {
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let (ctx, tx) = (ctx.clone(), tx.clone());
        tasks.spawn(async move {
            let rows = image_task::process(&ctx, planned).await;
            drop(permit);
            let _ = tx.send(rows).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(tx);
    while tasks.join_next().await.is_some() {}

    let rows = report_task.await.map_err(|_| RunError::ReportTask)??;
    let ops: Vec<_> = manifest.steps.iter().map(|s| s.op).collect();
    let summary = Summary::from_rows(&rows, &ops, total, manifest.output.dir.clone(), report_path);
    Ok(RunOutcome {
        summary,
        rows,
        cancelled: cancel.is_cancelled(),
    })
}
