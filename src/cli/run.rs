//! `retouch run`: flags to run options, one prepared run, the progress bar, the summary.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use retouch::manifest::Place;
use retouch::plan::Plan;
use retouch::run::{Overrides, PrepareError, Run, RunOptions, RunOutcome};

use super::args::{Args, RunArgs};
use super::code;
use super::progress::Progress;

pub(super) async fn run(args: &RunArgs, global: &Args) -> anyhow::Result<i32> {
    let report = match args.report.as_deref().map(report_location).transpose() {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: --report: {e}");
            return Ok(code::USAGE);
        }
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let shard = match retouch::shard::Shard::resolve(args.shard, args.shard_count, env) {
        Ok(shard) => shard,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(code::USAGE);
        }
    };
    let options = RunOptions {
        concurrency: args.concurrency.map(|c| c as usize),
        dry_run: args.dry_run,
        force: args.force,
        overrides: Overrides {
            catalog: args.catalog.clone(),
            state: args.state.clone(),
            report,
            s3: None,
            model_dir: None,
            shard,
            run_group: retouch::shard::run_group(args.run_group.as_deref(), env),
        },
        ..RunOptions::default()
    };
    let run = match Run::prepare(&args.manifest, options).await {
        Ok(run) => run,
        Err(e) => return Ok(refused(&e)),
    };
    for warning in run.warnings() {
        eprintln!("warning: {warning}");
    }
    let skipped = skipped_inputs(run.plan());
    if let (Some(shard), false) = (run.plan().shard, global.quiet) {
        eprintln!(
            "shard {shard}: {} inputs are this shard's; report part {}",
            run.plan().images.len(),
            run.plan().manifest.report
        );
    }
    let progress = Arc::new(Progress::new(run.plan().images.len() as u64, global.quiet));
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_ctrl_c(cancel.clone(), progress.clone()));
    let outcome = run.execute(progress.clone(), cancel).await?;
    signals.abort();
    progress.finish();
    if let Some(e) = &outcome.published.error {
        eprintln!("error: {e}");
    }
    if !global.quiet {
        print_summary(&outcome, skipped.as_deref(), args.dry_run);
    }
    let report_ok = outcome.published.error.is_none();
    Ok(if outcome.cancelled {
        code::INTERRUPTED
    } else if outcome.summary.all_ok() && report_ok {
        code::OK
    } else {
        code::SOME_FAILED
    })
}

/// Prints why a run could not start; the exit code is 2.
pub(super) fn refused(e: &PrepareError) -> i32 {
    match e {
        PrepareError::Manifest(errors) => eprintln!("{errors}"),
        PrepareError::WouldOverwrite { warnings, .. } => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            eprintln!("error: {e}");
        }
        e => eprintln!("error: {e}"),
    }
    code::USAGE
}

fn print_summary(outcome: &RunOutcome, skipped: Option<&str>, dry_run: bool) {
    println!("{}", outcome.summary);
    if let Some(skipped) = skipped {
        println!("{skipped}");
    }
    if let Some(state) = &outcome.state_dir {
        println!(
            "cache:  {} of {} steps {} from earlier runs; state in {}",
            outcome.cache_hits(),
            outcome.rows.len(),
            if dry_run { "would be reused" } else { "reused" },
            state.display()
        );
    }
    if let Some(dest) = &outcome.published.uploaded_to {
        println!("report uploaded to {dest}");
    }
    if let Some(kib) = peak_resident_kib() {
        println!("memory: peak {} MiB resident", kib.div_ceil(1024));
    }
}

/// This process's peak resident memory (`VmHWM`), where the system tells it (Linux).
///
/// Not `getrusage`: its `ru_maxrss` also counts the address space this process replaced at
/// exec, which for a child spawned with vfork is its parent's (a test harness, a shell script).
fn peak_resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
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

/// First Ctrl-C (or SIGTERM, which container engines send before stopping a job: a Spot
/// reclaim, a pod eviction): stop starting images, let in-flight ones finish, write the report.
/// A second one: exit at once.
async fn watch_ctrl_c(cancel: CancellationToken, progress: Arc<Progress>) {
    let mut term = terminate_signal();
    if !stop_asked(&mut term).await {
        return;
    }
    cancel.cancel();
    progress.println(
        "interrupted: finishing images in flight and writing the report (Ctrl-C again to quit now)",
    );
    if stop_asked(&mut term).await {
        std::process::exit(code::INTERRUPTED);
    }
}

#[cfg(unix)]
type TermSignal = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type TermSignal = Option<()>;

#[cfg(unix)]
fn terminate_signal() -> TermSignal {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::terminate()).ok()
}

#[cfg(not(unix))]
fn terminate_signal() -> TermSignal {
    None
}

/// Waits for Ctrl-C or SIGTERM; false when neither can be watched.
async fn stop_asked(term: &mut TermSignal) -> bool {
    #[cfg(unix)]
    if let Some(sig) = term {
        return tokio::select! {
            c = tokio::signal::ctrl_c() => c.is_ok(),
            s = sig.recv() => s.is_some(),
        };
    }
    #[cfg(not(unix))]
    let _ = term;
    tokio::signal::ctrl_c().await.is_ok()
}
