//! Quality-gated routing (`escalate:`): the cheapest result that passes.
//!
//! When a step's result scores below the step's pass mark (`escalate.below`), the step is redone
//! on the same input by the models of `escalate.to`, cheapest for this image first, until a
//! result passes; when none does, the best-scoring result is kept (the first of equals). Every
//! attempt is a row: those not kept are `superseded` (reason `escalated`, or why the model could
//! not redo the step) with what they cost, and the kept one says `escalation-passed` or
//! `escalation-best`. Each attempt goes through the same budget, rate limits, retries and
//! circuit breakers as any call, and is recorded in the step cache, so a rerun climbs the same
//! ladder on cached results and pays nothing again.

use std::time::Duration;

use super::image_task::{Attempt, ImageTask};
use super::outcome::{StepDone, StepFailed};
use crate::ledger::StepRecord;
use crate::manifest::{Escalate, Fallback, Step};
use crate::money::Usd;
use crate::reason::Reason;
use crate::router::Decision;

impl<'a> ImageTask<'a> {
    /// Redoes `step` after `first` scored below the pass mark; returns the attempt to keep and
    /// the reason its row gives. The rows of the attempts not kept are written here.
    pub(super) async fn escalate(
        &mut self,
        step: &'a Step,
        escalate: &Escalate,
        first: Attempt,
    ) -> (Attempt, Option<Reason>) {
        let input = self.size;
        let ladder = step
            .escalation_ladder()
            .expect("escalating a step with `escalate:`");
        let mut tried = vec![first];
        match self.ctx.decide(&ladder, input) {
            Decision::Remote { candidates, .. } => {
                for candidate in candidates {
                    let model = candidate.model.id.clone();
                    let decision = Decision::Remote {
                        candidates: vec![candidate],
                        reason: Reason::EscalationPassed,
                        excluded: Vec::new(),
                    };
                    let mut attempt = self.attempt(step, decision, Fallback::Skip).await;
                    if let Attempt::Ran { done, .. } = &mut attempt
                        && done.image.is_none()
                    {
                        done.model = model; // the model that could not redo it
                    }
                    let passed = has_result(&attempt) && escalate.passes(attempt.qa());
                    tried.push(attempt);
                    if passed {
                        break;
                    }
                }
            }
            Decision::Other { route, excluded } => {
                // No escalation model can take this image: the row says why.
                let why: Vec<String> = excluded
                    .iter()
                    .map(|e| format!("{}: {}", e.model, e.why))
                    .collect();
                tried.push(Attempt::Failed(StepFailed::nothing_ran(
                    route.reason(),
                    format!(
                        "no escalation model could redo the step ({})",
                        why.join("; ")
                    ),
                )));
            }
        }
        let (kept, reason) = choose(&tried, escalate);
        let kept = tried.remove(kept);
        for attempt in tried {
            let row = self.superseded_row(step, attempt, input);
            self.push_row(row);
        }
        (kept, Some(reason))
    }

    /// The row of an attempt that was not kept.
    fn superseded_row(&self, step: &Step, attempt: Attempt, input: (u32, u32)) -> StepRecord {
        match attempt {
            Attempt::Hit { hit, .. } => {
                let done = StepDone {
                    qa: hit.step.qa.clone(),
                    model: hit.step.model.clone(),
                    ..nothing_ran(Reason::Escalated)
                };
                let output = Some((hit.step.out_w, hit.step.out_h));
                self.rows
                    .superseded(step, &done, input, output, String::new())
            }
            Attempt::Ran { mut done, .. } => {
                let output = done.image.as_ref().map(|i| i.dimensions());
                if output.is_some() {
                    done.reason = Reason::Escalated;
                }
                self.rows
                    .superseded(step, &done, input, output, String::new())
            }
            Attempt::Failed(failed) => {
                let done = StepDone {
                    model: failed.model,
                    reason: failed.reason,
                    cost: failed.cost,
                    attempts: failed.attempts,
                    latency: failed.latency,
                    image: None,
                    qa: None,
                };
                self.rows.superseded(step, &done, input, None, failed.error)
            }
        }
    }
}

/// Which attempt to keep and why: the first that passed, else the best-scoring result.
fn choose(tried: &[Attempt], escalate: &Escalate) -> (usize, Reason) {
    if let Some(i) = tried
        .iter()
        .position(|a| has_result(a) && escalate.passes(a.qa()))
    {
        return (i, Reason::EscalationPassed);
    }
    let mut best = 0;
    let mut best_score = f32::NEG_INFINITY;
    for (i, attempt) in tried.iter().enumerate() {
        if !has_result(attempt) {
            continue;
        }
        let score = attempt.qa().map_or(1.0, |q| q.score());
        if score > best_score {
            (best, best_score) = (i, score);
        }
    }
    (best, Reason::EscalationBest)
}

/// Whether the attempt produced an image (a cached result, or one made now).
fn has_result(attempt: &Attempt) -> bool {
    match attempt {
        Attempt::Hit { .. } => true,
        Attempt::Ran { done, .. } => done.image.is_some(),
        Attempt::Failed(_) => false,
    }
}

/// A step that made nothing and cost nothing, for `reason`.
fn nothing_ran(reason: Reason) -> StepDone {
    StepDone {
        model: "-".into(),
        reason,
        cost: Usd::ZERO,
        attempts: 0,
        latency: Duration::ZERO,
        image: None,
        qa: None,
    }
}
