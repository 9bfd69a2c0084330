//! retouch: a batch pipeline engine for product photos.
//!
//! [`run::Run`] is the entry point: `Run::prepare(manifest, options)?.execute(observer, cancel)`.
//! Data flows one way: a YAML [`manifest`] is validated and [`plan`]ned into sources × steps;
//! the [`scheduler`] fans images out, asks the [`router`] which model serves each step, performs
//! it through a [`providers`] backend (built-in [`ops`] or a remote model), writes results
//! through [`sinks`], and sends one row per image and step back to the run, which writes the
//! [`report`] and the [`ledger`]. The binary (`src/main.rs`, `src/cli/`) parses flags, calls the
//! library and maps the outcome to an exit code. ARCHITECTURE.md has the whole map.

pub mod account;
pub mod atomic_file;
pub mod catalog;
pub mod codec;
pub mod ledger;
pub mod log_once;
pub mod manifest;
pub mod marketplace;
pub mod model_store;
pub mod money;
pub mod onnx_engine;
pub mod ops;
pub mod plan;
pub mod provenance;
pub mod providers;
pub mod qa;
pub mod reason;
pub mod report;
pub mod router;
pub mod run;
pub mod s3_client;
pub mod scheduler;
pub mod shard;
pub mod sinks;
pub mod sources;
#[cfg(feature = "testset")]
pub mod testset;
