//! The run loop: fans images out with bounded concurrency and funnels their rows to the report.
//!
//! Memory is bounded by the images in flight: inputs are read ahead, in order, at most
//! `limits.downloads` at a time (encoded bytes only), an image is decoded only once it holds one
//! of `concurrency` permits, and its pixels are dropped when its task ends. Rows go through a
//! bounded channel to a single report task, which appends and flushes them as images finish.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::budget::{Budget, DailyAllowance};
use super::cache::RunCache;
use super::context::ImageContext;
use super::image_task::{self, Fetched};
use super::rate_limit::RateLimits;
use super::remote::Remote;
use super::retry::RetryPolicy;
use crate::catalog::{Catalog, Date};
use crate::ledger::{StepRecord, Store};
use crate::manifest::Manifest;
use crate::money::Usd;
use crate::plan::Plan;
use crate::providers::{BedrockClient, ConnectError, ConnectSettings, Providers};
use crate::reason::Reason;
use crate::report::{CsvReport, ReportError, Summary};

/// How to run (flags, not pipeline description).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub run_id: String,
    /// Images in flight at once.
    pub concurrency: usize,
    /// Route and price every image and step, call nothing, write no outputs.
    pub dry_run: bool,
    /// The model catalog, with the manifest's overrides and prices applied.
    pub catalog: Arc<Catalog>,
    /// The date lifecycle rules are judged against (today, UTC).
    pub today: Date,
    /// How to reach remote models.
    pub connection: Connection,
    /// Retry policy for remote calls (attempts from `limits.attempts`).
    pub retry: RetryPolicy,
    /// The pipeline's state store: step cache, daily spend, run history. `None` keeps nothing
    /// (every step runs, the daily budget starts from zero).
    pub state: Option<Arc<Store>>,
    /// Ignore cached results (every step runs again); results are still recorded.
    pub force: bool,
}

/// How a run reaches Bedrock.
#[derive(Debug, Clone)]
pub enum Connection {
    /// Resolve credentials and region through the standard AWS chain (only when a step permits
    /// a remote model).
    Connect(ConnectSettings),
    /// Use this ready client (tests point one at a local double).
    Client {
        client: BedrockClient,
        region: String,
    },
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
    // A dry run looks results up (to plan cache hits) but records no run, row or result.
    let cache = config.state.as_ref().map(|store| {
        Arc::new(RunCache::new(
            store.clone(),
            config.run_id.clone(),
            config.force,
        ))
    });
    let history = match (&cache, config.dry_run) {
        (Some(c), false) => Some((c.store().clone(), config.run_id.clone())),
        _ => None,
    };
    let report_task = tokio::spawn(async move {
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

    let remote = connect(&manifest, &config, cache.clone()).await;
    let ctx = Arc::new(ImageContext {
        manifest: manifest.clone(),
        catalog: config.catalog.clone(),
        remote,
        dry_run: config.dry_run,
        cache,
    });
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    // Read-ahead: up to `downloads` inputs are read (S3 GETs, file reads) in input order while
    // earlier images are processed, so fetch latency overlaps CPU work.
    let read_ahead = manifest.limits.downloads.max(1);
    let mut pending = plan.images.into_iter();
    let mut ahead = VecDeque::with_capacity(read_ahead);
    loop {
        while ahead.len() < read_ahead {
            let Some(planned) = pending.next() else { break };
            let max_mp = manifest.limits.max_megapixels;
            let fetch = tokio::spawn(image_task::fetch(&planned, ctx.cache.clone(), max_mp));
            ahead.push_back((planned, fetch));
        }
        let Some((planned, mut fetch)) = ahead.pop_front() else {
            break;
        };
        let fetched = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                fetch.abort();
                break;
            }
            fetched = &mut fetch => fetched.unwrap_or_else(|e| {
                Fetched::Failed(Reason::InternalError, format!("reading the input: {e}"))
            }),
        };
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let (ctx, tx) = (ctx.clone(), tx.clone());
        tasks.spawn(async move {
            let rows = image_task::process(&ctx, planned, fetched).await;
            drop(permit);
            let _ = tx.send(rows).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    // Cancelled: reads started for images that will not run are abandoned.
    for (_, fetch) in ahead {
        fetch.abort();
    }
    drop(tx);
    while tasks.join_next().await.is_some() {}
    if let Some(cache) = &ctx.cache {
        cache.release_claims();
    }

    let billed = ctx.remote.budget.spent();
    let rows = report_task.await.map_err(|_| RunError::ReportTask)??;
    let ops: Vec<_> = manifest.steps.iter().map(|s| s.op).collect();
    let output_dir = manifest.output.dir.to_string().into();
    let summary = Summary::from_rows(&rows, &ops, total, output_dir, report_path);
    debug_assert!(config.dry_run || rows.iter().map(|r| r.cost).sum::<Usd>() == billed);
    Ok(RunOutcome {
        summary,
        rows,
        cancelled: cancel.is_cancelled(),
    })
}

/// Sets up remote calls for the run: the client (when a step permits a remote model and
/// credentials exist), budget, rate limits and retry policy.
async fn connect(manifest: &Manifest, config: &RunConfig, ledger: Option<Arc<RunCache>>) -> Remote {
    let wants_remote = manifest
        .steps
        .iter()
        .any(|s| s.models.iter().any(|m| !m.is_local()));
    let (client, region) = match &config.connection {
        Connection::Client { client, region } => {
            (Some(Providers::from(client.clone())), region.clone())
        }
        Connection::Connect(settings) if wants_remote && !config.dry_run => {
            match Providers::connect(settings).await {
                Ok(client) => {
                    let region = client.region().unwrap_or_else(|| "us-east-1".into());
                    (Some(client), region)
                }
                Err(e) => {
                    warn_offline(&e);
                    (
                        None,
                        settings
                            .region
                            .clone()
                            .unwrap_or_else(|| "us-east-1".into()),
                    )
                }
            }
        }
        Connection::Connect(settings) => (
            None,
            settings
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".into()),
        ),
    };
    let budget = Budget::new(
        manifest.budget.max_usd,
        manifest.budget.per_image_max_usd,
        daily_allowance(manifest, config),
    );
    let catalog = config.catalog.clone();
    let default_rpm = move |id: &str| catalog.resolve(id).map_or(10, |m| m.default_rpm);
    let rates = RateLimits::new(&manifest.limits.rpm, default_rpm);
    Remote::new(
        client,
        region,
        config.today,
        budget,
        rates,
        config.retry,
        ledger,
    )
}

/// The daily cap and what every run sharing the state store already spent today (UTC).
fn daily_allowance(manifest: &Manifest, config: &RunConfig) -> Option<DailyAllowance> {
    let cap = manifest.budget.daily_max_usd?;
    let already_spent_today = match &config.state {
        Some(store) => store.spent_on(Date::today_utc()).unwrap_or_else(|e| {
            // Unknown spend: refuse remote work rather than risk going over the cap.
            tracing::warn!("cannot read today's spend ({e}); treating the daily budget as used up");
            cap
        }),
        None => Usd::ZERO,
    };
    Some(DailyAllowance {
        cap,
        already_spent_today,
    })
}

fn warn_offline(e: &ConnectError) {
    tracing::warn!("{e}; remote steps fall back (fallback-no-credentials)");
}
