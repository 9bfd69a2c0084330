//! The run loop: fans images out with bounded concurrency and sends their rows to the run.
//!
//! Memory is bounded by the images in flight: inputs are read ahead, in order, at most
//! `limits.downloads` at a time (encoded bytes only), an image is decoded only once it holds one
//! of `concurrency` permits, and its pixels are dropped when its task ends. Each image's rows go
//! through a bounded channel to the run's report task as the image finishes.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::budget::{Budget, DailyAllowance};
use super::cache::RunCache;
use super::context::ImageContext;
use super::image_task::{self, Fetched};
use super::rate_limit::RateLimits;
use super::remote::Remote;
use super::retry::RetryPolicy;
use crate::catalog::{Catalog, Date};
use crate::ledger::Store;
use crate::manifest::Manifest;
use crate::money::Usd;
use crate::plan::Plan;
use crate::providers::Providers;
use crate::providers::local::LocalOps;
use crate::reason::Reason;

/// How to run (flags, not pipeline description); built by [`crate::run::Run`].
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub run_id: String,
    /// Images in flight at once.
    pub concurrency: usize,
    /// Route and price every image and step, call nothing, write no outputs.
    pub dry_run: bool,
    /// The model catalog, with the manifest's overrides and prices applied.
    pub catalog: Arc<Catalog>,
    /// The date lifecycle rules are judged against (today, UTC).
    pub today: Date,
    /// The clients of remote models; `None` without credentials (remote steps fall back).
    pub providers: Option<Providers>,
    /// The region remote models are called in.
    pub region: String,
    /// Retry policy for remote calls (attempts from `limits.attempts`).
    pub retry: RetryPolicy,
    /// The pipeline's state store: step cache, daily spend, run history. `None` keeps nothing
    /// (every step runs, the daily budget starts from zero).
    pub state: Option<Arc<Store>>,
    /// Ignore cached results (every step runs again); results are still recorded.
    pub force: bool,
    /// The local method of each step (which network, if any, local remove-bg runs).
    pub local: Arc<LocalOps>,
    /// The step cache every machine shares (`shared.cache`), when the manifest names one.
    pub shared: Option<crate::ledger::shared::SharedCache>,
    /// How many shards the catalogue runs in (1 when not sharded). With no shared coordination
    /// across machines, each shard takes a fixed 1/`shards` share of every limit shared by the
    /// account: the run and daily caps and each model's rpm, so their totals stay within the
    /// manifest's whatever the shards do.
    pub shards: u32,
    /// This run's part in the coordination table (`shared.dynamodb_table`): claims across
    /// machines, the manifest's whole run and daily caps, each model's whole rpm, all shared
    /// through the table instead of split into fixed shares.
    pub coordination: Option<crate::ledger::coordination::Coordination>,
}

/// Where the scheduler sends each finished image's rows (the run's report task receives them).
pub type RowSender = tokio::sync::mpsc::Sender<Vec<crate::ledger::StepRecord>>;

/// What the scheduler knows at the end of a run (the rows went to the report as they came).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// What every call of the run was billed.
    pub billed: Usd,
    /// The run was cancelled before every image started.
    pub cancelled: bool,
}

/// Runs `plan`, sending each image's rows to `rows` as it finishes.
pub async fn run(
    plan: Plan,
    config: RunConfig,
    rows: RowSender,
    cancel: CancellationToken,
) -> Scheduled {
    let manifest = plan.manifest.clone();
    let concurrency = config.concurrency.max(1);
    // A dry run looks results up (to plan cache hits) but records no run, row or result.
    let cache = config.state.as_ref().map(|store| {
        Arc::new(RunCache::new(
            store.clone(),
            config.run_id.clone(),
            config.force,
            config.shared.clone().filter(|_| !config.dry_run),
            config.coordination.clone().filter(|_| !config.dry_run),
        ))
    });
    let remote = remote(&manifest, &config, cache.clone()).cancelled_by(cancel.clone());
    let ctx = Arc::new(ImageContext {
        manifest: manifest.clone(),
        catalog: config.catalog.clone(),
        remote,
        dry_run: config.dry_run,
        cache,
        shared_peek: config
            .shared
            .clone()
            .filter(|_| config.dry_run && !config.force),
        peek_warned: crate::log_once::LogOnce::new(),
        local: config.local.clone(),
        pass_rates: std::sync::OnceLock::new(),
    });
    fan_out(&ctx, plan, concurrency, rows, &cancel).await;
    if let Some(cache) = &ctx.cache {
        cache.release_claims();
    }
    Scheduled {
        billed: ctx.remote.budget.spent(),
        cancelled: cancel.is_cancelled(),
    }
}

/// Reads inputs ahead and runs each image under a concurrency permit until every image has
/// run or the run is cancelled; returns when every started image has sent its rows.
async fn fan_out(
    ctx: &Arc<ImageContext>,
    plan: Plan,
    concurrency: usize,
    rows: RowSender,
    cancel: &CancellationToken,
) {
    let manifest = &ctx.manifest;
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    // Read-ahead: up to `downloads` inputs are read (S3 GETs, file reads) in input order while
    // earlier images are processed, so fetch latency overlaps CPU work.
    let read_ahead = manifest.limits.downloads.max(1);
    let max_mp = manifest.limits.max_megapixels;
    let mut pending = plan.images.into_iter();
    let mut ahead = VecDeque::with_capacity(read_ahead);
    loop {
        while ahead.len() < read_ahead {
            let Some(planned) = pending.next() else { break };
            let fetch = tokio::spawn(image_task::fetch(&planned, ctx.cache.clone(), max_mp));
            ahead.push_back((planned, fetch));
        }
        let Some((planned, mut fetch)) = ahead.pop_front() else {
            break;
        };
        let fetched = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                fetch.abort();
                break;
            }
            fetched = &mut fetch => fetched.unwrap_or_else(|e| {
                Fetched::Failed(Reason::InternalError, format!("reading the input: {e}"))
            }),
        };
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let (ctx, tx) = (ctx.clone(), rows.clone());
        tasks.spawn(async move {
            let rows = image_task::process(&ctx, planned, fetched).await;
            drop(permit);
            let _ = tx.send(rows).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    // Cancelled: reads started for images that will not run are abandoned.
    for (_, fetch) in ahead {
        fetch.abort();
    }
    drop(rows);
    while tasks.join_next().await.is_some() {}
}

/// Sets up remote calls for the run: clients, budget, rate limits and retry policy.
fn remote(manifest: &Manifest, config: &RunConfig, ledger: Option<Arc<RunCache>>) -> Remote {
    // Coordinated through the table, every shard works to the whole caps and rpm, shared
    // there; else each takes its fixed 1/N share.
    let coordination = config
        .coordination
        .clone()
        .filter(|_| ledger.as_ref().is_some_and(|l| l.coordinated()));
    let shards = if coordination.is_some() {
        1
    } else {
        config.shards.max(1)
    };
    let budget = Budget::new(
        manifest.budget.max_usd.map(|cap| share(cap, shards)),
        manifest.budget.per_image_max_usd,
        daily_allowance(manifest, config, shards),
    );
    let catalog = config.catalog.clone();
    let default_rpm = move |id: &str| rpm_share(catalog.default_rpm(id), shards);
    let rpm = manifest
        .limits
        .rpm
        .iter()
        .map(|(model, rpm)| (model.clone(), rpm_share(*rpm, shards)))
        .collect();
    let rates = RateLimits::new(&rpm, default_rpm);
    if let Some(coordination) = coordination {
        rates.share_through(coordination, config.shards);
    }
    Remote::new(
        config.providers.clone(),
        config.region.clone(),
        config.today,
        budget,
        rates,
        config.retry,
        ledger,
    )
}

/// One shard's share of a cap: `cap / shards`, rounded down to the micro-dollar, so the shares
/// never add up to more than the cap.
fn share(cap: Usd, shards: u32) -> Usd {
    Usd(cap.micros() / i64::from(shards.max(1)))
}

/// One shard's share of a model's requests per minute: rounded down, at least 1 (with more
/// shards than the model's rpm the shards together may reach one request a minute each; the
/// run warns about it).
fn rpm_share(rpm: u32, shards: u32) -> u32 {
    (rpm / shards.max(1)).max(1)
}

/// The daily cap (one shard's share of it) and what every run sharing the state store already
/// spent today (UTC).
fn daily_allowance(manifest: &Manifest, config: &RunConfig, shards: u32) -> Option<DailyAllowance> {
    let cap = share(manifest.budget.daily_max_usd?, shards);
    let already_spent_today = match &config.state {
        Some(store) => store.spent_on(Date::today_utc()).unwrap_or_else(|e| {
            // Unknown spend: refuse remote work rather than risk going over the cap.
            tracing::warn!("cannot read today's spend ({e}); treating the daily budget as used up");
            cap
        }),
        None => Usd::ZERO,
    };
    Some(DailyAllowance {
        cap,
        already_spent_today,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_shares_never_add_up_to_more_than_the_whole() {
        for (cap, shards) in [(1_000_000, 3), (70_000, 16), (5, 8), (0, 4), (999_999, 1)] {
            let each = share(Usd(cap), shards);
            assert!(each.micros() * i64::from(shards) <= cap, "{cap} / {shards}");
            assert!(cap - each.micros() * i64::from(shards) < i64::from(shards));
        }
        assert_eq!(rpm_share(600, 8), 75);
        assert_eq!(rpm_share(10, 3), 3);
        assert_eq!(rpm_share(10, 16), 1, "at least one request a minute");
        assert_eq!(rpm_share(10, 1), 10);
    }
}
