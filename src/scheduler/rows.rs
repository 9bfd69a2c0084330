//! Accumulates one image's report rows as its steps finish.

use super::outcome::{StepDone, StepFailed};
use crate::catalog::Op;
use crate::ledger::{Status, StepRecord};
use crate::manifest::Step;
use crate::money::Usd;
use crate::qa::Qa;
use crate::router::Reason;
use crate::sources::InputItem;

/// One image's rows, in step order.
pub(super) struct RowBuilder {
    template: StepRecord,
    ops: Vec<Op>,
    rows: Vec<StepRecord>,
}

impl RowBuilder {
    pub(super) fn new(item: &InputItem, steps: &[Step]) -> RowBuilder {
        RowBuilder {
            template: StepRecord {
                image_index: item.index,
                image: item.display.clone(),
                step: 0,
                op: steps[0].op,
                model: "-".into(),
                reason: Reason::UpstreamFailed,
                status: Status::Skipped,
                cost: Usd::ZERO,
                latency_ms: 0,
                attempts: 0,
                input_size: None,
                output_size: None,
                output: String::new(),
                error: String::new(),
                qa: None,
            },
            ops: steps.iter().map(|s| s.op).collect(),
            rows: Vec::with_capacity(steps.len()),
        }
    }

    /// The rows so far in a builder of their own, leaving this one empty.
    pub(super) fn take(&mut self) -> RowBuilder {
        RowBuilder {
            template: self.template.clone(),
            ops: self.ops.clone(),
            rows: std::mem::take(&mut self.rows),
        }
    }

    /// Appends a row made elsewhere (an attempt `escalate:` superseded).
    pub(super) fn push(&mut self, row: StepRecord) {
        self.rows.push(row);
    }

    /// The row of an attempt at `step` whose result was not kept: `done` ran (or tried to) with
    /// `reason`; `output` is its result's size when it made one.
    pub(super) fn superseded(
        &self,
        step: &Step,
        done: &StepDone,
        input: (u32, u32),
        output: Option<(u32, u32)>,
        error: String,
    ) -> StepRecord {
        StepRecord {
            model: done.model.clone(),
            reason: done.reason,
            status: Status::Superseded,
            cost: done.cost,
            latency_ms: done.latency.as_millis() as u64,
            attempts: done.attempts,
            input_size: size(input),
            output_size: output,
            qa: done.qa.clone(),
            error,
            ..self.row(step)
        }
    }

    fn row(&self, step: &Step) -> StepRecord {
        StepRecord {
            step: step.index,
            op: step.op,
            ..self.template.clone()
        }
    }

    pub(super) fn done(
        &mut self,
        step: &Step,
        done: StepDone,
        skipped: bool,
        input: (u32, u32),
        output: (u32, u32),
    ) {
        let status = if skipped { Status::Skipped } else { Status::Ok };
        let row = StepRecord {
            model: done.model,
            reason: done.reason,
            status,
            cost: done.cost,
            latency_ms: done.latency.as_millis() as u64,
            attempts: done.attempts,
            input_size: size(input),
            output_size: size(output),
            qa: done.qa,
            ..self.row(step)
        };
        self.rows.push(row);
    }

    /// A step whose result came from the cache: nothing ran, nothing was billed; `qa` is what
    /// the checks found when it was made.
    pub(super) fn cached(
        &mut self,
        step: &Step,
        model: &str,
        input: (u32, u32),
        output: (u32, u32),
        qa: Option<Qa>,
    ) {
        let row = StepRecord {
            model: model.into(),
            reason: Reason::CacheHit,
            status: Status::Ok,
            input_size: size(input),
            output_size: size(output),
            qa,
            ..self.row(step)
        };
        self.rows.push(row);
    }

    /// A dry-run row: the route this step would take and its estimated cost.
    pub(super) fn planned(
        &mut self,
        step: &Step,
        model: &str,
        reason: Reason,
        estimate: Usd,
        input: (u32, u32),
        output: (u32, u32),
    ) {
        let row = StepRecord {
            model: model.into(),
            reason,
            status: Status::Planned,
            cost: estimate,
            input_size: size(input),
            output_size: size(output),
            ..self.row(step)
        };
        self.rows.push(row);
    }

    pub(super) fn failed(&mut self, step: &Step, failed: StepFailed, input: (u32, u32)) {
        let row = StepRecord {
            model: failed.model,
            reason: failed.reason,
            status: Status::Failed,
            cost: failed.cost,
            latency_ms: failed.latency.as_millis() as u64,
            attempts: failed.attempts,
            input_size: size(input),
            error: failed.error,
            ..self.row(step)
        };
        self.rows.push(row);
    }

    /// Every step failed for the same reason (the image could not even be read).
    pub(super) fn all_failed(mut self, reason: Reason, error: &str) -> Vec<StepRecord> {
        for (i, &op) in self.ops.iter().enumerate() {
            self.rows.push(StepRecord {
                step: i,
                op,
                reason,
                status: Status::Failed,
                error: error.into(),
                ..self.template.clone()
            });
        }
        self.rows
    }

    /// A step failed: the steps after it are skipped.
    pub(super) fn finish_failed(mut self) -> Vec<StepRecord> {
        for i in self.rows.len()..self.ops.len() {
            self.rows.push(StepRecord {
                step: i,
                op: self.ops[i],
                reason: Reason::UpstreamFailed,
                ..self.template.clone()
            });
        }
        self.rows
    }

    /// The first step (`generate`) made no image: every later step is skipped, nothing written.
    pub(super) fn finish_nothing_made(mut self) -> Vec<StepRecord> {
        for i in self.rows.len()..self.ops.len() {
            self.rows.push(StepRecord {
                step: i,
                op: self.ops[i],
                reason: Reason::NothingGenerated,
                ..self.template.clone()
            });
        }
        self.rows
    }

    /// Writing the result failed after every step ran: the last row carries the failure.
    pub(super) fn fail_last(mut self, reason: Reason, error: &str) -> Vec<StepRecord> {
        if let Some(last) = self.rows.last_mut() {
            last.status = Status::Failed;
            last.reason = reason;
            last.error = error.into();
        }
        self.rows
    }

    pub(super) fn finish_written(mut self, output: &str) -> Vec<StepRecord> {
        for row in &mut self.rows {
            row.output = output.into();
        }
        self.rows
    }

    /// The rows so far, in step order.
    pub(super) fn so_far(&self) -> &[StepRecord] {
        &self.rows
    }

    pub(super) fn finish(self) -> Vec<StepRecord> {
        self.rows
    }
}

/// A size for the report: none for 0×0 (a prompt has no pixels; generate's input).
fn size(s: (u32, u32)) -> Option<(u32, u32)> {
    (s != (0, 0)).then_some(s)
}
