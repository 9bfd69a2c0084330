//! Flags. The manifest describes the pipeline; flags only control a run.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "retouch",
    version,
    about = "Batch-process product photos through declarative pipelines"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// Print only errors: no progress bar, no summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Args {
    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(3) as i8
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline over its inputs.
    Run(RunArgs),
    /// Validate a manifest and show what a run would do, processing nothing.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline manifest (YAML).
    pub manifest: PathBuf,
    /// Images in flight at once (overrides limits.concurrency).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Option<u32>,
    /// Where to write the CSV report (overrides `report:`).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The pipeline manifest (YAML).
    pub manifest: PathBuf,
}
