//! `--dry-run`: the route and estimated cost each image would take, calling nothing.
//!
//! Reads only image headers. Estimates are reserved against the run's budget as if they were
//! spent, so a dry run shows where `fallback-budget` would start.

use super::image_task::ImageContext;
use super::rows::RowBuilder;
use crate::ledger::StepRecord;
use crate::money::Usd;
use crate::router::{self, Decision, Reason};

pub(super) fn plan_rows(
    ctx: &ImageContext,
    mut rows: RowBuilder,
    key: &str,
    mut size: (u32, u32),
) -> Vec<StepRecord> {
    for step in &ctx.manifest.steps {
        let out = step.output_size(size);
        let (model, reason, estimate) = match ctx.decide(step, size) {
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
        size = out;
    }
    rows.finish()
}
