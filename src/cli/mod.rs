//! Command-line front end: flags (clap), wiring, exit codes. The only place that uses `anyhow`.
//!
//! Exit codes: 0 every image succeeded; 1 the run finished but some images failed; 2 usage,
//! manifest or setup error (nothing processed); 130 interrupted with Ctrl-C.

mod args;
mod cache_cmd;
mod check;
mod models;
mod progress;
mod report_cmd;
mod report_merge;
mod run;
mod runs_cmd;
mod s3_access;
mod state;
mod validate;

use clap::Parser;

pub(crate) use args::{Args, Command};

/// Exit codes.
pub(crate) mod code {
    pub(crate) const OK: i32 = 0;
    pub(crate) const SOME_FAILED: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
    pub(crate) const INTERRUPTED: i32 = 130;
}

/// Parses the command line, runs the command, returns the exit code.
pub(crate) fn main() -> i32 {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                code::USAGE
            } else {
                code::OK
            };
        }
    };
    init_tracing(args.verbosity());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return code::USAGE;
        }
    };
    let result = runtime.block_on(async {
        match &args.command {
            Command::Run(run) => run::run(run, &args).await,
            Command::Check(check) => check::check(check).await,
            Command::Models(models) => models::models(models).await,
            Command::Report(report) => report_cmd::report(report).await,
            Command::Runs(runs) => runs_cmd::runs(runs).await,
            Command::Cache(cache) => cache_cmd::cache(cache),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            code::USAGE
        }
    }
}

fn init_tracing(verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RETOUCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("retouch={default},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
