//! What a run would do and cost, before it runs: the route each image would take at each step,
//! its estimated price, the cost range of the whole run and how long the rate limits make it.
//!
//! `retouch check` prints [`Estimate`] over the inputs' header sizes; `run --dry-run` plans each
//! image's rows with [`route_step`], adding what only a run knows (the step cache, the budget).
//! Both route through the router exactly as a run would; neither calls anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::Plan;
use crate::catalog::Catalog;
use crate::manifest::{Manifest, Step};
use crate::money::Usd;
use crate::reason::Reason;
use crate::router::{self, Decision, Excluded, Facts, Route};
use crate::sources::{InputLocation, read_file, read_head};

/// The route one step takes for one image, as planned.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRoute {
    /// The model id (`local`, or `-` when nothing runs).
    pub model: String,
    /// How the catalog names it (its alias), for people.
    pub alias: String,
    pub reason: Reason,
    /// The estimated price on this route (0 unless remote).
    pub price: Usd,
    /// The price on the costliest permitted candidate (the top of the cost range).
    pub max_price: Usd,
    /// Permitted models that cannot take this image, and why.
    pub excluded: Vec<Excluded>,
    /// Routed to a remote model (a call a run would make).
    pub remote: bool,
    /// The models whose cached results would serve this step, in the router's order.
    pub servers: Vec<String>,
}

/// Routes `step` for an image of `size` as a run would, and prices the route.
pub fn route_step(step: &Step, size: (u32, u32), facts: &Facts) -> StepRoute {
    match router::decide(step, size, facts) {
        Decision::Remote {
            candidates,
            reason,
            excluded,
        } => {
            let first = &candidates[0];
            StepRoute {
                model: first.model.id.clone(),
                alias: first.model.alias.clone(),
                reason,
                price: first.price,
                max_price: candidates
                    .iter()
                    .map(|c| c.price)
                    .max()
                    .unwrap_or(Usd::ZERO),
                excluded,
                remote: true,
                servers: candidates.iter().map(|c| c.model.id.clone()).collect(),
            }
        }
        Decision::Other { route, excluded } => StepRoute {
            model: route.model(),
            alias: route.model(),
            reason: route.reason(),
            price: Usd::ZERO,
            max_price: Usd::ZERO,
            excluded,
            remote: false,
            servers: match route {
                Route::Local { .. } => vec![route.model()],
                Route::Skip { .. } | Route::Fail { .. } => Vec::new(),
            },
        },
    }
}

/// The escalation models that could redo `step` for an image of `size` (`escalate.to`, routed as
/// a run routes them): model id and estimated price, cheapest first. Empty without `escalate:`.
pub fn escalation_ladder(step: &Step, size: (u32, u32), facts: &Facts) -> Vec<(String, Usd)> {
    let Some(ladder) = step.escalation_ladder() else {
        return Vec::new();
    };
    match router::decide(&ladder, size, facts) {
        Decision::Remote { candidates, .. } => candidates
            .into_iter()
            .map(|c| (c.model.id, c.price))
            .collect(),
        Decision::Other { .. } => Vec::new(),
    }
}

/// How often a step's first results passed its escalate mark in earlier runs of the state folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassRate {
    pub passed: u64,
    pub measured: u64,
}

impl PassRate {
    /// Fewer measured results than this say too little: the estimate assumes every result
    /// escalates.
    pub const MIN_MEASURED: u64 = 20;

    /// The share that passed, when enough results were measured.
    pub fn rate(self) -> Option<f64> {
        (self.measured >= Self::MIN_MEASURED).then(|| self.passed as f64 / self.measured as f64)
    }
}

/// The expected cost of escalating one image whose escalation models cost `ladder` (cheapest
/// first): the k-th is paid only when the first result and the k-1 redone before it all failed,
/// each passing with probability `pass` (`None`: none passes, the worst case). Rounded up to the
/// micro-dollar.
pub fn expected_escalation(ladder: &[Usd], pass: Option<f64>) -> Usd {
    let fail = 1.0 - pass.unwrap_or(0.0).clamp(0.0, 1.0);
    let mut reach = 1.0;
    let mut micros = 0.0;
    for price in ladder {
        reach *= fail;
        micros += reach * price.micros() as f64;
    }
    Usd(micros.ceil() as i64)
}

/// One step over every image: where the images go and which models are excluded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepEstimate {
    /// Images per route (by alias), with the route's reason.
    pub routes: BTreeMap<String, (u64, Reason)>,
    /// Excluded models (by alias), with the first reason met.
    pub excluded: BTreeMap<String, String>,
    /// With `escalate:`, the summed price of the k-th escalation model over every image (the
    /// cost if every image reached it); empty without.
    pub ladder: Vec<Usd>,
}

impl StepEstimate {
    /// The expected escalation cost of this step over every image at pass rate `pass` (`None`:
    /// every result escalates, the worst case).
    pub fn escalation(&self, pass: Option<f64>) -> Usd {
        expected_escalation(&self.ladder, pass)
    }
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    /// One entry per step, in order.
    pub steps: Vec<StepEstimate>,
    /// Every image-step on its cheapest candidate.
    pub low: Usd,
    /// Every image-step on its costliest permitted candidate.
    pub high: Usd,
    /// Calls per model (id) on the cheapest routes.
    pub calls: BTreeMap<String, u64>,
    /// Calls per escalation model (id) if every result escalated through its whole list.
    pub escalation_calls: BTreeMap<String, u64>,
}

/// How long one model's calls take at its rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Duration {
    pub model: String,
    pub calls: u64,
    pub rpm: u32,
    pub minutes: f64,
}

impl Estimate {
    /// Routes every step of images of `sizes` (each carried through the steps' size changes).
    pub fn of(manifest: &Manifest, sizes: &[(u32, u32)], facts: &Facts) -> Estimate {
        let mut est = Estimate::default();
        let mut sizes = sizes.to_vec();
        for step in &manifest.steps {
            let mut this = StepEstimate::default();
            for size in sizes.iter_mut() {
                let route = route_step(step, *size, facts);
                est.low += route.price;
                est.high += route.max_price;
                if route.remote {
                    *est.calls.entry(route.model.clone()).or_default() += 1;
                }
                for e in &route.excluded {
                    let alias = facts
                        .catalog
                        .resolve(&e.model)
                        .map_or(e.model.clone(), |m| m.alias.clone());
                    this.excluded
                        .entry(alias)
                        .or_insert_with(|| e.why.to_string());
                }
                this.routes
                    .entry(route.alias)
                    .or_insert((0, route.reason))
                    .0 += 1;
                let ladder = escalation_ladder(step, *size, facts);
                if this.ladder.len() < ladder.len() {
                    this.ladder.resize(ladder.len(), Usd::ZERO);
                }
                for (k, (model, price)) in ladder.into_iter().enumerate() {
                    this.ladder[k] += price;
                    est.high += price;
                    *est.escalation_calls.entry(model).or_default() += 1;
                }
                *size = step.output_size(*size);
            }
            est.steps.push(this);
        }
        est
    }

    /// How long each model's calls take at the manifest's rate limits (or the catalog's
    /// defaults); models run in parallel, so the run takes at least the longest.
    pub fn durations(&self, manifest: &Manifest, catalog: &Catalog) -> Vec<Duration> {
        self.calls
            .iter()
            .map(|(model, &calls)| {
                let rpm = manifest
                    .limits
                    .rpm
                    .get(model)
                    .copied()
                    .unwrap_or_else(|| catalog.default_rpm(model))
                    .max(1);
                Duration {
                    model: model.clone(),
                    calls,
                    rpm,
                    minutes: calls as f64 / f64::from(rpm),
                }
            })
            .collect()
    }
}

/// Bytes fetched per S3 object to read its header; the whole object only if that is not enough.
const S3_HEAD_BYTES: u64 = 256 * 1024;

/// The upright sizes of every input whose header reads, local files in parallel and S3
/// objects by ranged GETs 16 at a time.
pub async fn probe_sizes(plan: &Plan) -> Vec<(u32, u32)> {
    let mut sizes = probe_local_sizes(plan);
    sizes.extend(probe_s3_sizes(plan).await);
    sizes
}

fn probe_local_sizes(plan: &Plan) -> Vec<(u32, u32)> {
    let max_mp = plan.manifest.limits.max_megapixels;
    let max_bytes = crate::codec::max_input_bytes(max_mp);
    plan.images
        .par_iter()
        .filter_map(|img| match &img.item.location {
            InputLocation::Local(path) => {
                let bytes = read_file(path, &img.item.display, None, max_bytes).ok()?;
                crate::codec::probe(&bytes, max_mp).ok()
            }
            // Nothing to read: the generate step makes the image (its size follows the model).
            InputLocation::Prompt(_) => Some((0, 0)),
            InputLocation::S3 { .. } => None,
        })
        .collect()
}

async fn probe_s3_sizes(plan: &Plan) -> Vec<(u32, u32)> {
    let max_mp = plan.manifest.limits.max_megapixels;
    let max_bytes = crate::codec::max_input_bytes(max_mp);
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
            let head = read_head(&img.item, s3, Some(S3_HEAD_BYTES), max_bytes)
                .await
                .ok()?;
            match crate::codec::probe(&head, max_mp) {
                Ok(size) => Some(size),
                Err(_) if head.len() as u64 >= S3_HEAD_BYTES => {
                    let all = read_head(&img.item, s3, None, max_bytes).await.ok()?;
                    crate::codec::probe(&all, max_mp).ok()
                }
                Err(_) => None,
            }
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_is_weighed_by_the_chance_of_reaching_each_model() {
        let ladder = [Usd(40_000), Usd(100_000)];
        // Worst case: every result is redone by both.
        assert_eq!(expected_escalation(&ladder, None), Usd(140_000));
        // 80% pass: 20% reach the first redo, 4% the second.
        assert_eq!(expected_escalation(&ladder, Some(0.8)), Usd(8_000 + 4_000));
        assert_eq!(expected_escalation(&ladder, Some(1.0)), Usd::ZERO);
        assert_eq!(expected_escalation(&[], None), Usd::ZERO);
        // Rounded up to the micro-dollar, never down.
        assert_eq!(expected_escalation(&[Usd(1)], Some(0.5)), Usd(1));
    }

    #[test]
    fn a_pass_rate_needs_enough_results() {
        let few = PassRate {
            passed: 19,
            measured: 19,
        };
        assert_eq!(few.rate(), None);
        let enough = PassRate {
            passed: 15,
            measured: 20,
        };
        assert_eq!(enough.rate(), Some(0.75));
    }
}
