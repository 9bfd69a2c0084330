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
    /// Validate a manifest and show what a run would do (routes, cost range, duration),
    /// processing nothing.
    Check(CheckArgs),
    /// List the models retouch knows: ops, prices, limits, lifecycle.
    Models(ModelsArgs),
    /// Review a run: totals by step, model and reason, latency, failures, costliest images.
    Report(ReportArgs),
    /// List past runs recorded in a state folder.
    Runs(RunsArgs),
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
    /// Write the report with the route and estimated cost each image would take (status
    /// `planned`), calling no model and writing no image.
    #[arg(long)]
    pub dry_run: bool,
    /// A model catalog file overriding or extending the built-in one (overrides `catalog:`).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The pipeline manifest (YAML).
    pub manifest: PathBuf,
    /// A model catalog file overriding or extending the built-in one (overrides `catalog:`).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Only models that can do this op (remove-bg, fix-lighting, upscale).
    #[arg(long, value_parser = ["remove-bg", "fix-lighting", "upscale"])]
    pub op: Option<String>,
    /// A model catalog file overriding or extending the built-in one.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A report CSV, or a run id recorded in the state folder.
    pub run_or_csv: String,
    /// Also write a self-contained HTML page with before/after thumbnails.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the review as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The state folder to look run ids up in.
    #[arg(long, value_name = "DIR", default_value = ".retouch")]
    pub state: PathBuf,
    /// Folder that relative image paths in the report are relative to (default: the CSV's
    /// folder, its parent, and the current folder are tried).
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// The state folder.
    #[arg(long, value_name = "DIR", default_value = ".retouch")]
    pub state: PathBuf,
}
