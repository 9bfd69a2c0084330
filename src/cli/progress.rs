//! The progress bar: done/total, rate, ETA, failures and running cost, on stderr.
//!
//! indicatif draws nothing when stderr is not a terminal; `-q` hides it outright.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use retouch::ledger::{Status, StepRecord};
use retouch::money::Usd;
use retouch::run::RunObserver;

pub(super) struct Progress {
    bar: ProgressBar,
    /// (images failed, cost so far); updated by the report task only.
    tally: Mutex<(u64, Usd)>,
}

impl Progress {
    pub(super) fn new(total: u64, quiet: bool) -> Progress {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}  {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message("failed 0  cost $0.000000");
        Progress {
            bar,
            tally: Mutex::new((0, Usd::ZERO)),
        }
    }

    pub(super) fn println(&self, msg: &str) {
        if self.bar.is_hidden() {
            eprintln!("{msg}");
        } else {
            self.bar.println(msg);
        }
    }

    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl RunObserver for Progress {
    fn image_finished(&self, rows: &[StepRecord]) {
        let mut tally = self.tally.lock().expect("progress lock");
        if rows.iter().any(|r| r.status == Status::Failed) {
            tally.0 += 1;
        }
        tally.1 += rows.iter().map(|r| r.cost).sum();
        self.bar
            .set_message(format!("failed {}  cost ${}", tally.0, tally.1));
        self.bar.inc(1);
    }
}
