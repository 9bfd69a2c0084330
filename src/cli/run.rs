//! `retouch run`: load, list, plan, run, summarise.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use retouch::catalog::Date;
use retouch::ledger::StepRecord;
use retouch::ledger::lease::{ReportBusy, ReportLease, RunLease};
use retouch::ledger::{RunInfo, Store};
use retouch::manifest::{Manifest, Place};
use retouch::plan::Plan;
use retouch::providers::bedrock::ConnectSettings;
use retouch::report::CsvReport;
use retouch::s3::S3;
use retouch::scheduler::retry::RetryPolicy;
use retouch::scheduler::{self, Connection, RunConfig};

use super::args::{Args, RunArgs};
use super::code;
use super::progress::Progress;

pub async fn run(args: &RunArgs, global: &Args) -> anyhow::Result<i32> {
    let Some((mut manifest, catalog)) = super::load::load(&args.manifest, args.catalog.as_deref())
    else {
        return Ok(code::USAGE);
    };
    if let Some(state) = &args.state {
        manifest.state = state.clone();
    }
    if let Some(report) = &args.report {
        match report_location(report) {
            Ok(loc) => manifest.report = loc,
            Err(e) => {
                eprintln!("error: --report: {e}");
                return Ok(code::USAGE);
            }
        }
    }
    let concurrency = args
        .concurrency
        .map(|c| c as usize)
        .unwrap_or(manifest.limits.concurrency);
    let Some((s3, listing)) = super::load::inputs(&manifest).await else {
        return Ok(code::USAGE);
    };
    let Some(plan) = super::load::plan(manifest, s3.clone(), listing) else {
        return Ok(code::USAGE);
    };
    let manifest = plan.manifest.clone();
    let run_id = run_id();
    // A dry run reads an existing state (to show what is already cached) but never creates or
    // records anything in it.
    let state = if args.dry_run {
        manifest
            .state
            .join("state.db")
            .is_file()
            .then(|| Store::open(&manifest.state).ok().map(Arc::new))
            .flatten()
    } else {
        match Store::open(&manifest.state) {
            Ok(store) => Some(Arc::new(store)),
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!(
                    "  the state folder keeps the step cache and run history; set `state:` or pass --state DIR"
                );
                return Ok(code::USAGE);
            }
        }
    };
    // Held for the whole run: its lease tells other runs it is alive (they wait for the steps
    // it claimed), and no other run may write its report meanwhile.
    let _lease = match state.as_ref().filter(|_| !args.dry_run) {
        Some(store) => RunLease::acquire(store.dir(), &run_id)
            .map_err(|e| tracing::warn!("cannot take this run's lease in the state folder: {e}"))
            .ok(),
        None => None,
    };
    let report_path = super::s3::local_report_path(&manifest);
    let _report_lease = match lease_report(state.as_deref(), &report_path, &run_id) {
        Ok(lease) => lease,
        Err(busy) => {
            eprintln!("error: {busy}");
            eprintln!(
                "  two runs must not write one report: wait for it to finish, or pass --report PATH"
            );
            return Ok(code::USAGE);
        }
    };
    let manifest_region = manifest.aws.region.clone();
    let manifest_profile = manifest.aws.profile.clone();
    let attempts = manifest.limits.attempts;
    let report = CsvReport::create(&report_path, &run_id)
        .with_context(|| "cannot start the report".to_string())?;
    let skipped = skipped_inputs(&plan);
    let progress = Arc::new(Progress::new(plan.images.len() as u64, global.quiet));
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_ctrl_c(cancel.clone(), progress.clone()));

    let connection = Connection::Connect(ConnectSettings {
        region: manifest_region,
        profile: manifest_profile,
        ..ConnectSettings::default()
    });
    let config = RunConfig {
        run_id: run_id.clone(),
        concurrency,
        dry_run: args.dry_run,
        catalog,
        today: Date::today_utc(),
        connection,
        retry: RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        },
        state: state.clone(),
        force: args.force,
    };
    // Where this run is recorded: nowhere for a dry run, which only reads the state.
    let history = state.as_ref().filter(|_| !args.dry_run);
    if let Some(store) = history {
        let run = RunInfo {
            run_id: run_id.clone(),
            manifest: args.manifest.display().to_string(),
            started_at: unix_now(),
            images: plan.images.len() as u64,
        };
        let lock = retouch::lock::entries(&manifest, &config.catalog, config.today);
        if let Err(e) = store
            .begin_run(&run)
            .and_then(|()| store.record_lock(&run_id, &lock))
        {
            tracing::warn!("could not record the run in the state folder: {e}");
        }
    }
    let outcome = scheduler::run(plan, config, report, progress.clone(), cancel.clone()).await?;
    signals.abort();
    progress.finish();
    if let Some(store) = history {
        let s = &outcome.summary;
        if let Err(e) = store.finish_run(
            &run_id,
            s.images_ok as u64,
            s.images_failed as u64,
            s.total_cost,
            unix_now(),
        ) {
            tracing::warn!("could not record the run in the state folder: {e}");
        }
    }
    let report_ok =
        finish_report(&manifest, s3.as_ref(), &report_path, &run_id, &outcome.rows).await;
    if !global.quiet {
        println!("{}", outcome.summary);
        if let Some(skipped) = skipped {
            println!("{skipped}");
        }
        if state.is_some() {
            let hits = outcome
                .rows
                .iter()
                .filter(|r| r.reason == retouch::reason::Reason::CacheHit)
                .count();
            println!(
                "cache:  {hits} of {} steps {} from earlier runs; state in {}",
                outcome.rows.len(),
                if args.dry_run {
                    "would be reused"
                } else {
                    "reused"
                },
                manifest.state.display()
            );
        }
        if let (true, Place::S3(dest)) = (report_ok, &manifest.report) {
            println!("report uploaded to {dest}");
        }
    }
    Ok(if outcome.cancelled {
        code::INTERRUPTED
    } else if outcome.summary.all_ok() && report_ok {
        code::OK
    } else {
        code::SOME_FAILED
    })
}

/// The run's lease on its report (none without a state folder to keep it in).
fn lease_report(
    state: Option<&Store>,
    report: &std::path::Path,
    run_id: &str,
) -> Result<Option<ReportLease>, ReportBusy> {
    let Some(store) = state else { return Ok(None) };
    match ReportLease::acquire(store.dir(), report, run_id) {
        Ok(Ok(lease)) => Ok(Some(lease)),
        Ok(Err(busy)) => Err(busy),
        Err(e) => {
            tracing::warn!("cannot lease the report in the state folder: {e}");
            Ok(None)
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `--report`: a local path or `s3://bucket/key`.
fn report_location(flag: &std::path::Path) -> Result<Place, String> {
    let s = flag.to_string_lossy();
    if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("s3://")) {
        let loc = retouch::manifest::parse_s3(&s)?;
        if loc.key.is_empty() || loc.key.ends_with('/') {
            return Err(format!(
                "`{s}` needs an object key, e.g. s3://bucket/report.csv"
            ));
        }
        return Ok(Place::S3(loc));
    }
    Ok(Place::Local(flag.to_owned()))
}

/// Inputs left out, for the summary (`None` when there were none).
fn skipped_inputs(plan: &Plan) -> Option<String> {
    let (ex, non, markers) = (
        plan.excluded,
        plan.skipped_non_images,
        plan.skipped_folder_markers,
    );
    let (broken, folders) = (plan.skipped_broken, plan.unreadable_folders.len());
    (ex + non + markers + broken + folders > 0).then(|| {
        let mut line = format!(
            "skipped: {ex} excluded, {non} non-image files or keys, {markers} S3 folder markers"
        );
        if broken + folders > 0 {
            line += &format!(", {broken} broken links, {folders} unreadable folders");
        }
        line
    })
}

/// Adds presigned output URLs to the report when asked, and uploads it when it belongs in S3
/// (the local copy stays). Returns whether everything asked for worked.
async fn finish_report(
    manifest: &Manifest,
    s3: Option<&S3>,
    local: &std::path::Path,
    run_id: &str,
    rows: &[StepRecord],
) -> bool {
    let Some(s3) = s3 else { return true };
    if let Some(expires) = manifest.output.presign {
        let urls = super::s3::presign_outputs(s3, rows, expires).await;
        if let Err(e) = retouch::report::write_with_output_urls(local, run_id, rows, &urls) {
            eprintln!("error: {e}");
            return false;
        }
    }
    if let Place::S3(dest) = &manifest.report
        && let Err(e) = super::s3::upload_report(s3, local, dest).await
    {
        eprintln!("error: {e} (the report is kept at {})", local.display());
        return false;
    }
    true
}

/// First Ctrl-C: stop starting images, let in-flight ones finish, write the report.
/// Second Ctrl-C: exit at once.
async fn watch_ctrl_c(cancel: CancellationToken, progress: Arc<Progress>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    cancel.cancel();
    progress.println(
        "interrupted: finishing images in flight and writing the report (Ctrl-C again to quit now)",
    );
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(code::INTERRUPTED);
    }
}

/// `20261122T010418Z-3f9a`: sortable, unique enough across concurrent runs.
fn run_id() -> String {
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
