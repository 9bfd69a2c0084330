//! Flags. The manifest describes the pipeline; flags only control a run.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "retouch",
    version,
    about = "Batch-process product photos through declarative pipelines"
)]
pub(crate) struct Args {
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
    pub(crate) fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(3) as i8
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a pipeline over its inputs.
    Run(RunArgs),
    /// Validate a manifest and show what a run would do (routes, cost range, duration),
    /// processing nothing.
    Check(CheckArgs),
    /// List the models retouch knows: remote models (ops, prices, limits, lifecycle) and local
    /// segmentation networks (installed or not); `models install NAME` installs a network.
    Models(ModelsArgs),
    /// Review a run: totals by step, model and reason, latency, failures, costliest images.
    Report(ReportArgs),
    /// List past runs recorded in a state folder.
    Runs(RunsArgs),
    /// Manage the step cache.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Delete cached results not used for a while (and files no entry refers to).
    Gc(CacheGcArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct CacheGcArgs {
    /// Keep results used within this long: `30d`, `12h`, `90m`.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: std::time::Duration,
    /// The state folder (default: `.retouch` here, else the one `*/.retouch` one level down).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

fn parse_shard(s: &str) -> Result<retouch::shard::Shard, String> {
    retouch::shard::Shard::parse(s).map_err(|e| e.to_string())
}

/// `30d`, `12h`, `90m`, `45s`: an age.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not an age; write e.g. 30d, 12h or 90m"))?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}`; use d, h, m or s (e.g. 30d)"
            ));
        }
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The pipeline manifest (YAML).
    pub manifest: PathBuf,
    /// Run one shard of the catalogue, INDEX/COUNT (from 0): only the inputs it owns (by a
    /// stable hash of each input's key), writing its report part
    /// (`report.part-00003-of-00016.csv`). Default: from AWS Batch array jobs
    /// (`AWS_BATCH_JOB_ARRAY_INDEX`/`_SIZE`) or Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX`
    /// with --shard-count or `RETOUCH_SHARD_COUNT`).
    #[arg(long, value_name = "INDEX/COUNT", value_parser = parse_shard)]
    pub shard: Option<retouch::shard::Shard>,
    /// The number of shards when the engine gives only the index (Kubernetes Indexed Jobs: the
    /// Job's `completions`).
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub shard_count: Option<u32>,
    /// The run the shards belong to, the same for every shard (they share its run cap through
    /// `shared.dynamodb_table`). Default: `RETOUCH_RUN_GROUP`, else the AWS Batch array job's
    /// id.
    #[arg(long, value_name = "NAME")]
    pub run_group: Option<String>,
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
    /// Ignore cached results: run (and pay for) every step again. Results are still recorded.
    #[arg(long)]
    pub force: bool,
    /// The state folder: step cache, run history, daily spend (overrides `state:`).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The pipeline manifest (YAML); with `--preset`, the images to validate: files, folders
    /// (searched recursively) and run reports (`report.csv`: the outputs it lists).
    #[arg(required = true, value_name = "MANIFEST | PATH")]
    pub paths: Vec<PathBuf>,
    /// Validate finished images against a marketplace preset's rules instead of checking a
    /// manifest; processes nothing, exits 1 when any image breaks a rule.
    #[arg(long, value_parser = ["amazon-main", "square-tile"])]
    pub preset: Option<String>,
    /// Also ask Bedrock's control plane (needs credentials) which permitted models this account
    /// cannot use in the run's region, and what their steps will do instead.
    #[arg(long, conflicts_with = "preset")]
    pub account: bool,
    /// A model catalog file overriding or extending the built-in one (overrides `catalog:`).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Flags,
}

/// How a command that reads `s3://` locations reaches S3.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct S3Flags {
    /// The region of the S3 buckets named (default: the environment's or profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// The AWS profile S3 is reached with.
    #[arg(long)]
    pub profile: Option<String>,
    /// An S3-compatible endpoint (e.g. MinIO), addressed by path.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ModelsArgs {
    #[command(subcommand)]
    pub action: Option<ModelsCommand>,
    /// Only models that can do this op.
    #[arg(long, value_parser = ["remove-bg", "fix-lighting", "upscale", "replace-bg", "outpaint", "inpaint", "erase", "variation", "generate"])]
    pub op: Option<String>,
    /// A model catalog file overriding or extending the built-in one.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Ask Bedrock's control plane which catalog models this AWS account can use in the region
    /// (needs credentials; `bedrock:ListFoundationModels`, `bedrock:ListInferenceProfiles`,
    /// `bedrock:GetFoundationModelAvailability`).
    #[arg(long)]
    pub account: bool,
    /// The region `--account` asks about (default: the environment's or profile's, else
    /// us-east-1).
    #[arg(long, requires = "account")]
    pub region: Option<String>,
    /// The AWS profile `--account` uses.
    #[arg(long, requires = "account")]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Install a local segmentation network into the model folder (RETOUCH_MODEL_DIR, else
    /// $XDG_CACHE_HOME/retouch/models, else ~/.cache/retouch/models), checked against its
    /// pinned size and SHA-256.
    Install(ModelsInstallArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ModelsInstallArgs {
    /// The network's name (`retouch models` lists them): u2netp, u2net.
    pub name: String,
    /// A file or an http(s) URL to install from instead of the network's upstream release.
    #[arg(long, value_name = "PATH_OR_URL")]
    pub from: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ReportArgs {
    #[command(subcommand)]
    pub action: Option<ReportCommand>,
    /// A report CSV, a run id recorded in the state folder, or the folder or S3 prefix holding
    /// a sharded run's report parts.
    #[arg(required = true)]
    pub run_or_csv: Option<String>,
    /// Also write a self-contained HTML page with before/after thumbnails.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the review as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The state folder to look run ids up in (default: `.retouch` here, else the one
    /// `*/.retouch` one level down).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Folder that relative image paths in the report are relative to (default: the CSV's
    /// folder, its parent, and the current folder are tried).
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Flags,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// Combine the report parts of a sharded run into one report, saying which shards are
    /// missing or unfinished (exit 1 if any).
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct MergeArgs {
    /// The parts: files, folders holding them, or S3 keys and prefixes (`s3://bucket/out/`).
    #[arg(required = true, value_name = "PARTS")]
    pub parts: Vec<String>,
    /// Where to write the merged report, a path or `s3://bucket/key` (default: the report's own
    /// name beside the parts, e.g. `out/report.csv`).
    #[arg(long, value_name = "PATH")]
    pub output: Option<String>,
    #[command(flatten)]
    pub s3: S3Flags,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunsArgs {
    /// The state folder (default: `.retouch` here, else the one `*/.retouch` one level down).
    #[arg(long, value_name = "DIR", conflicts_with = "table")]
    pub state: Option<PathBuf>,
    /// List the runs every machine recorded in this coordination table
    /// (`shared.dynamodb_table`) instead: every shard of every run group, from any machine.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// With --table: only the shards of this run group, with their totals.
    #[arg(long, value_name = "NAME", requires = "table")]
    pub group: Option<String>,
    /// With --table: at most this many runs, newest first.
    #[arg(long, default_value_t = 100, requires = "table")]
    pub limit: usize,
    /// With --table: the table's region (default: the environment's or profile's).
    #[arg(long, requires = "table")]
    pub region: Option<String>,
    /// With --table: the AWS profile the table is reached with.
    #[arg(long, requires = "table")]
    pub profile: Option<String>,
}
