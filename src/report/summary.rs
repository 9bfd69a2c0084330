//! End-of-run summary: images ok/failed, cost, latency percentiles per step, where outputs went.

use std::fmt;
use std::path::PathBuf;

use crate::catalog::Op;
use crate::ledger::{Status, StepRecord};
use crate::money::Usd;

/// Latency figures of one step over the images that ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepLatency {
    pub step: usize,
    pub op: Op,
    pub samples: usize,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub max_ms: u64,
}

/// Totals of a finished (or interrupted) run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub images: usize,
    pub images_ok: usize,
    pub images_failed: usize,
    /// Images never started because the run was interrupted.
    pub images_not_started: usize,
    pub total_cost: Usd,
    pub steps: Vec<StepLatency>,
    pub output_dir: PathBuf,
    pub report: PathBuf,
}

impl Summary {
    /// Builds the summary from every row of the run (any order).
    pub fn from_rows(
        rows: &[StepRecord],
        step_ops: &[Op],
        images: usize,
        output_dir: PathBuf,
        report: PathBuf,
    ) -> Summary {
        let mut failed = std::collections::BTreeSet::new();
        let mut seen = std::collections::BTreeSet::new();
        for r in rows {
            seen.insert(r.image_index);
            if r.status == Status::Failed {
                failed.insert(r.image_index);
            }
        }
        let steps = step_ops
            .iter()
            .enumerate()
            .map(|(step, &op)| {
                let mut lat: Vec<u64> = rows
                    .iter()
                    .filter(|r| r.step == step && r.status == Status::Ok)
                    .map(|r| r.latency_ms)
                    .collect();
                lat.sort_unstable();
                StepLatency {
                    step,
                    op,
                    samples: lat.len(),
                    p50_ms: percentile(&lat, 50),
                    p95_ms: percentile(&lat, 95),
                    max_ms: lat.last().copied().unwrap_or(0),
                }
            })
            .collect();
        Summary {
            images,
            images_ok: seen.len() - failed.len(),
            images_failed: failed.len(),
            images_not_started: images - seen.len(),
            total_cost: rows.iter().map(|r| r.cost).sum(),
            steps,
            output_dir,
            report,
        }
    }

    pub fn all_ok(&self) -> bool {
        self.images_failed == 0 && self.images_not_started == 0
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "images: {} ok, {} failed",
            self.images_ok, self.images_failed
        )?;
        if self.images_not_started > 0 {
            write!(f, ", {} not started (interrupted)", self.images_not_started)?;
        }
        writeln!(f, " of {}", self.images)?;
        writeln!(f, "cost:   ${}", self.total_cost)?;
        for s in &self.steps {
            writeln!(
                f,
                "step {} {:<13} p50 {} ms, p95 {} ms, max {} ms ({} images)",
                s.step + 1,
                s.op.as_str(),
                s.p50_ms,
                s.p95_ms,
                s.max_ms,
                s.samples
            )?;
        }
        writeln!(f, "output: {}", self.output_dir.display())?;
        write!(f, "report: {}", self.report.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 95), 95);
        assert_eq!(percentile(&[7], 95), 7);
        assert_eq!(percentile(&[], 50), 0);
    }
}
