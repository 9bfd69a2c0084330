//! `retouch runs`: the runs recorded in a state folder, newest first. A run that stopped
//! part-way (killed) shows everything it was billed, including images that never got their
//! rows, and what calls in flight at that moment may have cost on top. With `--table`, the
//! runs every machine recorded in a coordination table instead (every shard of every run
//! group), with a run group's totals.

use retouch::catalog::Date;
use retouch::ledger::Store;
use retouch::ledger::coordination::{SharedRun, Table, TableSettings};
use retouch::money::Usd;

use super::args::RunsArgs;
use super::code;

pub(super) async fn runs(args: &RunsArgs) -> anyhow::Result<i32> {
    if let Some(name) = &args.table {
        return shared_runs(args, name).await;
    }
    let state = match super::state::find(args.state.as_deref()) {
        Ok(dir) => dir,
        Err(why) => {
            println!("no runs recorded: {why}");
            return Ok(code::OK);
        }
    };
    // Listing must not create a state folder where there is none.
    if !state.join("state.db").is_file() {
        println!("no runs recorded in {}", state.display());
        return Ok(code::OK);
    }
    let store = Store::open(&state)?;
    println!(
        "{:<20} {:<26} {:>7} {:>7} {:>7} {:>14}  MANIFEST",
        "STARTED (UTC)", "RUN", "IMAGES", "OK", "FAILED", "COST (USD)"
    );
    for run in store.runs()? {
        let unfinished = match (run.finished_at, store.is_alive(&run.info.run_id)) {
            (Some(_), _) => String::new(),
            (None, true) => " (running)".into(),
            (None, false) if run.possibly_billed > Usd::ZERO => format!(
                " (unfinished; up to ${} more possibly billed by calls in flight when it stopped)",
                run.possibly_billed
            ),
            (None, false) => " (unfinished)".into(),
        };
        println!(
            "{:<20} {:<26} {:>7} {:>7} {:>7} {:>14}  {}{unfinished}",
            utc(run.info.started_at),
            run.info.run_id,
            run.info.images,
            run.ok,
            run.failed,
            run.cost.to_string(),
            run.info.manifest
        );
    }
    Ok(code::OK)
}

/// The runs recorded in the coordination table `name`.
async fn shared_runs(args: &RunsArgs, name: &str) -> anyhow::Result<i32> {
    let settings = TableSettings {
        name: name.to_owned(),
        region: args.region.clone(),
        profile: args.profile.clone(),
    };
    let table = Table::connect(&settings).await;
    let runs = match table.runs(args.group.as_deref(), args.limit.max(1)).await {
        Ok(runs) => runs,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(code::SOME_FAILED);
        }
    };
    println!(
        "{:<20} {:<26} {:<20} {:>11} {:>7} {:>7} {:>7} {:>14}  MANIFEST",
        "STARTED (UTC)", "RUN", "GROUP", "SHARD", "IMAGES", "OK", "FAILED", "COST (USD)"
    );
    for run in &runs {
        println!(
            "{:<20} {:<26} {:<20} {:>11} {:>7} {:>7} {:>7} {:>14}  {}{}",
            utc(run.started_at),
            run.run_id,
            run.group,
            run.shard.as_deref().unwrap_or("-"),
            run.images,
            run.ok,
            run.failed,
            run.cost.to_string(),
            run.manifest,
            state(run)
        );
    }
    if let Some(group) = &args.group {
        let finished = runs.iter().filter(|r| r.finished_at.is_some()).count();
        let cost: Usd = runs.iter().map(|r| r.cost).sum();
        let images: u64 = runs.iter().map(|r| r.ok + r.failed).sum();
        println!(
            "run group {group}: {} runs ({finished} finished), {images} images done, ${cost}",
            runs.len()
        );
    }
    Ok(code::OK)
}

/// How a run recorded in the table ended (nothing for one that finished every image).
fn state(run: &SharedRun) -> &'static str {
    match (run.finished_at, run.alive) {
        (Some(_), _) if run.interrupted => " (interrupted)",
        (Some(_), _) => "",
        (None, true) => " (running)",
        (None, false) => " (unfinished)",
    }
}

/// `YYYY-MM-DD HH:MM:SS` of unix seconds, UTC.
fn utc(secs: i64) -> String {
    let day = Date::from_days_since_epoch(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        day.y,
        day.m,
        day.d,
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}
