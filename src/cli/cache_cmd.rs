//! `retouch cache gc`: trims the step cache of a state folder.

use retouch::ledger::Store;

use super::args::{CacheCommand, CacheGcArgs};
use super::code;

pub(super) fn cache(command: &CacheCommand) -> anyhow::Result<i32> {
    match command {
        CacheCommand::Gc(args) => gc(args),
    }
}

fn gc(args: &CacheGcArgs) -> anyhow::Result<i32> {
    let Some(state) = super::state::find_or_explain(args.state.as_deref()) else {
        return Ok(code::USAGE);
    };
    // Trimming must not create a state folder where there is none.
    if !state.join("state.db").is_file() {
        eprintln!(
            "error: no state store in {} (pass --state DIR: the `.retouch` folder next to the manifest, or its `state:`)",
            state.display()
        );
        return Ok(code::USAGE);
    }
    let store = Store::open(&state)?;
    let stats = store.gc(args.older_than)?;
    println!(
        "removed {} cache entries and {} files ({:.1} MB)",
        stats.entries_removed,
        stats.blobs_removed,
        stats.bytes_freed as f64 / 1e6
    );
    Ok(code::OK)
}
