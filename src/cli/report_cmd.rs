//! `retouch report RUN_OR_CSV`: reviews a finished (or interrupted) run from its report CSV or
//! from the rows recorded in the state store, as text, JSON, and optionally an HTML page.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use retouch::ledger::{StepRecord, Store};
use retouch::report::html::{self, Resolver};
use retouch::report::{Analysis, Unfinished, read_csv};

use super::args::ReportArgs;
use super::code;

pub(super) fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let Loaded {
        run_id,
        rows,
        bases,
        unfinished,
    } = load(args)?;
    let analysis = Analysis::from_rows(&run_id, &rows);
    if let Some(path) = &args.html {
        let resolver = Resolver {
            bases: args.base.iter().cloned().chain(bases).collect(),
        };
        let page = html::render(&analysis, &rows, &resolver);
        html::write_atomic(path, &page)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        let mut json = serde_json::to_value(&analysis)?;
        if let Some(u) = &unfinished {
            json["unfinished"] = serde_json::to_value(u)?;
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{analysis}");
        if let Some(u) = &unfinished {
            print!("{u}");
        }
        if let Some(path) = &args.html {
            println!("\nhtml:   {}", path.display());
        }
    }
    Ok(code::OK)
}

/// A run to review.
struct Loaded {
    run_id: String,
    rows: Vec<StepRecord>,
    /// The folders relative paths in the rows may be relative to.
    bases: Vec<PathBuf>,
    /// For a run from the state store: the money its rows do not show.
    unfinished: Option<Unfinished>,
}

fn load(args: &ReportArgs) -> anyhow::Result<Loaded> {
    let target = Path::new(&args.run_or_csv);
    let cwd = PathBuf::from(".");
    if target.is_file() {
        let rep = read_csv(target)?;
        let folder = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let bases = vec![folder.to_owned(), folder.join(".."), cwd];
        return Ok(Loaded {
            run_id: rep.run_id,
            rows: rep.rows,
            bases,
            unfinished: None,
        });
    }
    let state = match super::state::find(args.state.as_deref()) {
        Ok(dir) => dir,
        Err(why) => bail!(
            "`{}` is neither a report CSV nor a run id found in a state folder: {why}",
            args.run_or_csv
        ),
    };
    if !state.join("state.db").is_file() {
        bail!(
            "`{}` is neither a report CSV nor a run id: no state store in {}",
            args.run_or_csv,
            state.display()
        );
    }
    let store = Store::open(&state)?;
    let Some(run) = store.run(&args.run_or_csv)? else {
        bail!(
            "`{}` is neither a report CSV nor a run recorded in {} (see `retouch runs`)",
            args.run_or_csv,
            state.display()
        );
    };
    let rows = store.rows(&run.info.run_id)?;
    let manifest_dir = Path::new(&run.info.manifest)
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let unfinished = Unfinished::from_money(store.run_money(&run.info.run_id)?);
    Ok(Loaded {
        run_id: run.info.run_id,
        rows,
        bases: vec![manifest_dir, cwd],
        unfinished,
    })
}
