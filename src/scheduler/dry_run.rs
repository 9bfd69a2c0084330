//! `--dry-run`: the route and estimated cost each image would take, calling nothing.
//!
//! Reads only image headers (and hashes the input). Each step is routed and priced by the same
//! estimator `retouch check` prints ([`crate::plan::estimate`]); on top, steps an earlier run
//! already did are planned as `cache-hit` at no cost, walking the same cache chain a real run
//! would (in the state folder, then in the shared cache every machine publishes to), and
//! estimates are reserved against the run's budget as if they were spent, so a dry
//! run shows where `fallback-budget` would start. A step with `escalate:` adds the expected cost
//! of redoing it to its row's estimate (not reserved: the budget holds at run time).

use super::cache::spec;
use super::context::ImageContext;
use super::rows::RowBuilder;
use crate::ledger::{StepKey, StepRecord};
use crate::money::Usd;
use crate::plan::estimate;
use crate::reason::Reason;
use crate::router;

pub(super) async fn plan_rows(
    ctx: &ImageContext,
    mut rows: RowBuilder,
    key: &str,
    mut size: (u32, u32),
    mut link: blake3::Hash,
) -> Vec<StepRecord> {
    for step in &ctx.manifest.steps {
        let route = ctx.route(step, size);
        let local = ctx
            .cache
            .as_ref()
            .and_then(|cache| cache.lookup(step, link, &route.servers));
        let found = match local {
            Some(hit) => Some(hit),
            None if route.remote => ctx.shared_peek(step, link, &route.servers).await,
            None => None,
        };
        if let Some(hit) = found {
            let out = (hit.step.out_w, hit.step.out_h);
            let model = &hit.step.model;
            rows.planned(step, model, Reason::CacheHit, Usd::ZERO, size, out);
            link = hit.key.as_hash();
            size = out;
            continue;
        }
        let out = step.output_size(size);
        // With `escalate:`, what redoing is expected to cost for this image (see `check`).
        let ladder = ctx.escalation_ladder(step, size);
        let redo = estimate::expected_escalation(&ladder, ctx.pass_rate(step));
        let (model, reason, estimate) = if !route.remote {
            (route.model, route.reason, Usd::ZERO)
        } else {
            match ctx.remote.budget.reserve(key, route.price) {
                Ok(r) => {
                    r.settle(route.price);
                    (route.model, route.reason, route.price)
                }
                Err(_) => {
                    let fallback = router::fall_back(step.fallback, Reason::FallbackBudget);
                    let model = ctx.local_name(step, fallback.model());
                    (model, fallback.reason(), Usd::ZERO)
                }
            }
        };
        let estimate = estimate + redo;
        rows.planned(step, &model, reason, estimate, size, out);
        link = StepKey::chain(link, &spec(step, &model)).as_hash();
        size = out;
    }
    rows.finish()
}
