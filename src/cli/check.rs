//! `retouch check`: validate a manifest and show what a run would do, processing nothing:
//! inputs, each step's permitted models (and which are excluded and why), the route images
//! would take, the estimated cost range of the whole run, and the expected duration at the rate
//! limits. Reads image headers only.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use retouch::catalog::{Catalog, Date};
use retouch::manifest::{Manifest, ModelRef, Step};
use retouch::money::Usd;
use retouch::plan::Plan;
use retouch::router::{self, Decision, Facts};
use retouch::sources::{InputLocation, read_file, read_head};

use super::args::CheckArgs;
use super::code;

pub async fn check(args: &CheckArgs) -> anyhow::Result<i32> {
    let Some((manifest, catalog)) = super::load::load(&args.manifest, args.catalog.as_deref())
    else {
        return Ok(code::USAGE);
    };
    let Some((s3, listing)) = super::load::inputs(&manifest).await else {
        return Ok(code::USAGE);
    };
    let region = super::load::region(&manifest);
    let Some(plan) = super::load::plan(manifest, s3, listing) else {
        return Ok(code::USAGE);
    };
    print_header(&plan, &region);
    let mut sizes = probe_local_sizes(&plan);
    sizes.extend(probe_s3_sizes(&plan).await);
    let today = Date::today_utc();
    let healthy = |_: &str| None;
    let facts = Facts {
        catalog: &catalog,
        region: &region,
        today,
        remote_available: true,
        unhealthy: &healthy,
    };
    let mut estimate = Estimate::default();
    println!("steps:");
    for step in &plan.manifest.steps {
        print_step(step, &catalog, &facts, &sizes, &mut estimate);
    }
    estimate.print(&plan.manifest, &catalog);
    print_drift(&plan.manifest, &catalog, today);
    Ok(code::OK)
}

/// How a run now would differ from the last recorded run of this state folder (the lock).
fn print_drift(manifest: &retouch::manifest::Manifest, catalog: &Catalog, today: Date) {
    // Checking must not create a state folder where there is none.
    if !manifest.state.join("state.db").is_file() {
        return;
    }
    let last = match retouch::ledger::Store::open(&manifest.state).and_then(|s| s.last_lock()) {
        Ok(last) if !last.is_empty() => last,
        Ok(_) => return,
        Err(e) => {
            println!("\nlock: cannot read the last run's models ({e})");
            return;
        }
    };
    let drift = retouch::lock::drift(&last, manifest, catalog, today);
    println!();
    if drift.is_empty() {
        println!("since the last run: same models, same prices");
        return;
    }
    println!("since the last run (routing or prices would differ):");
    for d in drift {
        println!("  {d}");
    }
}

fn print_header(plan: &Plan, region: &str) {
    let m = &plan.manifest;
    println!("manifest: {} ({})", m.path.display(), m.name);
    print!("inputs:   {} images", plan.images.len());
    if plan.excluded > 0 || plan.skipped_non_images > 0 {
        print!(
            " ({} excluded, {} non-image files skipped)",
            plan.excluded, plan.skipped_non_images
        );
    }
    if plan.skipped_broken > 0 || !plan.unreadable_folders.is_empty() {
        print!(
            " ({} broken links skipped, {} unreadable folders skipped)",
            plan.skipped_broken,
            plan.unreadable_folders.len()
        );
    }
    if plan.skipped_folder_markers > 0 {
        print!(
            " ({} S3 folder markers skipped)",
            plan.skipped_folder_markers
        );
    }
    println!();
    for problem in plan.images.iter().filter_map(|i| i.output.as_ref().err()) {
        println!("  warning: {problem}");
    }
    println!(
        "output:   {} ({:?}, quality {})",
        m.output.dir, m.output.format, m.output.quality
    );
    if let Some(d) = m.output.presign {
        println!(
            "presign:  output_url column, URLs valid {} h",
            d.as_secs() / 3600
        );
    }
    println!("report:   {}", m.report);
    println!(
        "region:   {region} (lifecycle judged on {})",
        Date::today_utc()
    );
}

/// Upright sizes of every readable local input (headers only), in input order.
fn probe_local_sizes(plan: &Plan) -> Vec<(u32, u32)> {
    let max_mp = plan.manifest.limits.max_megapixels;
    plan.images
        .par_iter()
        .filter_map(|img| match &img.item.location {
            InputLocation::Local(path) => {
                let max_bytes = retouch::codec::max_input_bytes(max_mp);
                let bytes = read_file(path, &img.item.display, None, max_bytes).ok()?;
                retouch::codec::probe(&bytes, max_mp).ok()
            }
            InputLocation::S3 { .. } => None,
        })
        .collect()
}

/// Bytes fetched per S3 object to read its header; the whole object only if that is not enough.
const S3_HEAD_BYTES: u64 = 256 * 1024;

/// Upright sizes of every readable S3 input, from ranged GETs, 16 at a time.
async fn probe_s3_sizes(plan: &Plan) -> Vec<(u32, u32)> {
    let max_mp = plan.manifest.limits.max_megapixels;
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for img in &plan.images {
        if !matches!(img.item.location, InputLocation::S3 { .. }) {
            continue;
        }
        let (img, permits) = (img.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            let s3 = img.s3.as_ref();
            let max_bytes = retouch::codec::max_input_bytes(max_mp);
            let head = read_head(&img.item, s3, Some(S3_HEAD_BYTES), max_bytes)
                .await
                .ok()?;
            match retouch::codec::probe(&head, max_mp) {
                Ok(size) => Some(size),
                Err(_) if head.len() as u64 >= S3_HEAD_BYTES => {
                    let all = read_head(&img.item, s3, None, max_bytes).await.ok()?;
                    retouch::codec::probe(&all, max_mp).ok()
                }
                Err(_) => None,
            }
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

/// Cost and call totals over the whole run.
#[derive(Default)]
struct Estimate {
    /// Every image-step on its cheapest candidate.
    low: Usd,
    /// Every image-step on its costliest permitted candidate.
    high: Usd,
    /// Calls per model on the cheapest route.
    calls: BTreeMap<String, u64>,
}

fn print_step(
    step: &Step,
    catalog: &Catalog,
    facts: &Facts,
    sizes: &[(u32, u32)],
    est: &mut Estimate,
) {
    let names: Vec<String> = step
        .models
        .iter()
        .map(|m| match m {
            ModelRef::Local => "local".into(),
            ModelRef::Remote(id) => catalog.resolve(id).map_or(id.clone(), |e| e.alias.clone()),
        })
        .collect();
    println!(
        "  {}. {:<13} models [{}], fallback {}",
        step.index + 1,
        step.op.as_str(),
        names.join(", "),
        format!("{:?}", step.fallback).to_lowercase()
    );
    let mut routes: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut excluded: BTreeMap<String, String> = BTreeMap::new();
    let mut size_in = sizes.to_vec();
    for size in size_in.iter_mut() {
        let (route, why) = match router::decide(step, *size, facts) {
            Decision::Remote {
                candidates,
                reason,
                excluded: ex,
            } => {
                let first = &candidates[0];
                est.low += first.price;
                est.high += candidates
                    .iter()
                    .map(|c| c.price)
                    .max()
                    .unwrap_or(Usd::ZERO);
                *est.calls.entry(first.model.id.clone()).or_default() += 1;
                record_excluded(&mut excluded, catalog, &ex);
                (first.model.alias.clone(), reason.to_string())
            }
            Decision::Other {
                route,
                excluded: ex,
            } => {
                record_excluded(&mut excluded, catalog, &ex);
                (route.model(), route.reason().to_string())
            }
        };
        let entry = routes.entry(route).or_insert((0, why));
        entry.0 += 1;
        *size = step.output_size(*size);
    }
    for (model, why) in &excluded {
        println!("       {model:<32} excluded: {why}");
    }
    for (model, (n, why)) in &routes {
        println!("       -> {model:<29} {n} images ({why})");
    }
}

fn record_excluded(
    into: &mut BTreeMap<String, String>,
    catalog: &Catalog,
    ex: &[router::Excluded],
) {
    for e in ex {
        let alias = catalog
            .resolve(&e.model)
            .map_or(e.model.clone(), |m| m.alias.clone());
        into.entry(alias).or_insert_with(|| e.why.to_string());
    }
}

impl Estimate {
    fn print(&self, manifest: &Manifest, catalog: &Catalog) {
        print!("estimated cost: ${} to ${}", self.low, self.high);
        if let Some(cap) = manifest.budget.max_usd {
            print!(" (run capped at ${cap} by budget.max_usd)");
        }
        println!();
        let mut minutes = 0.0f64;
        for (model, calls) in &self.calls {
            let rpm = manifest
                .limits
                .rpm
                .get(model)
                .copied()
                .or_else(|| catalog.resolve(model).map(|m| m.default_rpm))
                .unwrap_or(10)
                .max(1);
            let m = *calls as f64 / f64::from(rpm);
            println!("  {model}: {calls} calls at {rpm} rpm = {m:.1} min");
            minutes = minutes.max(m);
        }
        if self.calls.is_empty() {
            println!("expected duration: no remote calls (local processing only)");
        } else {
            println!(
                "expected duration: at least {minutes:.1} min at the rate limits (models run in parallel)"
            );
        }
    }
}
