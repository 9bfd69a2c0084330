//! `retouch check`: validate a manifest and show what a run would do, processing nothing.

use std::path::Path;
use std::sync::Arc;

use retouch::catalog::Catalog;
use retouch::manifest::{self, Manifest};
use retouch::plan::Plan;
use retouch::router;

use super::args::CheckArgs;
use super::code;

/// Loads and validates a manifest, printing every diagnostic on failure.
pub fn load_manifest(path: &Path) -> Option<Manifest> {
    match manifest::load(path, &Catalog::builtin()) {
        Ok(m) => Some(m),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

pub async fn check(args: &CheckArgs) -> anyhow::Result<i32> {
    let Some(manifest) = load_manifest(&args.manifest) else {
        return Ok(code::USAGE);
    };
    let listing = match retouch::sources::list(&manifest) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(code::USAGE);
        }
    };
    let plan = Plan::new(Arc::new(manifest), listing);
    let m = &plan.manifest;
    println!("manifest: {} ({})", m.path.display(), m.name);
    print!("inputs:   {} images", plan.images.len());
    if plan.excluded > 0 || plan.skipped_non_images > 0 {
        print!(
            " ({} excluded, {} non-image files skipped)",
            plan.excluded, plan.skipped_non_images
        );
    }
    println!();
    for problem in plan.images.iter().filter_map(|i| i.output.as_ref().err()) {
        println!("  warning: {problem}");
    }
    println!(
        "output:   {} ({:?}, quality {})",
        m.output.dir.display(),
        m.output.format,
        m.output.quality
    );
    println!("report:   {}", m.report.display());
    println!("steps:");
    for step in &m.steps {
        let models: Vec<String> = step.models.iter().map(|m| m.to_string()).collect();
        let route = router::route(step);
        println!(
            "  {}. {:<13} models [{}] -> {} ({})",
            step.index + 1,
            step.op.as_str(),
            models.join(", "),
            route.model(),
            route.reason()
        );
    }
    Ok(code::OK)
}
