//! `retouch report RUN_OR_CSV`: reviews a finished (or interrupted) run from its report CSV,
//! from the rows recorded in the state store, or from a sharded run's report parts (a folder or
//! S3 prefix), as text, JSON, and optionally an HTML page. `retouch report merge` is
//! `report_merge.rs`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use retouch::ledger::{StepRecord, Store};
use retouch::report::html::{self, Resolver};
use retouch::report::{Analysis, Unfinished, read_csv, read_csv_from};

use super::args::{ReportArgs, ReportCommand};
use super::code;

pub(super) async fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    if let Some(ReportCommand::Merge(merge)) = &args.action {
        return super::report_merge::merge(merge).await;
    }
    let target = args.run_or_csv.clone().unwrap_or_default();
    let (loaded, shards) = if super::report_merge::names_parts(&target) {
        let (loaded, status) = load_parts(&target, args).await?;
        (loaded, Some(status))
    } else {
        (load(&target, args)?, None)
    };
    let Loaded {
        run_id,
        rows,
        bases,
        unfinished,
    } = loaded;
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
        if let Some((complete, text)) = &shards {
            json["shards"] = serde_json::json!({ "complete": complete, "status": text });
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{analysis}");
        if let Some(u) = &unfinished {
            print!("{u}");
        }
        if let Some((_, text)) = &shards {
            print!("\n{text}");
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

/// A sharded run's parts, merged, and what the merge says of its shards (complete, text).
async fn load_parts(target: &str, args: &ReportArgs) -> anyhow::Result<(Loaded, (bool, String))> {
    let mut s3 = super::s3_access::S3Access::new(&args.s3);
    let (found, beside) = super::report_merge::find(&[target.to_owned()], &mut s3).await?;
    let merged = retouch::report::parts::merge(found)?;
    let csv = merged.to_csv();
    let rep = read_csv_from(csv.as_slice(), Path::new(target))?;
    let cwd = PathBuf::from(".");
    let bases = match beside {
        Some(super::report_merge::Beside::Folder(dir)) => vec![dir.clone(), dir.join(".."), cwd],
        _ => vec![cwd],
    };
    let status = (merged.is_complete(), super::report_merge::status(&merged));
    let loaded = Loaded {
        run_id: format!("{} ({} shards)", rep.run_id, merged.count),
        rows: rep.rows,
        bases,
        unfinished: None,
    };
    Ok((loaded, status))
}

fn load(run_or_csv: &str, args: &ReportArgs) -> anyhow::Result<Loaded> {
    let target = Path::new(run_or_csv);
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
            run_or_csv
        ),
    };
    if !state.join("state.db").is_file() {
        bail!(
            "`{}` is neither a report CSV nor a run id: no state store in {}",
            run_or_csv,
            state.display()
        );
    }
    let store = Store::open(&state)?;
    let Some(run) = store.run(run_or_csv)? else {
        bail!(
            "`{}` is neither a report CSV nor a run recorded in {} (see `retouch runs`)",
            run_or_csv,
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
