//! What every image task of a run shares, and how a step is routed for one image.
//!
//! Owned by the run loop (one per run, behind an `Arc`), read by image tasks and the dry run.

use std::sync::{Arc, OnceLock};

use super::cache::{Hit, RunCache, spec};
use super::remote::Remote;
use crate::catalog::Catalog;
use crate::ledger::StepKey;
use crate::ledger::shared::SharedCache;
use crate::manifest::{Manifest, ModelRef, Step};
use crate::money::Usd;
use crate::plan::estimate::{self, PassRate, StepRoute};
use crate::providers::local::LocalOps;
use crate::router::{self, Decision, Facts, Route};

/// What every image task shares. Lives as long as the run.
pub(super) struct ImageContext {
    pub manifest: Arc<Manifest>,
    pub catalog: Arc<Catalog>,
    pub remote: Remote,
    /// Route and price only; call nothing, write nothing.
    pub dry_run: bool,
    /// The step cache; `None` when the run keeps no state.
    pub cache: Option<Arc<RunCache>>,
    /// A dry run's read-only look at the shared cache (`shared.cache`; `None` for a real run,
    /// which goes through `cache`, and with `--force`).
    pub shared_peek: Option<SharedCache>,
    /// Whether a failure to read the shared cache was already logged.
    pub peek_warned: crate::log_once::LogOnce,
    /// The local method of each step.
    pub local: Arc<LocalOps>,
    /// Per step, the share of its first results that passed its `escalate:` mark in earlier
    /// runs, when enough were measured (a dry run's expected escalation; read once).
    pub pass_rates: OnceLock<Vec<Option<f64>>>,
}

impl ImageContext {
    /// Routes `step` for an image of `size` with what the run knows now (credentials, the
    /// health of each model).
    pub(super) fn decide(&self, step: &Step, size: (u32, u32)) -> Decision {
        self.with_facts(|facts| router::decide(step, size, facts))
    }

    /// The escalation models for `step` and an image of `size`, cheapest first, with prices.
    pub(super) fn escalation_ladder(&self, step: &Step, size: (u32, u32)) -> Vec<Usd> {
        self.with_facts(|facts| estimate::escalation_ladder(step, size, facts))
            .into_iter()
            .map(|(_, price)| price)
            .collect()
    }

    /// The planned route of `step` (a dry run's view of [`ImageContext::decide`]).
    pub(super) fn route(&self, step: &Step, size: (u32, u32)) -> StepRoute {
        let mut route = self.with_facts(|facts| estimate::route_step(step, size, facts));
        route.model = self.local_name(step, route.model);
        route.servers = route
            .servers
            .into_iter()
            .map(|m| self.local_name(step, m))
            .collect();
        route
    }

    /// `model` as the report names it: `local` becomes the step's local method.
    pub(super) fn local_name(&self, step: &Step, model: String) -> String {
        if model == ModelRef::LOCAL {
            self.local.model(step).to_owned()
        } else {
            model
        }
    }

    /// The models whose cached results would serve this decision, in the router's order.
    pub(super) fn models_of(&self, step: &Step, decision: &Decision) -> Vec<String> {
        match decision {
            Decision::Remote { candidates, .. } => {
                candidates.iter().map(|c| c.model.id.clone()).collect()
            }
            Decision::Other {
                route: Route::Local { .. },
                ..
            } => vec![self.local.model(step).to_owned()],
            Decision::Other { .. } => Vec::new(),
        }
    }

    /// The first of `models` with a result for `step` on `prev` in the shared cache, read only
    /// (a dry run plans it as a cache hit; a run would copy it). `None` when S3 cannot be read.
    pub(super) async fn shared_peek(
        &self,
        step: &Step,
        prev: blake3::Hash,
        models: &[String],
    ) -> Option<Hit> {
        let shared = self.shared_peek.as_ref()?;
        for model in models {
            let key = StepKey::chain(prev, &spec(step, model));
            match shared.entry(&key).await {
                Ok(Some(step)) => return Some(Hit { key, step }),
                Ok(None) => {}
                Err(e) => {
                    if self.peek_warned.first() {
                        tracing::warn!(
                            "shared step cache: {e}; the plan counts steps not found as paid"
                        );
                    }
                    return None;
                }
            }
        }
        None
    }

    /// The pass rate of `step`'s first results against its escalate mark in earlier runs of the
    /// state folder (`None`: no escalation, no state, or too few results to say).
    pub(super) fn pass_rate(&self, step: &Step) -> Option<f64> {
        let rates = self.pass_rates.get_or_init(|| {
            let steps = &self.manifest.steps;
            steps
                .iter()
                .map(|s| {
                    let escalate = s.escalate.as_ref()?;
                    let store = self.cache.as_ref()?.store();
                    let model = match s.remote_models().next() {
                        Some(id) if !s.models.contains(&ModelRef::Local) => id.to_owned(),
                        _ => self.local.model(s).to_owned(),
                    };
                    let (passed, measured) = store.passed(s.op, &model, escalate.below).ok()?;
                    PassRate { passed, measured }.rate()
                })
                .collect()
        });
        rates.get(step.index).copied().flatten()
    }

    fn with_facts<T>(&self, f: impl FnOnce(&Facts) -> T) -> T {
        let unhealthy = |id: &str| self.remote.unhealthy(id);
        let facts = Facts {
            catalog: &self.catalog,
            region: &self.remote.region,
            regions: &self.manifest.aws.regions,
            today: self.remote.today,
            remote_available: self.remote.client.is_some() || self.dry_run,
            unhealthy: &unhealthy,
        };
        f(&facts)
    }
}
