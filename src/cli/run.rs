//! `retouch run`: load, list, plan, run, summarise.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use retouch::catalog::Date;
use retouch::plan::Plan;
use retouch::providers::bedrock::ConnectSettings;
use retouch::report::CsvReport;
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
    if let Some(report) = &args.report {
        manifest.report = report.clone();
    }
    let concurrency = args
        .concurrency
        .map(|c| c as usize)
        .unwrap_or(manifest.limits.concurrency);
    let listing = match retouch::sources::list(&manifest) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(code::USAGE);
        }
    };
    let run_id = run_id();
    let manifest_region = manifest.aws.region.clone();
    let manifest_profile = manifest.aws.profile.clone();
    let attempts = manifest.limits.attempts;
    let report = CsvReport::create(&manifest.report, &run_id)
        .with_context(|| "cannot start the report".to_string())?;
    let plan = Plan::new(Arc::new(manifest), listing);
    let progress = Arc::new(Progress::new(plan.images.len() as u64, global.quiet));
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_ctrl_c(cancel.clone(), progress.clone()));

    let connection = Connection::Connect(ConnectSettings {
        region: manifest_region,
        profile: manifest_profile,
        ..ConnectSettings::default()
    });
    let config = RunConfig {
        run_id,
        concurrency,
        dry_run: args.dry_run,
        catalog,
        today: Date::today_utc(),
        connection,
        retry: RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        },
    };
    let outcome = scheduler::run(plan, config, report, progress.clone(), cancel.clone()).await?;
    signals.abort();
    progress.finish();
    if !global.quiet {
        println!("{}", outcome.summary);
    }
    Ok(if outcome.cancelled {
        code::INTERRUPTED
    } else if outcome.summary.all_ok() {
        code::OK
    } else {
        code::SOME_FAILED
    })
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
