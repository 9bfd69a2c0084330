//! One run of a pipeline, from manifest to finished report: the library's entry point.
//!
//! `Run::prepare(manifest, options)` loads and checks everything and takes what the run will
//! hold for its whole life (the state store, its lease, the lease on its report, the report
//! file); `Run::execute(observer, cancel)` records the run, hands the plan to the scheduler,
//! writes every row to the report and the run history as images finish, summarises, and
//! publishes the report. The CLI, the tests and the benchmarks all run retouch through here.
//! This module owns the life of a run; it never routes, calls a model or touches a pixel.

mod error;
mod prepare;
mod report_out;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

pub use error::{PrepareError, RunError};
pub use prepare::{Overrides, Prepared, catalog_for, load, prepare, region};
pub use report_out::{Published, local_report_path};

use crate::catalog::{Catalog, Date};
use crate::ledger::coordination::{Coordination, SharedCaps, SharedRun, Table};
use crate::ledger::lease::{ReportLease, RunLease};
use crate::ledger::{RunInfo, StepRecord, Store, unix_now};
use crate::plan::Plan;
use crate::providers::local::LocalOps;
use crate::providers::{BedrockClient, ConnectError, ConnectSettings, Providers};
use crate::reason::Reason;
use crate::report::{CsvReport, Summary, parts};
use crate::scheduler::{self, RunConfig, retry::RetryPolicy};

/// How a run reaches Bedrock.
#[derive(Debug, Clone, Default)]
pub enum Connection {
    /// The standard AWS chain with the manifest's `aws.region` and `aws.profile`, resolved only
    /// when a step permits a remote model (and never for a dry run).
    #[default]
    FromManifest,
    /// This ready client (tests point one at a local double).
    Client {
        client: BedrockClient,
        region: String,
    },
}

/// How to run: the flags, and what embedding code or tests fix. `Default` is a plain run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Images in flight at once (default: `limits.concurrency`).
    pub concurrency: Option<usize>,
    /// Route and price every image and step, call nothing, write no image.
    pub dry_run: bool,
    /// Ignore cached results (every step runs again); results are still recorded.
    pub force: bool,
    /// Catalog file, state folder, report location, S3 client.
    pub overrides: Overrides,
    /// Keep no state at all: no step cache, no history, no daily budget across runs.
    pub stateless: bool,
    pub connection: Connection,
    /// The date lifecycles are judged on (default: today, UTC).
    pub today: Option<Date>,
    /// Retry back-off (first delay, cap) instead of the default; attempts stay
    /// `limits.attempts`.
    pub backoff: Option<(Duration, Duration)>,
    /// The run's id (default: a new one, `20261122T010418Z-3f9a`).
    pub run_id: Option<String>,
}

/// Receives progress as the run goes. Called from the report task, in completion order.
pub trait RunObserver: Send + Sync {
    /// One image finished (ok or not) with these rows.
    fn image_finished(&self, rows: &[StepRecord]);
}

/// An observer that watches nothing.
pub struct Unobserved;

impl RunObserver for Unobserved {
    fn image_finished(&self, _rows: &[StepRecord]) {}
}

/// The end of a run.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub summary: Summary,
    /// Every row, in input-then-step order.
    pub rows: Vec<StepRecord>,
    pub cancelled: bool,
    /// The state folder, when the run kept state.
    pub state_dir: Option<PathBuf>,
    /// What became of the report beyond its local file.
    pub published: Published,
}

impl RunOutcome {
    /// Steps an earlier run had already done (reused, or for a dry run, reusable).
    pub fn cache_hits(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.reason == Reason::CacheHit)
            .count()
    }
}

/// A prepared run: checked, holding its state, leases and report, not started.
pub struct Run {
    plan: Plan,
    catalog: Arc<Catalog>,
    local: Arc<LocalOps>,
    warnings: Vec<String>,
    options: RunOptions,
    run_id: String,
    manifest_arg: PathBuf,
    state: Option<Arc<Store>>,
    report: CsvReport,
    /// Held for the whole run: other runs see it alive (they wait for the steps it claimed).
    _lease: Option<RunLease>,
    /// Held for the whole run: no other run writes this report meanwhile.
    _report_lease: Option<ReportLease>,
    /// The coordination table, when the manifest names one.
    table: Option<Table>,
    /// This run's part in it (started by [`Run::prepare`] for a run that keeps state).
    coordination: Option<Coordination>,
}

impl Run {
    /// Loads, lists, plans and checks the manifest at `manifest`; opens the state store, takes
    /// the run's leases and creates the report. Nothing is processed yet.
    pub async fn prepare(manifest: &Path, options: RunOptions) -> Result<Run, PrepareError> {
        let prepared = prepare(manifest, options.overrides.clone()).await?;
        let mut run = Run::from_prepared(manifest, prepared, options)?;
        run.coordinate().await?;
        Ok(run)
    }

    /// Joins the coordination table (`shared.dynamodb_table`) as this run of its run group,
    /// with the manifest's whole run and daily caps. A dry run, or a run keeping no state,
    /// takes no part (it pays for nothing, or cannot claim steps: it keeps its 1/N shares).
    async fn coordinate(&mut self) -> Result<(), PrepareError> {
        let Some(table) = self.table.take() else {
            return Ok(());
        };
        if self.options.dry_run || self.state.is_none() {
            return Ok(());
        }
        let budget = &self.plan.manifest.budget;
        let caps = SharedCaps {
            run: budget.max_usd,
            daily: budget.daily_max_usd,
        };
        let group = self
            .options
            .overrides
            .run_group
            .clone()
            .unwrap_or_else(|| self.run_id.clone());
        let coordination = Coordination::start(table, &self.run_id, &group, caps)
            .await
            .map_err(|e| PrepareError::Preflight(format!("shared.dynamodb_table: {e}")))?;
        self.coordination = Some(coordination);
        Ok(())
    }

    /// A run of a plan prepared by [`prepare`] (possibly edited since: tests inject inputs no
    /// store could hold). `manifest` is the path the history names.
    pub fn from_prepared(
        manifest: &Path,
        prepared: Prepared,
        options: RunOptions,
    ) -> Result<Run, PrepareError> {
        let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
        let m = prepared.plan.manifest.clone();
        let state = open_state(&m.state, &options)?;
        let recording = state.as_ref().filter(|_| !options.dry_run);
        let lease = recording.and_then(|store| {
            RunLease::acquire(store.dir(), &run_id)
                .map_err(|e| {
                    tracing::warn!("cannot take this run's lease in the state folder: {e}")
                })
                .ok()
        });
        let report_path = local_report_path(&m);
        let report_lease = lease_report(state.as_deref(), &report_path, &run_id)?;
        let report = CsvReport::create(&report_path, &run_id).map_err(PrepareError::Report)?;
        if let Some(shard) = prepared.plan.shard {
            let status = part_status(&run_id, shard, prepared.plan.images.len(), None);
            parts::write_status(&report_path, &status).map_err(|source| {
                PrepareError::Report(crate::report::ReportError::Io {
                    path: parts::status_path(&report_path),
                    source,
                })
            })?;
        }
        Ok(Run {
            plan: prepared.plan,
            catalog: prepared.catalog,
            local: prepared.local,
            warnings: prepared.warnings,
            options,
            run_id,
            manifest_arg: manifest.to_owned(),
            state,
            report,
            _lease: lease,
            _report_lease: report_lease,
            table: prepared.table,
            coordination: None,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Risky but allowed layouts found while preparing.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Runs every image, writing the report as they finish. `cancel` stops new images from
    /// starting; those in flight finish and are reported.
    pub async fn execute(
        self,
        observer: Arc<dyn RunObserver>,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, RunError> {
        let manifest = self.plan.manifest.clone();
        let today = self.options.today.unwrap_or_else(Date::today_utc);
        let history = self.state.clone().filter(|_| !self.options.dry_run);
        if let Some(store) = &history {
            self.begin(store, today);
        }
        let mut shared_run = self.coordination.as_ref().map(|c| SharedRun {
            run_id: self.run_id.clone(),
            group: c.group().to_owned(),
            shard: self.plan.shard.map(|s| s.to_string()),
            manifest: self.manifest_arg.display().to_string(),
            started_at: unix_now(),
            finished_at: None,
            images: self.plan.images.len() as u64,
            ok: 0,
            failed: 0,
            cost: crate::money::Usd::ZERO,
            interrupted: false,
            alive: true,
        });
        if let (Some(c), Some(run)) = (&self.coordination, &shared_run) {
            c.record_run(run).await;
        }
        let concurrency = self
            .options
            .concurrency
            .unwrap_or(manifest.limits.concurrency)
            .max(1);
        let report_path = self.report.path().to_owned();
        let recorder = history.clone().map(|s| (s, self.run_id.clone()));
        let (rows_tx, writer) =
            report_out::spawn_writer(self.report, recorder, observer, concurrency * 2);
        let (providers, region) = connect(&self.options, &self.plan).await;
        let attempts = manifest.limits.attempts;
        let mut retry = RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        };
        if let Some((base, cap)) = self.options.backoff {
            (retry.base, retry.cap) = (base, cap);
        }
        let config = RunConfig {
            run_id: self.run_id.clone(),
            concurrency,
            dry_run: self.options.dry_run,
            catalog: self.catalog.clone(),
            today,
            providers,
            region,
            retry,
            state: self.state.clone(),
            force: self.options.force,
            local: self.local.clone(),
            shared: manifest
                .shared
                .cache
                .as_ref()
                .zip(self.plan.s3.as_ref())
                .map(|(loc, s3)| crate::ledger::shared::SharedCache::new(s3.clone(), loc)),
            shards: self.plan.shard.map_or(1, |s| s.count),
            coordination: self.coordination.clone(),
        };
        let total = self.plan.images.len();
        let shard = self.plan.shard;
        let s3 = self.plan.s3.clone();
        let scheduled = scheduler::run(self.plan, config, rows_tx, cancel).await;
        let rows = writer.await.map_err(|_| RunError::ReportTask)??;
        debug_assert!(
            self.options.dry_run
                || rows.iter().map(|r| r.cost).sum::<crate::money::Usd>() == scheduled.billed
        );
        let ops: Vec<_> = manifest.steps.iter().map(|s| s.op).collect();
        let output_dir = manifest.output.dir.to_string().into();
        let summary = Summary::from_rows(&rows, &ops, total, output_dir, report_path.clone());
        if let Some(store) = &history {
            finish(store, &self.run_id, &summary);
        }
        if let (Some(c), Some(run)) = (&self.coordination, &mut shared_run) {
            run.finished_at = Some(unix_now());
            run.ok = summary.images_ok as u64;
            run.failed = summary.images_failed as u64;
            run.cost = summary.total_cost;
            run.interrupted = scheduled.cancelled;
            c.record_run(run).await;
            c.finish().await;
        }
        if let Some(shard) = shard {
            let end = Some((scheduled.cancelled, &rows[..]));
            let status = part_status(&self.run_id, shard, total, end);
            if let Err(e) = parts::write_status(&report_path, &status) {
                tracing::warn!(
                    "cannot write {}: {e}",
                    parts::status_path(&report_path).display()
                );
            }
        }
        let published =
            report_out::publish(&manifest, s3.as_ref(), &report_path, &self.run_id, &rows).await;
        Ok(RunOutcome {
            run_id: self.run_id,
            summary,
            rows,
            cancelled: scheduled.cancelled,
            state_dir: self.state.as_ref().map(|_| manifest.state.clone()),
            published,
        })
    }

    /// Records that the run started, and the models and prices it may use (the lock).
    fn begin(&self, store: &Store, today: Date) {
        let run = RunInfo {
            run_id: self.run_id.clone(),
            manifest: self.manifest_arg.display().to_string(),
            started_at: unix_now(),
            images: self.plan.images.len() as u64,
        };
        let lock = crate::ledger::catalog_lock::entries(&self.plan.manifest, &self.catalog, today);
        if let Err(e) = store
            .begin_run(&run)
            .and_then(|()| store.record_lock(&self.run_id, &lock))
        {
            tracing::warn!("could not record the run in the state folder: {e}");
        }
    }
}

/// A shard's status beside its report part: at the start (`end: None`), and at the end with
/// whether it was cancelled and its rows.
fn part_status(
    run_id: &str,
    shard: crate::shard::Shard,
    images: usize,
    end: Option<(bool, &[StepRecord])>,
) -> parts::PartStatus {
    let (cancelled, rows) = end.map_or((false, &[][..]), |(c, r)| (c, r));
    parts::PartStatus {
        run_id: run_id.to_owned(),
        shard: shard.to_string(),
        images,
        finished: end.is_some(),
        cancelled,
        rows: rows.len(),
        cost_usd: rows
            .iter()
            .map(|r| r.cost)
            .sum::<crate::money::Usd>()
            .to_string(),
        updated_at: unix_now(),
    }
}

/// The run's totals in its history.
fn finish(store: &Store, run_id: &str, s: &Summary) {
    let finished = store.finish_run(
        run_id,
        s.images_ok as u64,
        s.images_failed as u64,
        s.total_cost,
        unix_now(),
    );
    if let Err(e) = finished {
        tracing::warn!("could not record the run in the state folder: {e}");
    }
}

/// The state store: none when stateless; for a dry run only one that already exists (a dry
/// run reads what is cached but never creates or records anything).
fn open_state(dir: &Path, options: &RunOptions) -> Result<Option<Arc<Store>>, PrepareError> {
    if options.stateless {
        return Ok(None);
    }
    if options.dry_run {
        let exists = dir.join("state.db").is_file();
        return Ok(exists
            .then(|| Store::open(dir).ok().map(Arc::new))
            .flatten());
    }
    Store::open(dir)
        .map(|s| Some(Arc::new(s)))
        .map_err(PrepareError::State)
}

/// The run's lease on its report (none without a state folder to keep it in).
fn lease_report(
    state: Option<&Store>,
    report: &Path,
    run_id: &str,
) -> Result<Option<ReportLease>, PrepareError> {
    let Some(store) = state else { return Ok(None) };
    match ReportLease::acquire(store.dir(), report, run_id) {
        Ok(Ok(lease)) => Ok(Some(lease)),
        Ok(Err(busy)) => Err(PrepareError::ReportBusy(busy)),
        Err(e) => {
            tracing::warn!("cannot lease the report in the state folder: {e}");
            Ok(None)
        }
    }
}

/// The run's remote clients and region: a ready client, or the AWS chain when a step permits a
/// remote model (never for a dry run). Without credentials remote steps fall back.
async fn connect(options: &RunOptions, plan: &Plan) -> (Option<Providers>, String) {
    let m = &plan.manifest;
    let settings = ConnectSettings {
        region: m.aws.region.clone(),
        profile: m.aws.profile.clone(),
        ..ConnectSettings::default()
    };
    let fallback_region = || {
        settings
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".into())
    };
    let wants_remote = m.steps.iter().any(|s| s.remote_models().next().is_some());
    match &options.connection {
        Connection::Client { client, region } => {
            (Some(Providers::from(client.clone())), region.clone())
        }
        Connection::FromManifest if wants_remote && !options.dry_run => {
            match Providers::connect(&settings).await {
                Ok(p) => {
                    let region = p.region().unwrap_or_else(|| "us-east-1".into());
                    (Some(p), region)
                }
                Err(e) => {
                    warn_offline(&e);
                    (None, fallback_region())
                }
            }
        }
        Connection::FromManifest => (None, fallback_region()),
    }
}

fn warn_offline(e: &ConnectError) {
    tracing::warn!("{e}; remote steps fall back (fallback-no-credentials)");
}

/// `20261122T010418Z-3f9a`: sortable, unique enough across concurrent runs.
fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let Date { y, m, d } = Date::from_days_since_epoch((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let salt = (now.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xFFFF;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{salt:04x}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
