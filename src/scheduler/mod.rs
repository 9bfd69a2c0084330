//! Async orchestration of a run: streaming images through their steps under a concurrency cap,
//! routing each step, running it on the right backend, writing results, and reporting rows as
//! images finish. Cancellation stops new images from starting; in-flight ones finish.
//!
//! The concurrency primitives for remote calls live in their own files: [`budget`] (reserve
//! before a call, settle after), [`rate_limit`] (per-model rpm), [`retry`] (backoff) and
//! [`health`] (per-model circuit breaker).

pub mod budget;
mod cache;
mod dry_run;
pub mod health;
mod image_task;
pub mod rate_limit;
mod remote;
pub mod retry;
mod rows;
mod run;

pub use run::{Connection, RunConfig, RunError, RunObserver, RunOutcome, run};
