//! retouch: a batch pipeline engine for product photos.
//!
//! Data flows one way: a YAML [`manifest`] is validated into a plan of sources × steps; the
//! [`scheduler`] fans images out, asks the [`router`] which model serves each step, runs the step
//! through a [`providers`] backend (built-in [`ops`] or a remote model), writes results through
//! [`sinks`], and records one [`report`] row per image and step. The binary (`src/main.rs`,
//! `src/cli/`) only wires this together and maps the outcome to an exit code.

pub mod atomic_file;
pub mod catalog;
pub mod codec;
pub mod ledger;
pub mod manifest;
pub mod money;
pub mod ops;
pub mod plan;
pub mod providers;
pub mod reason;
pub mod report;
pub mod router;
pub mod run;
pub mod s3_client;
pub mod scheduler;
pub mod sinks;
pub mod sources;
#[cfg(feature = "testset")]
pub mod testset;
