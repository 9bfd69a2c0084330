//! One image's journey: read, decode, each step in order (routed, then run remotely or
//! locally), encode, write, and its report rows.
//!
//! Every failure here is data: it becomes the image's rows (the failing step `failed` with the
//! reason, later steps `skipped`), never an error that stops the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbaImage;

use super::remote::{NotServed, Remote};
use super::rows::{RowBuilder, StepDone};
use crate::catalog::Catalog;
use crate::codec;
use crate::cpu;
use crate::ledger::StepRecord;
use crate::manifest::{Manifest, Step};
use crate::money::Usd;
use crate::plan::PlannedImage;
use crate::providers;
use crate::router::{self, Decision, Facts, Route};
use crate::sinks;
use crate::sources;

/// What every image task shares. Lives as long as the run.
pub(super) struct ImageContext {
    pub manifest: Arc<Manifest>,
    pub catalog: Arc<Catalog>,
    pub remote: Remote,
    /// Route and price only; call nothing, write nothing.
    pub dry_run: bool,
}

impl ImageContext {
    pub(super) fn decide(&self, step: &Step, size: (u32, u32)) -> Decision {
        let unhealthy = |id: &str| self.remote.unhealthy(id);
        let facts = Facts {
            catalog: &self.catalog,
            region: &self.remote.region,
            today: self.remote.today,
            remote_available: self.remote.client.is_some() || self.dry_run,
            unhealthy: &unhealthy,
        };
        router::decide(step, size, &facts)
    }
}

/// Processes one image and returns its rows, one per step.
pub(super) async fn process(ctx: &ImageContext, planned: PlannedImage) -> Vec<StepRecord> {
    let rows = RowBuilder::new(&planned.item, &ctx.manifest.steps);
    let output = match planned.output {
        Ok(dest) => sinks::Target {
            dest,
            s3: planned.s3.clone(),
        },
        Err(problem) => return rows.all_failed(problem.reason(), &problem.to_string()),
    };
    let bytes = match sources::read(&planned.item, planned.s3.as_ref()).await {
        Ok(b) => b,
        Err(e) => return rows.all_failed(e.reason(), &e.to_string()),
    };
    let max_mp = ctx.manifest.limits.max_megapixels;
    if ctx.dry_run {
        return match cpu::run(move || codec::probe(&bytes, max_mp)).await {
            Ok(Ok(size)) => super::dry_run::plan_rows(ctx, rows, &planned.item.display, size),
            Ok(Err(e)) => rows.all_failed(e.reason(), &e.to_string()),
            Err(panic) => rows.all_failed("internal-error", &panic.to_string()),
        };
    }
    let decoded = match cpu::run(move || codec::decode(&bytes, max_mp)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return rows.all_failed(e.reason(), &e.to_string()),
        Err(panic) => return rows.all_failed("internal-error", &panic.to_string()),
    };
    let key = planned.item.display.clone();
    run_steps(
        ctx,
        rows,
        &key,
        Arc::new(decoded.image),
        decoded.icc,
        output,
    )
    .await
}

async fn run_steps(
    ctx: &ImageContext,
    mut rows: RowBuilder,
    key: &str,
    mut image: Arc<RgbaImage>,
    icc: Option<Vec<u8>>,
    output: sinks::Target,
) -> Vec<StepRecord> {
    for step in &ctx.manifest.steps {
        let input_size = image.dimensions();
        let outcome = match ctx.decide(step, input_size) {
            Decision::Remote {
                candidates, reason, ..
            } => match ctx
                .remote
                .serve(step, key, image.clone(), candidates, reason)
                .await
            {
                Ok(served) => Ok(StepDone {
                    model: served.model,
                    reason: served.reason,
                    cost: served.cost,
                    attempts: served.attempts,
                    latency: served.latency,
                    image: Some(served.image),
                }),
                Err(not_served) => {
                    let route = router::fall_back(step.fallback, not_served.reason);
                    run_route(step, &image, route, Some(not_served)).await
                }
            },
            Decision::Other { route, .. } => run_route(step, &image, route, None).await,
        };
        match outcome {
            Ok(mut done) => {
                let output_size = done.image.as_ref().map_or(input_size, |i| i.dimensions());
                let skipped = done.image.is_none();
                if let Some(new) = done.image.take() {
                    image = Arc::new(new);
                }
                rows.done(step, done, skipped, input_size, output_size);
            }
            Err(failed) => {
                rows.failed(step, failed, input_size);
                return rows.finish_failed();
            }
        }
    }
    write_output(ctx, rows, image, icc, output).await
}

/// A step that failed, for its row.
pub(super) struct StepFailed {
    pub model: String,
    pub reason: String,
    pub error: String,
    pub cost: Usd,
    pub attempts: u32,
    pub latency: Duration,
}

/// Runs a non-remote route (local, skip or fail), carrying what a failed remote attempt cost.
async fn run_route(
    step: &Step,
    image: &Arc<RgbaImage>,
    route: Route,
    remote: Option<NotServed>,
) -> Result<StepDone, StepFailed> {
    let (cost, attempts, latency, remote_error) = match remote {
        Some(n) => (n.cost, n.attempts, n.latency, n.error),
        None => (Usd::ZERO, 0, Duration::ZERO, String::new()),
    };
    let reason = route.reason();
    match route {
        Route::Local { .. } => {
            let (step_owned, input) = (step.clone(), image.clone());
            let job = move || {
                let t = Instant::now();
                (providers::local::run_step(&step_owned, &input), t.elapsed())
            };
            let failed = |reason: &str, error: String| StepFailed {
                model: "local".into(),
                reason: reason.into(),
                error,
                cost,
                attempts: attempts + 1,
                latency,
            };
            match cpu::run(job).await {
                Ok((Ok(out), elapsed)) => Ok(StepDone {
                    model: "local".into(),
                    reason,
                    cost,
                    attempts: attempts + 1,
                    latency: latency + elapsed,
                    image: Some(out),
                }),
                Ok((Err(e), _)) => Err(failed("op-failed", e.to_string())),
                Err(panic) => Err(failed("internal-error", panic.to_string())),
            }
        }
        Route::Skip { .. } => Ok(StepDone {
            model: "-".into(),
            reason,
            cost,
            attempts,
            latency,
            image: None,
        }),
        Route::Fail { .. } => Err(StepFailed {
            model: "-".into(),
            reason: reason.to_string(),
            error: if remote_error.is_empty() {
                "no permitted model could serve this step and `fallback` is `fail`".into()
            } else {
                remote_error
            },
            cost,
            attempts,
            latency,
        }),
    }
}

async fn write_output(
    ctx: &ImageContext,
    rows: RowBuilder,
    image: Arc<RgbaImage>,
    icc: Option<Vec<u8>>,
    output: sinks::Target,
) -> Vec<StepRecord> {
    let out = &ctx.manifest.output;
    let (format, quality) = (out.format, out.quality);
    let job = move || codec::encode(&image, format, quality, icc.as_deref());
    let bytes = match cpu::run(job).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return rows.fail_last("encode-failed", &e.to_string()),
        Err(panic) => return rows.fail_last("internal-error", &panic.to_string()),
    };
    match output.write(bytes, format).await {
        Ok(()) => rows.finish_written(&output.dest.to_string()),
        Err(e) => rows.fail_last(e.reason(), &e.to_string()),
    }
}
