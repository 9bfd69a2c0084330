//! `retouch check`: validate a manifest and show what a run would do, processing nothing:
//! inputs, each step's permitted models (and which are excluded and why), the route images
//! would take, the estimated cost range of the whole run, and the expected duration at the rate
//! limits. Reads image headers only; the estimate is `plan::estimate`'s, this file only prints.

use retouch::catalog::{Catalog, Date};
use retouch::manifest::{Manifest, ModelRef, Step};
use retouch::plan::Plan;
use retouch::plan::estimate::{Estimate, PassRate, StepEstimate, probe_sizes};
use retouch::report::printable;
use retouch::router::Facts;
use retouch::run::{Overrides, prepare, region};

use super::args::CheckArgs;
use super::code;

pub(super) async fn check(args: &CheckArgs) -> anyhow::Result<i32> {
    if let Some(preset) = &args.preset {
        return super::validate::validate(preset, args).await;
    }
    let [manifest] = args.paths.as_slice() else {
        eprintln!(
            "error: check takes one manifest (or, with --preset, images to validate); got {}",
            args.paths.len()
        );
        return Ok(code::USAGE);
    };
    let overrides = Overrides {
        catalog: args.catalog.clone(),
        ..Overrides::default()
    };
    let prepared = match prepare(manifest, overrides).await {
        Ok(p) => p,
        Err(e) => return Ok(super::run::refused(&e)),
    };
    for warning in &prepared.warnings {
        eprintln!("warning: {warning}");
    }
    let (plan, catalog) = (&prepared.plan, &prepared.catalog);
    let region = region(&plan.manifest);
    print_header(plan, &region);
    let sizes = probe_sizes(plan).await;
    let today = Date::today_utc();
    let healthy = |_: &str| None;
    let facts = Facts {
        catalog,
        region: &region,
        regions: &plan.manifest.aws.regions,
        today,
        remote_available: true,
        unhealthy: &healthy,
    };
    let estimate = Estimate::of(&plan.manifest, &sizes, &facts);
    println!("steps:");
    let mut escalation = retouch::money::Usd::ZERO;
    let mut grading = retouch::money::Usd::ZERO;
    for (step, est) in plan.manifest.steps.iter().zip(&estimate.steps) {
        let local_method = prepared.local.model(step);
        print_step(step, catalog, est, local_method);
        if let Some(expected) = print_escalation(step, catalog, est, local_method, &plan.manifest) {
            escalation += expected;
        }
        grading += print_grader(step, catalog, sizes.len());
    }
    print_estimate(&estimate, &plan.manifest, catalog);
    if !grading.is_zero() {
        println!("grading: up to ${grading} more (every result graded at the largest picture)");
    }
    if !escalation.is_zero() {
        println!(
            "expected with escalation: ${} (the cheapest routes plus the expected redos)",
            estimate.low + escalation
        );
    }
    print_drift(&plan.manifest, catalog, today);
    if args.account {
        print_account(&plan.manifest, catalog, &region).await;
    }
    Ok(code::OK)
}

/// `--account`: the permitted remote models this account cannot use in the run's region, and
/// what their steps will do instead.
async fn print_account(manifest: &Manifest, catalog: &Catalog, region: &str) {
    println!();
    let (allowed, profile) = (&manifest.aws.regions, manifest.aws.profile.as_deref());
    let survey = retouch::account::survey_regions(catalog, region, allowed, profile);
    let survey = match survey.await {
        Ok(s) => s,
        Err(e) => {
            println!("account: not checked ({e})");
            return;
        }
    };
    let mut problems = 0;
    for step in &manifest.steps {
        let graders = step.grader.iter().map(|g| g.model.as_str());
        for id in step.remote_models().chain(graders) {
            let Some(found) = survey.iter().find(|m| m.id == id) else {
                continue;
            };
            if found.standing.usable() {
                continue;
            }
            problems += 1;
            let instead = match step.fallback {
                retouch::manifest::Fallback::Local => "local",
                retouch::manifest::Fallback::Skip => "skipped",
                retouch::manifest::Fallback::Fail => "failed",
            };
            println!(
                "account: step {} ({}): {} is {}; its images go to the next permitted model, else {instead}",
                step.index + 1,
                step.op,
                found.alias,
                found.standing
            );
        }
    }
    if problems == 0 {
        println!("account: every permitted model is usable in {region}");
    }
}

/// How a run now would differ from the last recorded run of this state folder (the lock).
fn print_drift(manifest: &Manifest, catalog: &Catalog, today: Date) {
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
    let drift = retouch::ledger::catalog_lock::drift(&last, manifest, catalog, today);
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
    let prompts = m.steps.first().is_some_and(|s| s.op.makes_image());
    let what = if prompts { "prompts" } else { "images" };
    print!("inputs:   {} {what}", plan.images.len());
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
        println!("  warning: {}", printable(&problem.to_string()));
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

/// One step: its models, exclusions, and where its images go (`local_method` names what a local
/// route runs: `local`, or `local:<network>` for remove-bg with a network).
fn print_step(step: &Step, catalog: &Catalog, est: &StepEstimate, local_method: &str) {
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
    for (model, why) in &est.excluded {
        println!("       {model:<32} excluded: {why}");
    }
    for (model, (n, why)) in &est.routes {
        let model = if model == ModelRef::LOCAL {
            local_method
        } else {
            model
        };
        println!("       -> {model:<29} {n} images ({why})");
    }
}

/// A step's `escalate:`: what redoing costs at worst and as expected from the pass rate earlier
/// runs of this state folder measured for the step's usual model. Returns the expected cost.
fn print_escalation(
    step: &Step,
    catalog: &Catalog,
    est: &StepEstimate,
    local_method: &str,
    manifest: &Manifest,
) -> Option<retouch::money::Usd> {
    let escalate = step.escalate.as_ref()?;
    let names: Vec<String> = escalate
        .to
        .iter()
        .map(|id| catalog.resolve(id).map_or(id.clone(), |e| e.alias.clone()))
        .collect();
    // The model most images go to first, as the report names it.
    let first = est
        .routes
        .iter()
        .max_by_key(|(_, (n, _))| *n)
        .map(|(alias, _)| match alias.as_str() {
            ModelRef::LOCAL => local_method.to_owned(),
            alias => catalog
                .resolve(alias)
                .map_or(alias.to_owned(), |e| e.id.clone()),
        })
        .unwrap_or_default();
    let history = pass_history(manifest, step, &first, escalate.below);
    let worst = est.escalation(None);
    let expected = est.escalation(history.rate());
    println!(
        "       escalate below {:.2} to [{}]: up to ${worst} if every result is redone",
        escalate.below,
        names.join(", ")
    );
    match history.rate() {
        Some(rate) => println!(
            "       expected ${expected}: {:.0}% of {} earlier {first} results passed",
            rate * 100.0,
            history.measured
        ),
        None => println!(
            "       expected ${expected}: {} earlier {first} results measured here (under {}), \
             so every result is assumed redone",
            history.measured,
            PassRate::MIN_MEASURED
        ),
    }
    Some(expected)
}

/// A step's paid grader: which model, and the most grading `images` results can cost.
fn print_grader(step: &Step, catalog: &Catalog, images: usize) -> retouch::money::Usd {
    let Some(grader) = &step.grader else {
        return retouch::money::Usd::ZERO;
    };
    let Some(model) = catalog.resolve(&grader.model) else {
        return retouch::money::Usd::ZERO;
    };
    let Some(prices) = model.tokens else {
        return retouch::money::Usd::ZERO;
    };
    let each = retouch::providers::grader::max_cost(prices);
    let which = match grader.below {
        Some(b) => format!("results scoring below {b:.2} locally"),
        None => "every result".to_owned(),
    };
    println!(
        "       qa: {which} graded by {} (per token: ${} / ${} per million in / out), at most ${each} each",
        model.alias, prices.input_per_million, prices.output_per_million
    );
    each.times(images as u32)
}

/// How `model`'s results for this step's op fared against `mark` in earlier runs (none when the
/// state folder does not exist: checking creates nothing).
fn pass_history(manifest: &Manifest, step: &Step, model: &str, mark: f32) -> PassRate {
    if !manifest.state.join("state.db").is_file() {
        return PassRate::default();
    }
    retouch::ledger::Store::open(&manifest.state)
        .and_then(|s| s.passed(step.op, model, mark))
        .map(|(passed, measured)| PassRate { passed, measured })
        .unwrap_or_default()
}

fn print_estimate(est: &Estimate, manifest: &Manifest, catalog: &Catalog) {
    print!("estimated cost: ${} to ${}", est.low, est.high);
    if let Some(cap) = manifest.budget.max_usd {
        print!(" (run capped at ${cap} by budget.max_usd)");
    }
    println!();
    let durations = est.durations(manifest, catalog);
    for d in &durations {
        println!(
            "  {}: {} calls at {} rpm = {:.1} min",
            d.model, d.calls, d.rpm, d.minutes
        );
    }
    for (model, calls) in &est.escalation_calls {
        println!("  {model}: up to {calls} more calls if every result escalates");
    }
    if durations.is_empty() && est.escalation_calls.is_empty() {
        println!("expected duration: no remote calls (local processing only)");
    } else if durations.is_empty() {
        println!("expected duration: local processing, plus the redos of results that escalate");
    } else {
        let minutes = durations.iter().map(|d| d.minutes).fold(0.0f64, f64::max);
        println!(
            "expected duration: at least {minutes:.1} min at the rate limits (models run in parallel)"
        );
    }
}
