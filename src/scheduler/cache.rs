//! The step cache as a run uses it: looking a step up before doing it, recording its result
//! right after, and knowing when an output file already holds the right result.
//!
//! Keys and blobs are [`crate::ledger`]'s; this file decides what a run stores. A paid (remote)
//! result is kept as a lossless PNG blob so it is never paid for again. A free local result is
//! recorded without its pixels (its size only, so later steps can be routed and looked up without
//! decoding anything) and is recomputed when its pixels are needed: that keeps the cache to paid
//! work instead of gigabytes of free intermediate images. Every failure to read or write the
//! state store is logged and treated as a miss: the cache can cost a recompute, never a result.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use image::RgbaImage;

use super::budget::{BudgetExceeded, Cap};
use crate::catalog::Date;
use crate::codec;
use crate::cpu;
use crate::ledger::{
    CachedStep, HoldId, KnownInput, OutputRecord, StepKey, Store, output_spec, spec_for,
};
use crate::manifest::{OutputFormat, OutputSpec, Step};
use crate::money::Usd;
use crate::sinks::{self, Destination};
use crate::sources::InputItem;

/// The run's view of the state store.
pub struct RunCache {
    store: Arc<Store>,
    run_id: String,
    /// `--force`: look nothing up (every step runs again), but record every result.
    force: bool,
    /// Whether a store failure was already logged (logged once per run, not per image).
    warned: AtomicBool,
}

/// A hit: the key it was found under and what it holds.
pub struct Hit {
    pub key: StepKey,
    pub step: CachedStep,
}

impl RunCache {
    pub fn new(store: Arc<Store>, run_id: String, force: bool) -> RunCache {
        RunCache {
            store,
            run_id,
            force,
            warned: AtomicBool::new(false),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The first of `models` (in the router's order) that already has a result for `step` on the
    /// input identified by `prev`.
    pub fn lookup(&self, step: &Step, prev: blake3::Hash, models: &[String]) -> Option<Hit> {
        if self.force {
            return None;
        }
        models.iter().find_map(|model| {
            let key = StepKey::chain(prev, &spec_for(step, model));
            match self.store.lookup(&key) {
                Ok(found) => found.map(|step| Hit { key, step }),
                Err(e) => {
                    self.warn(e);
                    None
                }
            }
        })
    }

    /// Records a step result under `key`: a remote one with its pixels (encoded on the CPU pool at
    /// `priority`, written and synced off the async workers), a local one by its size only.
    pub async fn record(&self, key: StepKey, result: &StepResult<'_>, priority: u32) {
        let (w, h) = result.image.dimensions();
        let blob = if result.model == "local" {
            String::new()
        } else {
            let image = result.image.clone();
            let png = cpu::run_at(priority, move || {
                codec::encode(&image, OutputFormat::Png, 100, None)
            })
            .await;
            let bytes = match png {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => return self.warn(e),
                Err(panic) => return self.warn(panic),
            };
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.blobs().put(&bytes)).await {
                Ok(Ok(hex)) => hex,
                Ok(Err(e)) => return self.warn(e),
                Err(e) => return self.warn(e),
            }
        };
        let entry = CachedStep {
            blob,
            model: result.model.to_string(),
            cost: result.cost,
            latency_ms: result.latency.as_millis() as u64,
            out_w: w,
            out_h: h,
            created_at: unix_now(),
        };
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.record_step(&key, &entry)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.warn(e),
            Err(e) => self.warn(e),
        }
    }

    /// Holds `amount` against today's daily budget `cap` across every run sharing the store,
    /// before a call (see [`Store::hold_daily`]). Refused when it would pass the cap, and also
    /// when the store cannot be read: unknown spending must not risk the cap.
    pub async fn hold_daily(&self, cap: Usd, amount: Usd) -> Result<HoldId, BudgetExceeded> {
        let (store, run_id) = (self.store.clone(), self.run_id.clone());
        let job = move || store.hold_daily(&run_id, Date::today_utc(), cap, amount, unix_now());
        let refused = |committed| BudgetExceeded {
            which: Cap::Daily,
            cap,
            committed,
            requested: amount,
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(Ok(Ok(hold))) => Ok(hold),
            Ok(Ok(Err(committed))) => Err(refused(committed)),
            Ok(Err(e)) => {
                tracing::warn!(
                    "cannot read today's spend ({e}); treating the daily budget as used up"
                );
                Err(refused(cap))
            }
            Err(e) => {
                tracing::warn!("daily budget check stopped ({e}); treating the budget as used up");
                Err(refused(cap))
            }
        }
    }

    /// Ends a daily-budget hold with what its call was billed (zero for a call that billed
    /// nothing), recording the spend and dropping the hold together.
    pub async fn settle_hold(&self, hold: HoldId, model: &str, billed: Usd) {
        let (store, run_id, model) = (self.store.clone(), self.run_id.clone(), model.to_owned());
        let job = move || store.settle_hold(hold, &run_id, &model, billed, unix_now());
        let failed = match tokio::task::spawn_blocking(job).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        // The hold stays (it expires later), so the day still counts at least what it held.
        tracing::warn!("could not record a billed call of ${billed} in the state store: {failed}");
    }

    /// What an input listed with a version (an S3 object's ETag and size) held when an earlier
    /// run read it at that same version: enough to walk the cache without downloading it.
    /// `None` with `--force`, without a version, or when it was never read at this version.
    pub fn known_input(&self, item: &InputItem) -> Option<KnownInput> {
        let version = item.version.as_deref().filter(|_| !self.force)?;
        self.store
            .known_input(&item.display, version)
            .unwrap_or_else(|e| {
                self.warn(e);
                None
            })
    }

    /// Remembers what a versioned input held, right after reading it.
    pub fn record_input(&self, item: &InputItem, known: &KnownInput) {
        if let Some(version) = &item.version
            && let Err(e) = self.store.record_input(&item.display, version, known)
        {
            self.warn(e);
        }
    }

    /// Forgets a versioned input whose bytes no longer match what was recorded.
    pub fn forget_input(&self, item: &InputItem) {
        if let Err(e) = self.store.forget_input(&item.display) {
            self.warn(e);
        }
    }

    /// Records money one call billed, for the daily budget of every later run.
    pub fn record_spend(&self, model: &str, cost: Usd) {
        if cost > Usd::ZERO
            && let Err(e) = self
                .store
                .record_spend(&self.run_id, model, cost, unix_now())
        {
            self.warn(e);
        }
    }

    /// Whether `dest` already holds exactly the result `key` (as recorded when it was written,
    /// and unchanged since: same size and, on disk, same modification time).
    pub async fn output_current(
        &self,
        dest: &Destination,
        s3: Option<&crate::s3::S3>,
        key: StepKey,
    ) -> bool {
        if self.force {
            return false;
        }
        let recorded = match self.store.output(&dest.to_string()) {
            Ok(Some(r)) if r.key == key => r,
            Ok(_) => return false,
            Err(e) => {
                self.warn(e);
                return false;
            }
        };
        match sinks::existing(dest, s3).await {
            Some(now) => now.size == recorded.size && now.mtime_ns == recorded.mtime_ns,
            None => false,
        }
    }

    /// Records that `dest` was just written with the result `key`.
    pub async fn record_output(
        &self,
        dest: &Destination,
        s3: Option<&crate::s3::S3>,
        key: StepKey,
    ) {
        let Some(now) = sinks::existing(dest, s3).await else {
            return;
        };
        let record = OutputRecord {
            key,
            size: now.size,
            mtime_ns: now.mtime_ns,
        };
        if let Err(e) = self.store.record_output(&dest.to_string(), &record) {
            self.warn(e);
        }
    }

    fn warn(&self, e: impl std::fmt::Display) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "step cache: {e}; results are still written, but may be recomputed next run"
            );
        }
    }
}

/// A step result about to be recorded.
pub struct StepResult<'a> {
    pub model: &'a str,
    pub image: &'a Arc<RgbaImage>,
    pub cost: Usd,
    pub latency: Duration,
}

/// The key naming an output file's content: the last step's key chained with the output format.
pub fn output_key(prev: blake3::Hash, output: &OutputSpec) -> StepKey {
    StepKey::chain(
        prev,
        &output_spec(output.format.extension(), output.quality),
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
