//! `retouch models`: the catalog as a table, the local networks and whether each is installed;
//! `retouch models install NAME [--from PATH_OR_URL]`.

use retouch::catalog::{Date, Lifecycle, ModelKind, Op, local_model, local_models};
use retouch::model_store::ModelStore;

use super::args::{ModelsArgs, ModelsCommand, ModelsInstallArgs};
use super::code;

pub(super) async fn models(args: &ModelsArgs) -> anyhow::Result<i32> {
    match &args.action {
        Some(ModelsCommand::Install(install_args)) => install(install_args).await,
        None if args.account => account(args).await,
        None => {
            list_remote(args)?;
            if args.op.as_deref().is_none_or(|op| op == "remove-bg") {
                list_local();
            }
            Ok(code::OK)
        }
    }
}

fn lifecycle_text(l: Lifecycle) -> String {
    match l {
        Lifecycle::Active => "active".to_string(),
        Lifecycle::Preview => "preview".to_string(),
        Lifecycle::Legacy { eol: Some(d) } => format!("legacy, EOL {d}"),
        Lifecycle::Legacy { eol: None } => "legacy".to_string(),
        Lifecycle::PastEndOfLife { eol: Some(d) } => format!("PAST EOL {d}"),
        Lifecycle::PastEndOfLife { eol: None } => "retired".to_string(),
    }
}

/// `--account`: each catalog model's standing in this account and region.
async fn account(args: &ModelsArgs) -> anyhow::Result<i32> {
    let catalog = match &args.catalog {
        Some(path) => retouch::catalog::Catalog::builtin().with_overrides(path)?,
        None => retouch::catalog::Catalog::builtin(),
    };
    let region = match &args.region {
        Some(r) => r.clone(),
        None => std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into()),
    };
    let survey = retouch::account::survey_regions(&catalog, &region, &[], args.profile.as_deref());
    let survey = match survey.await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(code::SOME_FAILED);
        }
    };
    let today = Date::today_utc();
    println!(
        "models this account can use from {region} (each asked in the region a run there calls it in):"
    );
    println!(
        "{:<32} {:<18} {:<12} {:<24} MODEL ID / WHAT TO DO",
        "ALIAS", "ACCOUNT", "REGION", "CATALOG LIFECYCLE"
    );
    for m in &survey {
        let Some(entry) = catalog.resolve(&m.id) else {
            continue;
        };
        println!(
            "{:<32} {:<18} {:<12} {:<24} {}",
            m.alias,
            m.standing.word(),
            m.region,
            lifecycle_text(entry.lifecycle_on(today)),
            m.id
        );
        match &m.standing {
            retouch::account::Standing::NotEnabled { why } => println!("{:>34}{why}", ""),
            retouch::account::Standing::Unknown { why } => println!("{:>34}{why}", ""),
            retouch::account::Standing::Legacy {
                end_of_life: Some(d),
            } => println!("{:>34}legacy: end of life {d}", ""),
            _ => {}
        }
    }
    let usable = survey.iter().filter(|m| m.standing.usable()).count();
    println!(
        "{usable} of {} catalog models usable here; the rest fall back (`fallback:`) when a step permits them",
        survey.len()
    );
    Ok(code::OK)
}

async fn install(args: &ModelsInstallArgs) -> anyhow::Result<i32> {
    let Some(model) = local_model(&args.name) else {
        let names: Vec<&str> = local_models().iter().map(|m| m.name.as_str()).collect();
        eprintln!(
            "error: no local network is called `{}`; known: {}",
            retouch::report::printable(&args.name),
            names.join(", ")
        );
        return Ok(code::USAGE);
    };
    let from = args.from.as_deref().unwrap_or(&model.url);
    eprintln!(
        "installing {} ({:.1} MB) from {}",
        model.name,
        model.bytes as f64 / 1e6,
        retouch::report::printable(from)
    );
    let store = ModelStore::locate()?;
    match store.install(model, args.from.as_deref()).await {
        Ok(path) => {
            println!(
                "{} installed: {} (SHA-256 verified)",
                model.name,
                path.display()
            );
            Ok(code::OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(code::SOME_FAILED)
        }
    }
}

/// The local networks: name, size, installed or not, licence.
fn list_local() {
    let store = ModelStore::locate();
    println!();
    match &store {
        Ok(s) => println!(
            "LOCAL NETWORKS for remove-bg (`local_model:`), in {}",
            s.dir().display()
        ),
        Err(e) => println!("LOCAL NETWORKS for remove-bg: {e}"),
    }
    let installed = |m| store.as_ref().is_ok_and(|s| s.installed(m).is_some());
    println!(
        "{:<10} {:>9}  {:<13} {:<8} {:<28} FROM",
        "NAME", "SIZE", "INSTALLED", "INPUT", "LICENCE"
    );
    for m in local_models() {
        let installed = if installed(m) { "yes" } else { "no" };
        println!(
            "{:<10} {:>6.1} MB  {:<13} {:<8} {:<28} {} (or PyPI wheel {})",
            m.name,
            m.bytes as f64 / 1e6,
            installed,
            format!("{0}x{0}", m.input.side),
            m.licence,
            m.url,
            m.wheel
        );
    }
    match retouch::onnx_engine::describe() {
        Ok(engine) => println!("networks run on {engine}"),
        Err(e) => println!("networks cannot run: {e}"),
    }
    if !local_models().iter().any(installed) {
        println!(
            "none installed: local remove-bg uses the classical method; `retouch models install u2netp` installs one"
        );
    }
}

fn list_remote(args: &ModelsArgs) -> anyhow::Result<()> {
    let catalog = match &args.catalog {
        Some(path) => retouch::catalog::Catalog::builtin().with_overrides(path)?,
        None => retouch::catalog::Catalog::builtin(),
    };
    let op = args.op.as_deref().and_then(Op::parse);
    let today = Date::today_utc();
    println!(
        "{:<32} {:<13} {:<20} {:<24} {:>5}  {:<32} MODEL ID",
        "ALIAS", "OP", "PRICE/IMAGE (USD)", "LIFECYCLE", "RPM", "REGIONS"
    );
    for m in catalog.entries() {
        if m.kind == ModelKind::TextUnderstanding {
            if op.is_none() {
                println!(
                    "{:<32} {:<13} {:<20} {:<24} {:>5}  {:<32} {}",
                    m.alias,
                    "(none)",
                    "-",
                    "text only: cannot edit",
                    "-",
                    m.regions.join(","),
                    m.id
                );
            }
            continue;
        }
        for (&spec_op, spec) in &m.specs {
            if op.is_some_and(|o| o != spec_op) {
                continue;
            }
            let prices: Vec<String> = spec
                .prices
                .iter()
                .map(|t| format!("{:.3}", t.usd.as_dollars()))
                .collect();
            let lifecycle = lifecycle_text(m.lifecycle_on(today));
            println!(
                "{:<32} {:<13} {:<20} {:<24} {:>5}  {:<32} {}",
                m.alias,
                spec_op.as_str(),
                prices.join("/"),
                lifecycle,
                m.default_rpm,
                m.regions.join(","),
                m.invoke_id
            );
        }
    }
    Ok(())
}
