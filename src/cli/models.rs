//! `retouch models`: the catalog as a table.

use retouch::catalog::{Date, Lifecycle, ModelKind, Op};

use super::args::ModelsArgs;
use super::code;

pub(super) fn models(args: &ModelsArgs) -> anyhow::Result<i32> {
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
            let lifecycle = match m.lifecycle_on(today) {
                Lifecycle::Active => "active".to_string(),
                Lifecycle::Legacy { eol: Some(d) } => format!("legacy, EOL {d}"),
                Lifecycle::Legacy { eol: None } => "legacy".to_string(),
                Lifecycle::PastEndOfLife { eol: Some(d) } => format!("PAST EOL {d}"),
                Lifecycle::PastEndOfLife { eol: None } => "retired".to_string(),
            };
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
    Ok(code::OK)
}
