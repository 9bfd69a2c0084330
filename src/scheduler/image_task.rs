//! One image's journey: read, decode, each step in order (routed, then run remotely or
//! locally), encode, write, and its report rows.
//!
//! Every failure here is data: it becomes the image's rows (the failing step `failed` with the
//! reason, later steps `skipped`), never an error that stops the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbaImage;

use super::cache::{ClaimGuard, Hit, RunCache, StepResult, output_key, spec};
use super::context::ImageContext;
use super::cpu::{self, priority};
use super::outcome::{StepDone, StepFailed};
use super::remote::NotServed;
use super::rows::RowBuilder;
use crate::codec;
use crate::ledger::{KnownInput, StepKey, StepRecord, input_hash};
use crate::manifest::{Fallback, Mask, MaskRegion, OpParams, Step};
use crate::money::Usd;
use crate::plan::PlannedImage;
use crate::provenance;
use crate::providers::local::LocalOps;
use crate::qa::Qa;
use crate::reason::Reason;
use crate::router::{self, Decision, Route};
use crate::s3_client::S3;
use crate::sinks;
use crate::sources::{self, InputItem, InputLocation, PromptRow};

/// What the read-ahead got for one input.
pub(super) enum Fetched {
    /// The input's bytes.
    Bytes(Vec<u8>),
    /// Not downloaded: the input is listed at a version an earlier run read, and this is what
    /// it held (its bytes are fetched later only if its pixels turn out to be needed).
    Known(KnownInput),
    /// Why it could not be read: `(reason, message)`.
    Failed(Reason, String),
}

/// Reads an input's bytes; a future the run loop spawns ahead of processing (read-ahead), so
/// it owns everything it needs. Nothing is read for an image whose output is already known to
/// be unwritable, nor for one whose listed version the cache already knows.
pub(super) fn fetch(
    planned: &PlannedImage,
    cache: Option<Arc<RunCache>>,
    max_megapixels: u32,
) -> impl std::future::Future<Output = Fetched> + Send + 'static {
    let (item, s3, wanted, max_bytes) = (
        planned.item.clone(),
        planned.s3.clone(),
        planned.output.is_ok(),
        codec::max_input_bytes(max_megapixels),
    );
    async move {
        if !wanted {
            return Fetched::Bytes(Vec::new());
        }
        if let Some(known) = cache.as_ref().and_then(|c| c.known_input(&item)) {
            return Fetched::Known(known);
        }
        match sources::read(&item, s3.as_ref(), max_bytes).await {
            Ok(bytes) => Fetched::Bytes(bytes),
            Err(e) => Fetched::Failed(e.reason(), e.to_string()),
        }
    }
}

/// Processes one image whose input `fetch` read, and returns its rows, one per step.
pub(super) async fn process(
    ctx: &ImageContext,
    planned: PlannedImage,
    fetched: Fetched,
) -> Vec<StepRecord> {
    let rows = RowBuilder::new(&planned.item, &ctx.manifest.steps);
    let output = match planned.output {
        Ok(dest) => sinks::Target {
            dest,
            s3: planned.s3.clone(),
        },
        Err(problem) => return rows.all_failed(problem.reason(), &problem.to_string()),
    };
    let key = planned.item.display.clone();
    let rel_path = planned.item.rel_path.clone();
    let max_mp = ctx.manifest.limits.max_megapixels;
    // The size and the content hash are enough to walk the cache; pixels come later, if needed.
    let (pixels, size, icc, hash) = match fetched {
        Fetched::Failed(reason, message) => return rows.all_failed(reason, &message),
        // A prompts-file row: its canonical JSON starts the cache chain; generate makes pixels.
        Fetched::Bytes(bytes) if let InputLocation::Prompt(row) = &planned.item.location => (
            Pixels::Prompt(row.clone()),
            (0, 0),
            None,
            input_hash(&bytes),
        ),
        Fetched::Known(known) => {
            let hash = blake3::Hash::from(known.hash);
            let pixels = Pixels::Unfetched(planned.item, planned.s3, hash);
            (pixels, known.size, known.icc, hash)
        }
        Fetched::Bytes(bytes) if ctx.dry_run => {
            let job = move || codec::probe(&bytes, max_mp).map(|size| (size, input_hash(&bytes)));
            match cpu::run(job).await {
                Ok(Ok((size, hash))) => (Pixels::Input(Vec::new()), size, None, hash),
                Ok(Err(e)) => return rows.all_failed(e.reason(), &e.to_string()),
                Err(panic) => return rows.all_failed(Reason::InternalError, &panic.to_string()),
            }
        }
        Fetched::Bytes(bytes) => {
            let job = move || {
                let header = codec::header(&bytes, max_mp);
                let hash = input_hash(&bytes);
                (bytes, header, hash)
            };
            let (bytes, header, hash) = match cpu::run(job).await {
                Ok((bytes, Ok(header), hash)) => (bytes, header, hash),
                Ok((_, Err(e), _)) => return rows.all_failed(e.reason(), &e.to_string()),
                Err(panic) => return rows.all_failed(Reason::InternalError, &panic.to_string()),
            };
            if let (Some(cache), Some(_)) = (&ctx.cache, &planned.item.version) {
                let known = KnownInput {
                    hash: *hash.as_bytes(),
                    size: header.size,
                    icc: header.icc.clone(),
                };
                cache.record_input(&planned.item, &known);
            }
            (Pixels::Input(bytes), header.size, header.icc, hash)
        }
    };
    if ctx.dry_run {
        return super::dry_run::plan_rows(ctx, rows, &key, size, hash).await;
    }
    let made_from = match &pixels {
        Pixels::Prompt(row) => Some(row.clone()),
        _ => None,
    };
    let task = ImageTask {
        ctx,
        key,
        rows,
        pixels,
        size,
        icc,
        link: hash,
        unreadable: false,
        made_from,
        rel_path,
        deferred: Vec::new(),
    };
    task.run(output).await
}

/// One go at a step, not yet kept: the chain and the pixels have not moved.
pub(super) enum Attempt {
    /// An earlier result from the cache, and the reason of the route that would have made it.
    Hit {
        hit: Hit,
        reason: Reason,
        /// The step with this image's mask, when it has one (a local hit replays with it).
        asked: Option<Arc<Step>>,
    },
    /// Run now (a skip included: no image); recorded in the cache under `key`.
    Ran {
        done: StepDone,
        key: Option<StepKey>,
    },
    Failed(StepFailed),
}

impl Attempt {
    /// What the result's checks found (`None`: nothing to measure, or not measured).
    pub(super) fn qa(&self) -> Option<&Qa> {
        match self {
            Attempt::Hit { hit, .. } => hit.step.qa.as_ref(),
            Attempt::Ran { done, .. } => done.qa.as_ref(),
            Attempt::Failed(_) => None,
        }
    }
}

/// One image part-way through its steps. Its pixels are decoded only when a step must really run
/// or its output must be written, so a rerun whose steps are all cached decodes nothing.
pub(super) struct ImageTask<'a> {
    pub(super) ctx: &'a ImageContext,
    /// The image as the report names it (also its per-image budget key).
    pub(super) key: String,
    pub(super) rows: RowBuilder,
    /// Where the current pixels come from.
    pixels: Pixels,
    /// Size after the steps so far.
    pub(super) size: (u32, u32),
    /// The input's ICC profile, carried to the output.
    icc: Option<Vec<u8>>,
    /// The cache chain link naming the image after the steps so far.
    link: blake3::Hash,
    /// Set when the input itself turned out not to decode: every row fails with its reason.
    unreadable: bool,
    /// The prompts-file row the image is made from (a pipeline starting with `generate`).
    made_from: Option<Arc<PromptRow>>,
    /// The input's path below its glob base or prefix (mask templates expand it).
    rel_path: String,
    /// Rows not written yet because they depend on whether pixels get materialised: local steps
    /// found in the cache without their pixels (replayed if pixels are needed, cache hits if
    /// not) and skipped steps between them.
    deferred: Vec<Deferred<'a>>,
}

enum Pixels {
    /// No pixels yet: a prompts-file row the first step (`generate`) makes an image from.
    Prompt(Arc<PromptRow>),
    /// Not downloaded yet: an input whose cached results were found by its listed version. The
    /// hash is what its bytes must hash to.
    Unfetched(InputItem, Option<S3>, blake3::Hash),
    /// Not decoded yet: the input file's bytes.
    Input(Vec<u8>),
    /// A cached result not read yet: its blob name.
    Blob(String),
    Decoded(Arc<RgbaImage>),
}

enum Deferred<'a> {
    LocalHit {
        step: &'a Step,
        /// The step with this image's mask, when it has one (what a replay runs).
        asked: Option<Arc<Step>>,
        /// Why local was the route (the row's reason if the step is replayed).
        reason: Reason,
        input: (u32, u32),
        output: (u32, u32),
        /// What the cached result's checks found.
        qa: Option<Qa>,
    },
    Skipped {
        step: &'a Step,
        done: StepDone,
        size: (u32, u32),
    },
    /// A finished row waiting for the rows before it (an attempt `escalate:` superseded).
    Row(StepRecord),
}

impl<'a> ImageTask<'a> {
    async fn run(mut self, output: sinks::Target) -> Vec<StepRecord> {
        let ctx = self.ctx;
        for step in &ctx.manifest.steps {
            let input_size = self.size;
            let decision = ctx.decide(step, input_size);
            let first = self.attempt(step, decision, step.fallback).await;
            let (kept, reason) = match &step.escalate {
                Some(escalate) if !escalate.passes(first.qa()) => {
                    self.escalate(step, escalate, first).await
                }
                _ => (first, None),
            };
            if let Err(rows) = self.keep(step, kept, reason, input_size) {
                return rows;
            }
        }
        self.write_output(output).await
    }

    /// One go at `step` on the current pixels as `decision` routes it: the cached result, or
    /// the step run now (and recorded in the cache). The chain does not move yet.
    pub(super) async fn attempt(
        &mut self,
        step: &'a Step,
        decision: Decision,
        fallback: Fallback,
    ) -> Attempt {
        // A step with a mask file per image runs (and is keyed) with this image's mask.
        let asked = match self.with_mask(step).await {
            Ok(asked) => asked,
            Err(failed) => return Attempt::Failed(failed),
        };
        let keyed: &Step = asked.as_deref().unwrap_or(step);
        // Held until the step's result is recorded: nobody else pays for it meanwhile.
        let (hit, _claim) = self.find_or_claim(keyed, &decision).await;
        if let Some(hit) = hit {
            let reason = match &decision {
                Decision::Other { route, .. } => route.reason(),
                Decision::Remote { reason, .. } => *reason,
            };
            return Attempt::Hit { hit, reason, asked };
        }
        let outcome = match decision {
            Decision::Other {
                route: route @ Route::Skip { .. },
                ..
            } => unmoved(run_route(&self.ctx.local, step, None, route, None).await),
            Decision::Other {
                route: route @ Route::Fail { .. },
                ..
            } => {
                self.flush_deferred_as_hits();
                unmoved(run_route(&self.ctx.local, step, None, route, None).await)
            }
            decision if step.op.makes_image() => {
                let Pixels::Prompt(row) = &self.pixels else {
                    unreachable!("the manifest puts generate first, on prompts-file rows")
                };
                let asked = generate_step(step, row);
                // Nothing is sent but the prompt: the model draws from nothing.
                let nothing = Arc::new(RgbaImage::new(0, 0));
                self.compute(step, &asked, nothing, decision, fallback)
                    .await
            }
            decision => match self.materialise().await {
                Ok(image) => self.compute(step, keyed, image, decision, fallback).await,
                Err(failed) => Err(failed),
            },
        };
        match outcome {
            Ok((done, key)) => Attempt::Ran { done, key },
            Err(failed) => Attempt::Failed(failed),
        }
    }

    /// Makes `kept` the step's result: moves the chain and the pixels on and writes its row
    /// (`reason` replaces the route's reason when escalation chose it). `Err` carries the
    /// image's rows when the step failed and the image stops here.
    fn keep(
        &mut self,
        step: &'a Step,
        kept: Attempt,
        reason: Option<Reason>,
        input_size: (u32, u32),
    ) -> Result<(), Vec<StepRecord>> {
        match kept {
            Attempt::Hit {
                hit,
                reason: route,
                asked,
            } => {
                self.link = hit.key.as_hash();
                self.size = (hit.step.out_w, hit.step.out_h);
                if hit.step.blob.is_empty() {
                    self.deferred.push(Deferred::LocalHit {
                        step,
                        asked,
                        reason: reason.unwrap_or(route),
                        input: input_size,
                        output: self.size,
                        qa: hit.step.qa.clone(),
                    });
                } else {
                    // A kept result supersedes everything before it.
                    self.flush_deferred_as_hits();
                    self.pixels = Pixels::Blob(hit.step.blob.clone());
                    self.rows.cached(
                        step,
                        &hit.step.model,
                        input_size,
                        self.size,
                        hit.step.qa.clone(),
                    );
                }
            }
            Attempt::Ran { done, .. } if done.image.is_none() && step.op.makes_image() => {
                // Nothing was made: the later steps have nothing to work on, nothing is written.
                self.rows.done(step, done, true, input_size, input_size);
                return Err(self.take_rows().finish_nothing_made());
            }
            Attempt::Ran { done, .. } if done.image.is_none() => {
                self.deferred.push(Deferred::Skipped {
                    step,
                    done,
                    size: input_size,
                });
            }
            Attempt::Ran { mut done, key } => {
                let new = done.image.take().expect("checked above");
                if let Some(key) = key {
                    self.link = key.as_hash();
                }
                if let Some(reason) = reason {
                    done.reason = reason;
                }
                self.size = new.dimensions();
                self.rows.done(step, done, false, input_size, self.size);
                self.pixels = Pixels::Decoded(new);
            }
            Attempt::Failed(failed) if self.unreadable => {
                return Err(self.take_rows().all_failed(failed.reason, &failed.error));
            }
            Attempt::Failed(failed) => {
                self.flush_deferred_as_hits();
                self.rows.failed(step, failed, input_size);
                return Err(self.take_rows().finish_failed());
            }
        }
        Ok(())
    }

    /// `step` with this image's mask read into it, for a step whose region is a mask file
    /// (`None`: the step has no mask file). A missing, unreadable or misshapen mask fails the
    /// step with `mask-unreadable`, before anything is called or paid.
    async fn with_mask(&self, step: &Step) -> Result<Option<Arc<Step>>, StepFailed> {
        let OpParams::Masked(p) = &step.params else {
            return Ok(None);
        };
        let MaskRegion::File {
            template,
            mask: None,
        } = &p.region
        else {
            return Ok(None);
        };
        let failed = |why: String| StepFailed::nothing_ran(Reason::MaskUnreadable, why);
        let path = mask_path(&self.ctx.manifest.base_dir, template, &self.rel_path)
            .map_err(|why| failed(why.to_owned()))?;
        let max_mp = self.ctx.manifest.limits.max_megapixels;
        let shown = path.display().to_string();
        let job = move || -> Result<Mask, String> {
            let bytes = std::fs::read(&path).map_err(|e| format!("mask {shown}: {e}"))?;
            let digest = blake3::hash(&bytes).to_hex().to_string();
            let decoded =
                codec::decode(&bytes, max_mp).map_err(|e| format!("mask {shown}: {e}"))?;
            let pixels = image::DynamicImage::ImageRgba8(decoded.image).to_luma8();
            Ok(Mask { digest, pixels })
        };
        let mask = match cpu::run(job).await {
            Ok(Ok(mask)) => mask,
            Ok(Err(why)) => return Err(failed(why)),
            Err(panic) => return Err(failed(panic.to_string())),
        };
        let (mw, mh) = mask.pixels.dimensions();
        let (w, h) = self.size;
        let ratio = |a: u32, b: u32| f64::from(a.max(1)) / f64::from(b.max(1));
        if (ratio(mw, mh) / ratio(w, h)).ln().abs() > 0.02 {
            return Err(failed(format!(
                "mask is {mw}x{mh}, not the shape of the {w}x{h} image it is for"
            )));
        }
        let mut asked = step.clone();
        if let OpParams::Masked(p) = &mut asked.params {
            p.region = MaskRegion::File {
                template: template.clone(),
                mask: Some(Arc::new(mask)),
            };
        }
        Ok(Some(Arc::new(asked)))
    }

    /// Where the grader `model` is called: the run's region, or another `aws.regions` allows;
    /// `None` (warned about, the result keeps its free checks) when it may be called nowhere.
    fn grader_region(&self, model: &crate::catalog::ModelEntry) -> Option<String> {
        let (run, allowed) = (&self.ctx.remote.region, &self.ctx.manifest.aws.regions);
        let region = model.call_region(run, allowed).map(str::to_owned);
        if region.is_none() {
            tracing::warn!(
                image = self.key,
                "not graded: {} is not offered in {run} nor in any region aws.regions allows",
                model.alias
            );
        }
        region
    }

    /// The rows so far, leaving an empty builder behind (the task ends after this).
    fn take_rows(&mut self) -> RowBuilder {
        self.rows.take()
    }

    /// The cached result of `step`, or, for a paid step not done yet, the claim to do it: if
    /// another task or run is doing it, this waits for it and returns its result.
    async fn find_or_claim(
        &self,
        step: &Step,
        decision: &Decision,
    ) -> (Option<Hit>, Option<ClaimGuard>) {
        let Some(cache) = &self.ctx.cache else {
            return (None, None);
        };
        let models = self.ctx.models_of(step, decision);
        if let Some(hit) = cache.lookup(step, self.link, &models) {
            return (Some(hit), None);
        }
        if !matches!(decision, Decision::Remote { .. }) {
            return (None, None); // free work: recomputing it costs nothing
        }
        // Paid work another machine did (the shared cache, when there is one).
        if let Some(hit) = cache.shared_lookup(step, self.link, &models).await {
            return (Some(hit), None);
        }
        let claim = cache.claim(step, self.link, &self.key).await;
        // Whoever held the claim before may have recorded the result: here, or, on another
        // machine, in the shared cache.
        if let Some(hit) = cache.lookup(step, self.link, &models) {
            return (Some(hit), None);
        }
        if claim.as_ref().is_some_and(|c| c.waited_elsewhere)
            && let Some(hit) = cache.shared_lookup(step, self.link, &models).await
        {
            return (Some(hit), None);
        }
        (None, claim)
    }

    /// Runs `step` on `image` (remote or local, as decided; `fallback` when no remote model
    /// serves) and records the result in the cache under the key it returns (`None` when the
    /// step was skipped).
    /// `asked` is the step as sent (for `generate`, with the row's prompt; else `step`).
    async fn compute(
        &mut self,
        step: &'a Step,
        asked: &Step,
        image: Arc<RgbaImage>,
        decision: Decision,
        fallback: Fallback,
    ) -> Result<(StepDone, Option<StepKey>), StepFailed> {
        let ctx = self.ctx;
        let mut unsettled = None;
        let done = match decision {
            Decision::Remote {
                candidates, reason, ..
            } => match ctx
                .remote
                .serve(
                    asked,
                    &self.key,
                    image.clone(),
                    candidates,
                    reason,
                    ctx.local.reviewer(step),
                )
                .await
            {
                Ok(served) => {
                    unsettled = Some(served.unsettled);
                    StepDone {
                        model: served.model,
                        reason: served.reason,
                        cost: served.cost,
                        attempts: served.attempts,
                        latency: served.latency,
                        image: Some(Arc::new(served.image)),
                        qa: Some(served.qa),
                    }
                }
                Err(not_served) => {
                    let route = router::fall_back(fallback, not_served.reason);
                    run_route(
                        &self.ctx.local,
                        asked,
                        Some(&image),
                        route,
                        Some(not_served),
                    )
                    .await?
                }
            },
            Decision::Other { route, .. } => {
                run_route(&self.ctx.local, asked, Some(&image), route, None).await?
            }
        };
        let mut done = done;
        let Some(result) = done.image.clone() else {
            return Ok((done, None)); // skipped after a remote failure: the chain does not move
        };
        if let Some(grader) = &step.grader
            && grader.wants(done.qa.as_ref())
            && let Some(model) = ctx.catalog.resolve(&grader.model)
            && let Some(region) = self.grader_region(model)
        {
            // A generated image has no input to compare with: it is shown on both sides.
            let before = if step.op.makes_image() {
                result.clone()
            } else {
                image.clone()
            };
            let graded = ctx
                .remote
                .grade(asked, model, &region, &self.key, before, result.clone())
                .await;
            done.cost += graded.cost;
            done.attempts += graded.attempts;
            done.latency += graded.latency;
            if let Some(grade) = graded.grade {
                done.qa = Some(done.qa.take().unwrap_or_default().graded(grade));
            }
        }
        let result = &result;
        // Keyed as sent: with the image's mask (a generate step's row is in the chain already).
        let keyed = if step.op.makes_image() { step } else { asked };
        let key = StepKey::chain(self.link, &spec(keyed, &done.model));
        if let Some(cache) = &ctx.cache {
            // Recorded before the next step starts: a crash from here on never pays for it again.
            let record = StepResult {
                model: &done.model,
                image: result,
                cost: done.cost,
                latency: done.latency,
                qa: done.qa.as_ref(),
            };
            cache.record(key, &record, priority(step)).await;
        }
        // Only now is the call's hold settled: a run killed before the result was recorded
        // counts the call as possibly billed.
        if let Some(unsettled) = unsettled {
            ctx.remote.settle(unsettled).await;
        }
        Ok((done, Some(key)))
    }

    /// The current pixels, decoding the input or a cached result and replaying deferred local
    /// steps as needed.
    async fn materialise(&mut self) -> Result<Arc<RgbaImage>, StepFailed> {
        let max_mp = self.ctx.manifest.limits.max_megapixels;
        let mut image = match std::mem::replace(&mut self.pixels, Pixels::Blob(String::new())) {
            Pixels::Decoded(image) => image,
            Pixels::Blob(hex) => self.read_blob(hex).await?,
            input => match self.decode_input(input, max_mp).await {
                Ok(image) => image,
                Err(failed) => {
                    // The input itself is unusable: every row of the image fails with this.
                    self.unreadable = true;
                    return Err(failed);
                }
            },
        };
        for deferred in std::mem::take(&mut self.deferred) {
            match deferred {
                Deferred::Skipped { step, done, size } => {
                    self.rows.done(step, done, true, size, size);
                }
                Deferred::Row(row) => self.rows.push(row),
                Deferred::LocalHit {
                    step,
                    asked,
                    reason,
                    input,
                    qa,
                    ..
                } => {
                    let route = Route::Local { reason };
                    let run = asked.as_deref().unwrap_or(step);
                    match run_route(&self.ctx.local, run, Some(&image), route, None).await {
                        Ok(mut done) => {
                            image = done.image.take().expect("local always has a result");
                            // What the result's checks (and grader) found when it was made.
                            done.qa = qa.or(done.qa);
                            self.rows.done(step, done, false, input, image.dimensions());
                        }
                        Err(failed) => {
                            // A local op that once worked failed on replay: report it here.
                            return Err(failed);
                        }
                    }
                }
            }
        }
        self.pixels = Pixels::Decoded(image.clone());
        Ok(image)
    }

    /// Decodes the input's pixels (`Pixels::Input`, or `Pixels::Unfetched` downloaded first),
    /// keeping its ICC profile for the output.
    async fn decode_input(
        &mut self,
        input: Pixels,
        max_mp: u32,
    ) -> Result<Arc<RgbaImage>, StepFailed> {
        let bytes = match input {
            Pixels::Unfetched(item, s3, expected) => {
                self.fetch_now(&item, s3.as_ref(), expected).await?
            }
            Pixels::Input(bytes) => bytes,
            Pixels::Blob(_) | Pixels::Decoded(_) | Pixels::Prompt(_) => {
                unreachable!("not an input file")
            }
        };
        match cpu::run(move || codec::decode(&bytes, max_mp)).await {
            Ok(Ok(d)) => {
                self.icc = d.icc.or(self.icc.take());
                Ok(Arc::new(d.image))
            }
            Ok(Err(e)) => Err(StepFailed::nothing_ran(e.reason(), e.to_string())),
            Err(panic) => Err(StepFailed::nothing_ran(Reason::InternalError, panic.0)),
        }
    }

    /// Downloads an input that was skipped because its version was known, and checks it still
    /// holds what that version held.
    async fn fetch_now(
        &self,
        item: &InputItem,
        s3: Option<&S3>,
        expected: blake3::Hash,
    ) -> Result<Vec<u8>, StepFailed> {
        let max_bytes = codec::max_input_bytes(self.ctx.manifest.limits.max_megapixels);
        let bytes = sources::read(item, s3, max_bytes)
            .await
            .map_err(|e| StepFailed::nothing_ran(e.reason(), e.to_string()))?;
        if input_hash(&bytes) != expected {
            if let Some(cache) = &self.ctx.cache {
                cache.forget_input(item);
            }
            return Err(StepFailed::nothing_ran(
                Reason::InputChanged,
                "the input changed while the run was going; run again to pick up the new version"
                    .into(),
            ));
        }
        Ok(bytes)
    }

    async fn read_blob(&self, hex: String) -> Result<Arc<RgbaImage>, StepFailed> {
        let Some(cache) = self.ctx.cache.as_ref() else {
            return Err(StepFailed::nothing_ran(
                Reason::InternalError,
                "cached result without a cache".into(),
            ));
        };
        let store = cache.store().clone();
        let name = hex.clone();
        let bytes = tokio::task::spawn_blocking(move || store.blobs().get(&name))
            .await
            .ok()
            .flatten();
        let Some(bytes) = bytes else {
            return Err(StepFailed::nothing_ran(
                Reason::CacheUnreadable,
                format!(
                    "cached result {hex} vanished or is damaged (it was removed; rerun to recompute it)"
                ),
            ));
        };
        let max_mp = self.ctx.manifest.limits.max_megapixels.max(1024);
        match cpu::run(move || codec::decode(&bytes, max_mp)).await {
            Ok(Ok(d)) => Ok(Arc::new(d.image)),
            Ok(Err(e)) => Err(StepFailed::nothing_ran(
                Reason::CacheUnreadable,
                e.to_string(),
            )),
            Err(panic) => Err(StepFailed::nothing_ran(Reason::InternalError, panic.0)),
        }
    }

    /// Writes deferred rows as they stand: local steps whose pixels were never needed are cache
    /// hits.
    fn flush_deferred_as_hits(&mut self) {
        for deferred in std::mem::take(&mut self.deferred) {
            match deferred {
                Deferred::LocalHit {
                    step,
                    input,
                    output,
                    qa,
                    ..
                } => {
                    let model = self.ctx.local.model(step);
                    self.rows.cached(step, model, input, output, qa);
                }
                Deferred::Skipped { step, done, size } => {
                    self.rows.done(step, done, true, size, size);
                }
                Deferred::Row(row) => self.rows.push(row),
            }
        }
    }

    /// A row that must follow the rows still deferred.
    pub(super) fn push_row(&mut self, row: StepRecord) {
        if self.deferred.is_empty() {
            self.rows.push(row);
        } else {
            self.deferred.push(Deferred::Row(row));
        }
    }

    async fn write_output(mut self, output: sinks::Target) -> Vec<StepRecord> {
        let ctx = self.ctx;
        let out = &ctx.manifest.output;
        let out_key = output_key(self.link, out);
        let nothing_ran = !matches!(self.pixels, Pixels::Decoded(_));
        if nothing_ran
            && let Some(cache) = &ctx.cache
            && cache
                .output_current(&output.dest, output.s3.as_ref(), out_key)
                .await
        {
            self.flush_deferred_as_hits();
            return self.rows.finish_written(&output.dest.to_string());
        }
        let image = match self.materialise().await {
            Ok(image) => image,
            Err(failed) if self.unreadable => {
                return self.rows.all_failed(failed.reason, &failed.error);
            }
            Err(failed) => return self.rows.fail_last(failed.reason, &failed.error),
        };
        let (format, quality, icc) = (out.format, out.quality, self.icc.take());
        let job = move || codec::encode(&image, format, quality, icc.as_deref());
        let last = ctx.manifest.steps.len() as u32 + 1;
        let bytes = match cpu::run_at(last, job).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => return self.rows.fail_last(Reason::EncodeFailed, &e.to_string()),
            Err(panic) => {
                return self
                    .rows
                    .fail_last(Reason::InternalError, &panic.to_string());
            }
        };
        let run_id = ctx.cache.as_ref().map(|c| c.run_id());
        let dest = output.dest.to_string();
        let metadata = match &output.dest {
            sinks::Destination::S3(_) => provenance::s3_metadata(
                &ctx.manifest,
                run_id,
                self.rows.so_far(),
                self.made_from.as_deref(),
            ),
            sinks::Destination::Local(_) => Vec::new(),
        };
        if let Err(e) = output.write(bytes, format, &metadata).await {
            return self.rows.fail_last(e.reason(), &e.to_string());
        }
        let json = provenance::sidecar(
            &ctx.manifest,
            run_id,
            self.rows.so_far(),
            &dest,
            self.made_from.as_deref(),
        );
        if out.sidecar
            && let Err(e) = output.write_sidecar(json.clone()).await
        {
            return self.rows.fail_last(e.reason(), &e.to_string());
        }
        if let Some(cache) = &ctx.cache {
            cache
                .record_output(&output.dest, output.s3.as_ref(), out_key, &json)
                .await;
        }
        self.rows.finish_written(&output.dest.to_string())
    }
}

/// A mask template expanded for the input at `rel` (`a/1.jpg`): `{path}` is `a/1`, `{stem}` is
/// `1`; relative to the manifest's folder.
fn mask_path(
    base: &std::path::Path,
    template: &str,
    rel: &str,
) -> Result<std::path::PathBuf, &'static str> {
    if rel.split('/').any(|s| s == ".." || s.is_empty()) {
        return Err("the input's path has an empty or `..` segment; no mask is read for it");
    }
    let without_ext = match rel.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') => stem,
        _ => rel,
    };
    let stem = without_ext.rsplit('/').next().unwrap_or(without_ext);
    let expanded = template
        .replace("{path}", without_ext)
        .replace("{stem}", stem);
    Ok(base.join(expanded))
}

/// The generate step as sent for `row`: its prompt, negative prompt, aspect ratio and seed (the
/// row's, else the step's defaults; the seed derived from the row when it gives none).
fn generate_step(step: &Step, row: &PromptRow) -> Step {
    let mut asked = step.clone();
    asked.prompt = Some(row.prompt.clone());
    asked.negative_prompt = row
        .negative_prompt
        .clone()
        .or_else(|| step.negative_prompt.clone());
    if let OpParams::Generate(p) = &mut asked.params {
        p.aspect = row.aspect_ratio.unwrap_or(p.aspect);
        p.seed = Some(row.seed());
    }
    asked
}

/// A step that made nothing to record: the chain stays where it is.
fn unmoved(
    outcome: Result<StepDone, StepFailed>,
) -> Result<(StepDone, Option<StepKey>), StepFailed> {
    outcome.map(|done| (done, None))
}

/// Runs a non-remote route (local, skip or fail), carrying what a failed remote attempt cost.
async fn run_route(
    local: &Arc<LocalOps>,
    step: &Step,
    image: Option<&Arc<RgbaImage>>,
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
            let Some(image) = image else {
                unreachable!("a local route always runs on materialised pixels")
            };
            let (step_owned, input, ops) = (step.clone(), image.clone(), local.clone());
            let job = move || {
                let t = Instant::now();
                (ops.run_step(&step_owned, &input), t.elapsed())
            };
            let model = local.model(step);
            let failed = |reason: Reason, error: String| StepFailed {
                model: model.into(),
                reason,
                error,
                cost,
                attempts: attempts + 1,
                latency,
            };
            match cpu::run_at(priority(step), job).await {
                Ok((Ok(out), elapsed)) => Ok(StepDone {
                    model: model.into(),
                    reason,
                    cost,
                    attempts: attempts + 1,
                    latency: latency + elapsed,
                    image: Some(Arc::new(out.image)),
                    qa: Some(out.qa),
                }),
                Ok((Err(e), _)) => Err(failed(Reason::OpFailed, e.to_string())),
                Err(panic) => Err(failed(Reason::InternalError, panic.to_string())),
            }
        }
        Route::Skip { .. } => Ok(StepDone {
            model: "-".into(),
            reason,
            cost,
            attempts,
            latency,
            image: None,
            qa: None,
        }),
        Route::Fail { .. } => Err(StepFailed {
            model: "-".into(),
            reason,
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
