//! Async orchestration of a run: streaming images through their steps under a concurrency cap,
//! routing each step, running it on the right backend, writing results, and reporting rows as
//! images finish. Cancellation stops new images from starting; in-flight ones finish.

mod image_task;
mod run;

pub use run::{RunConfig, RunError, RunObserver, RunOutcome, run};
