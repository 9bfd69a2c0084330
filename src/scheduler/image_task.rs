//! One image's journey: read, decode, each step in order, encode, write, and its report rows.
//!
//! Every failure here is data: it becomes the image's rows (the failing step `failed` with the
//! reason, later steps `skipped`), never an error that stops the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use image::RgbaImage;

use crate::codec;
use crate::cpu;
use crate::ledger::{Status, StepRecord};
use crate::manifest::{Manifest, Step};
use crate::money::Usd;
use crate::plan::PlannedImage;
use crate::providers;
use crate::router::{self, Route};
use crate::sinks;
use crate::sources::{self, InputItem};

/// What every image task shares. Lives as long as the run.
pub(super) struct ImageContext {
    pub manifest: Arc<Manifest>,
}

/// Processes one image and returns its rows, one per step.
pub(super) async fn process(ctx: &ImageContext, planned: PlannedImage) -> Vec<StepRecord> {
    let rows = RowBuilder::new(&planned.item, &ctx.manifest.steps);
    let output = match planned.output {
        Ok(path) => path,
        Err(problem) => return rows.all_failed(problem.reason(), &problem.to_string()),
    };
    let bytes = match sources::read(&planned.item).await {
        Ok(b) => b,
        Err(e) => return rows.all_failed("read-failed", &e.to_string()),
    };
    let max_mp = ctx.manifest.limits.max_megapixels;
    let decoded = match cpu::run(move || codec::decode(&bytes, max_mp)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return rows.all_failed(e.reason(), &e.to_string()),
        Err(panic) => return rows.all_failed("internal-error", &panic.to_string()),
    };
    run_steps(ctx, rows, decoded.image, decoded.icc, output).await
}

async fn run_steps(
    ctx: &ImageContext,
    mut rows: RowBuilder,
    mut image: RgbaImage,
    icc: Option<Vec<u8>>,
    output: PathBuf,
) -> Vec<StepRecord> {
    for step in &ctx.manifest.steps {
        let route = router::route(step);
        let input_size = image.dimensions();
        match route {
            Route::Local { reason } => {
                let step_owned = step.clone();
                let job = move || {
                    let t = Instant::now();
                    let result = providers::local::run_step(&step_owned, &image);
                    (result, t.elapsed(), image)
                };
                let (result, elapsed, original) = match cpu::run(job).await {
                    Ok(r) => r,
                    Err(panic) => {
                        rows.fail(
                            step,
                            "local",
                            "internal-error",
                            &panic.to_string(),
                            input_size,
                        );
                        return rows.finish_failed();
                    }
                };
                match result {
                    Ok(out) => {
                        rows.ok(
                            step,
                            "local",
                            reason.as_str(),
                            elapsed.as_millis() as u64,
                            input_size,
                            out.dimensions(),
                        );
                        image = out;
                    }
                    Err(e) => {
                        drop(original);
                        rows.fail(step, "local", "op-failed", &e.to_string(), input_size);
                        return rows.finish_failed();
                    }
                }
            }
            Route::Skip { reason } => rows.skipped(step, reason.as_str(), input_size),
            Route::Fail { reason } => {
                rows.fail(
                    step,
                    "-",
                    reason.as_str(),
                    "no permitted model could serve this step and fallback is `fail`",
                    input_size,
                );
                return rows.finish_failed();
            }
        }
    }
    write_output(ctx, rows, image, icc, output).await
}

async fn write_output(
    ctx: &ImageContext,
    rows: RowBuilder,
    image: RgbaImage,
    icc: Option<Vec<u8>>,
    output: PathBuf,
) -> Vec<StepRecord> {
    let out = &ctx.manifest.output;
    let (format, quality) = (out.format, out.quality);
    let path = output.clone();
    let job = move || {
        let bytes = codec::encode(&image, format, quality, icc.as_deref())
            .map_err(|e| ("encode-failed", e.to_string()))?;
        sinks::write_atomic(&path, &bytes).map_err(|e| (e.reason(), e.to_string()))
    };
    match cpu::run(job).await {
        Ok(Ok(())) => rows.finish_written(&output.display().to_string()),
        Ok(Err((reason, error))) => rows.fail_last(reason, &error),
        Err(panic) => rows.fail_last("internal-error", &panic.to_string()),
    }
}

/// Accumulates one image's rows.
struct RowBuilder {
    template: StepRecord,
    ops: Vec<crate::manifest::Op>,
    rows: Vec<StepRecord>,
}

impl RowBuilder {
    fn new(item: &InputItem, steps: &[Step]) -> RowBuilder {
        RowBuilder {
            template: StepRecord {
                image_index: item.index,
                image: item.display.clone(),
                step: 0,
                op: steps[0].op,
                model: "-".into(),
                reason: String::new(),
                status: Status::Skipped,
                cost: Usd::ZERO,
                latency_ms: 0,
                attempts: 0,
                input_size: None,
                output_size: None,
                output: String::new(),
                error: String::new(),
            },
            ops: steps.iter().map(|s| s.op).collect(),
            rows: Vec::with_capacity(steps.len()),
        }
    }

    fn row(&self, step: &Step) -> StepRecord {
        StepRecord {
            step: step.index,
            op: step.op,
            ..self.template.clone()
        }
    }

    fn ok(
        &mut self,
        step: &Step,
        model: &str,
        reason: &str,
        latency_ms: u64,
        input: (u32, u32),
        output: (u32, u32),
    ) {
        let row = StepRecord {
            model: model.into(),
            reason: reason.into(),
            status: Status::Ok,
            latency_ms,
            attempts: 1,
            input_size: Some(input),
            output_size: Some(output),
            ..self.row(step)
        };
        self.rows.push(row);
    }

    fn skipped(&mut self, step: &Step, reason: &str, input: (u32, u32)) {
        let row = StepRecord {
            reason: reason.into(),
            input_size: Some(input),
            output_size: Some(input),
            ..self.row(step)
        };
        self.rows.push(row);
    }

    fn fail(&mut self, step: &Step, model: &str, reason: &str, error: &str, input: (u32, u32)) {
        let row = StepRecord {
            model: model.into(),
            reason: reason.into(),
            status: Status::Failed,
            attempts: u32::from(model != "-"),
            input_size: Some(input),
            error: error.into(),
            ..self.row(step)
        };
        self.rows.push(row);
    }

    /// Every step failed for the same reason (the image could not even be read).
    fn all_failed(mut self, reason: &str, error: &str) -> Vec<StepRecord> {
        for (i, &op) in self.ops.iter().enumerate() {
            self.rows.push(StepRecord {
                step: i,
                op,
                reason: reason.into(),
                status: Status::Failed,
                error: error.into(),
                ..self.template.clone()
            });
        }
        self.rows
    }

    /// A step failed: the steps after it are skipped.
    fn finish_failed(mut self) -> Vec<StepRecord> {
        for i in self.rows.len()..self.ops.len() {
            self.rows.push(StepRecord {
                step: i,
                op: self.ops[i],
                reason: "upstream-failed".into(),
                ..self.template.clone()
            });
        }
        self.rows
    }

    /// Writing the result failed after every step ran: the last row carries the failure.
    fn fail_last(mut self, reason: &str, error: &str) -> Vec<StepRecord> {
        if let Some(last) = self.rows.last_mut() {
            last.status = Status::Failed;
            last.reason = reason.into();
            last.error = error.into();
        }
        self.rows
    }

    fn finish_written(mut self, output: &str) -> Vec<StepRecord> {
        for row in &mut self.rows {
            row.output = output.into();
        }
        self.rows
    }
}
