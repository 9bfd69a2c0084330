//! `--dry-run`: the route and estimated cost each image would take, calling nothing.
//!
//! Reads only image headers (and hashes the input). Steps an earlier run already did are planned
//! as `cache-hit` at no cost, walking the same cache chain a real run would. Estimates are
//! reserved against the run's budget as if they were spent, so a dry run shows where
//! `fallback-budget` would start.

use super::context::{ImageContext, models_of};
use super::rows::RowBuilder;
use crate::ledger::{StepKey, StepRecord, spec_for};
use crate::money::Usd;
use crate::router::{self, Decision, Reason};

pub(super) fn plan_rows(
    ctx: &ImageContext,
    mut rows: RowBuilder,
    key: &str,
    mut size: (u32, u32),
    mut link: blake3::Hash,
) -> Vec<StepRecord> {
    for step in &ctx.manifest.steps {
        let decision = ctx.decide(step, size);
        if let Some(cache) = &ctx.cache
            && let Some(hit) = cache.lookup(step, link, &models_of(&decision))
        {
            let out = (hit.step.out_w, hit.step.out_h);
            rows.planned(
                step,
                &hit.step.model,
                Reason::CacheHit,
                Usd::ZERO,
                size,
                out,
            );
            link = hit.key.as_hash();
            size = out;
            continue;
        }
        let out = step.output_size(size);
        let (model, reason, estimate) = match decision {
            Decision::Remote {
                candidates, reason, ..
            } => {
                let first = &candidates[0];
                match ctx.remote.budget.reserve(key, first.price) {
                    Ok(r) => {
                        r.settle(first.price);
                        (first.model.id.clone(), reason, first.price)
                    }
                    Err(_) => {
                        let route = router::fall_back(step.fallback, Reason::FallbackBudget);
                        (route.model(), route.reason(), Usd::ZERO)
                    }
                }
            }
            Decision::Other { route, .. } => (route.model(), route.reason(), Usd::ZERO),
        };
        rows.planned(step, &model, reason, estimate, size, out);
        link = StepKey::chain(link, &spec_for(step, &model)).as_hash();
        size = out;
    }
    rows.finish()
}
