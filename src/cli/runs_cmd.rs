//! `retouch runs`: the runs recorded in a state folder, newest first. A run that stopped
//! part-way (killed) shows everything it was billed, including images that never got their
//! rows, and what calls in flight at that moment may have cost on top.

use retouch::catalog::Date;
use retouch::ledger::Store;
use retouch::money::Usd;

use super::args::RunsArgs;
use super::code;

pub(super) fn runs(args: &RunsArgs) -> anyhow::Result<i32> {
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
