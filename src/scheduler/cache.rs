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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use image::RgbaImage;

use super::budget::{BudgetExceeded, Cap};
use super::cpu;
use crate::catalog::Date;
use crate::codec;
use crate::ledger::coordination::{Coordination, Refusal, SharedClaim, SharedHold};
use crate::ledger::shared::SharedCache;
use crate::ledger::{
    CachedStep, Claim, HoldId, KnownInput, OutputRecord, PaidCall, StepKey, StepSpec, Store,
    output_spec, spec_for, unix_now,
};
use crate::log_once::LogOnce;
use crate::manifest::{ModelRef, OutputFormat, OutputSpec, Step};
use crate::money::Usd;
use crate::qa::Qa;
use crate::sinks::{self, Destination};
use crate::sources::InputItem;

/// The run's view of the state store.
pub(super) struct RunCache {
    store: Arc<Store>,
    run_id: String,
    /// `--force`: look nothing up (every step runs again), but record every result.
    force: bool,
    /// Whether a store failure was already logged (logged once per run, not per image).
    warned: LogOnce,
    /// Numbers this run's claims, so duplicate images within the run wait for each other.
    next_token: AtomicU64,
    /// The tier every machine shares (`shared.cache`): looked up when the local store misses a
    /// paid step, and given every paid result.
    shared: Option<SharedCache>,
    /// Whether a shared-cache failure was already logged.
    shared_warned: LogOnce,
    /// The coordination table (`shared.dynamodb_table`): claims across machines, and the
    /// shared caps every hold is also taken against.
    coordination: Option<Coordination>,
    /// Whether a failure to claim through the table was already logged.
    claims_warned: LogOnce,
    /// Whether a failure to hold through the table was already logged.
    holds_warned: LogOnce,
}

/// Money held for one paid call: in the state store, and in the coordination table when there
/// is one; see [`RunCache::hold`].
pub(super) struct Held {
    local: Option<HoldId>,
    shared: Option<SharedHold>,
}

/// Why a paid call could not be held.
#[derive(Debug)]
pub(super) enum NotHeld {
    /// A cap cannot afford it.
    Cap(BudgetExceeded),
    /// The coordination table cannot be reached: no call is made that its caps do not hold.
    Unreachable(String),
}

impl std::fmt::Display for NotHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotHeld::Cap(e) => e.fmt(f),
            NotHeld::Unreachable(e) => write!(
                f,
                "{e}; no paid call is made until the shared budget can hold it"
            ),
        }
    }
}

/// A hit: the key it was found under and what it holds.
pub(super) struct Hit {
    pub key: StepKey,
    pub step: CachedStep,
}

impl RunCache {
    /// The run's id.
    pub(super) fn run_id(&self) -> &str {
        &self.run_id
    }

    pub(super) fn new(
        store: Arc<Store>,
        run_id: String,
        force: bool,
        shared: Option<SharedCache>,
        coordination: Option<Coordination>,
    ) -> RunCache {
        RunCache {
            store,
            run_id,
            force,
            warned: LogOnce::new(),
            next_token: AtomicU64::new(1),
            shared,
            shared_warned: LogOnce::new(),
            coordination,
            claims_warned: LogOnce::new(),
            holds_warned: LogOnce::new(),
        }
    }

    /// Whether the run takes part in a coordination table.
    pub(super) fn coordinated(&self) -> bool {
        self.coordination.is_some()
    }

    pub(super) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The first of `models` (in the router's order) that already has a result for `step` on the
    /// input identified by `prev`.
    pub(super) fn lookup(&self, step: &Step, prev: blake3::Hash, models: &[String]) -> Option<Hit> {
        if self.force {
            return None;
        }
        models.iter().find_map(|model| {
            let key = StepKey::chain(prev, &spec(step, model));
            match self.store.lookup(&key) {
                Ok(found) => found.map(|step| Hit { key, step }),
                Err(e) => {
                    self.warn(e);
                    None
                }
            }
        })
    }

    /// The first of `models` with a result for `step` on `prev` in the shared cache (another
    /// machine paid for it), copied into the local store and returned as a hit. `None` with
    /// `--force`, without a shared cache, or when S3 cannot be read (logged once: the step is
    /// then done here).
    pub(super) async fn shared_lookup(
        &self,
        step: &Step,
        prev: blake3::Hash,
        models: &[String],
    ) -> Option<Hit> {
        let shared = self.shared.as_ref().filter(|_| !self.force)?;
        for model in models {
            let key = StepKey::chain(prev, &spec(step, model));
            let (found, bytes) = match shared.fetch(&key).await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(e) => {
                    self.warn_shared(e);
                    return None;
                }
            };
            let store = self.store.clone();
            let entry = found.clone();
            let kept = tokio::task::spawn_blocking(move || {
                store.blobs().put(&bytes)?;
                store.record_step(&key, &entry)
            })
            .await;
            match kept {
                Ok(Ok(())) => return Some(Hit { key, step: found }),
                Ok(Err(e)) => self.warn(e),
                Err(e) => self.warn(e),
            }
            return None;
        }
        None
    }

    fn warn_shared(&self, e: impl std::fmt::Display) {
        if self.shared_warned.first() {
            tracing::warn!(
                "shared step cache: {e}; steps not found locally are done (and paid) here"
            );
        }
    }

    /// Records a step result under `key`: a remote one with its pixels (encoded on the CPU pool at
    /// `priority`, written and synced off the async workers), a local one by its size only.
    pub(super) async fn record(&self, key: StepKey, result: &StepResult<'_>, priority: u32) {
        let (w, h) = result.image.dimensions();
        let mut shared_blob = None;
        let blob = if ModelRef::is_local_name(result.model) {
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
            let kept = bytes.clone();
            match tokio::task::spawn_blocking(move || store.blobs().put(&kept)).await {
                Ok(Ok(hex)) => {
                    shared_blob = Some(bytes);
                    hex
                }
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
            qa: result.qa.cloned(),
        };
        let store = self.store.clone();
        let recorded = entry.clone();
        match tokio::task::spawn_blocking(move || store.record_step(&key, &recorded)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.warn(e),
            Err(e) => self.warn(e),
        }
        // A paid result goes to every machine too, before the next step starts.
        if let (Some(shared), Some(bytes)) = (&self.shared, shared_blob)
            && let Err(e) = shared.publish(&key, &entry, bytes).await
        {
            self.warn_shared(e);
        }
    }

    /// Holds `amount` for the paid call `call`: in the state store (see [`Store::hold`]; with a
    /// daily budget `cap`, only if the day across every run sharing the store can afford it),
    /// then, with a coordination table, against the caps every machine shares (the run group's
    /// and the day's). Refused with a daily cap also when the store cannot be read, and always
    /// when the table cannot be reached: unknown spending must not risk a cap. Without a cap, a
    /// hold the store cannot record goes ahead unrecorded.
    pub(super) async fn hold(
        &self,
        call: CallOf<'_>,
        cap: Option<Usd>,
        amount: Usd,
    ) -> Result<Held, NotHeld> {
        let local = self
            .hold_local(call, cap, amount)
            .await
            .map_err(NotHeld::Cap)?;
        let Some(coordination) = &self.coordination else {
            return Ok(Held {
                local,
                shared: None,
            });
        };
        let refused = match coordination.hold(amount).await {
            Ok(Ok(shared)) => {
                return Ok(Held {
                    local,
                    shared: Some(shared),
                });
            }
            Ok(Err(Refusal::Run { committed, cap })) => NotHeld::Cap(BudgetExceeded {
                which: Cap::Run,
                cap,
                committed,
                requested: amount,
            }),
            Ok(Err(Refusal::Daily { committed, cap })) => NotHeld::Cap(BudgetExceeded {
                which: Cap::Daily,
                cap,
                committed,
                requested: amount,
            }),
            Err(e) => {
                if self.holds_warned.first() {
                    tracing::warn!(
                        "shared budget: {e}; paid calls are refused until it can be reached"
                    );
                }
                NotHeld::Unreachable(e.to_string())
            }
        };
        if let Some(hold) = local {
            self.settle_local(hold, call, Usd::ZERO).await;
        }
        Err(refused)
    }

    async fn hold_local(
        &self,
        call: CallOf<'_>,
        cap: Option<Usd>,
        amount: Usd,
    ) -> Result<Option<HoldId>, BudgetExceeded> {
        let (store, run_id) = (self.store.clone(), self.run_id.clone());
        let (image, model, step) = (call.image.to_owned(), call.model.to_owned(), call.step);
        let job = move || {
            let call = PaidCall {
                run_id: &run_id,
                image: &image,
                step,
                model: &model,
            };
            let daily = cap.map(|cap| (Date::today_utc(), cap));
            store.hold(&call, amount, daily, unix_now())
        };
        let refused = |committed, cap| BudgetExceeded {
            which: Cap::Daily,
            cap,
            committed,
            requested: amount,
        };
        let failed = match tokio::task::spawn_blocking(job).await {
            Ok(Ok(Ok(hold))) => return Ok(Some(hold)),
            Ok(Ok(Err(committed))) => {
                return Err(refused(committed, cap.unwrap_or(Usd::ZERO)));
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        match cap {
            Some(cap) => {
                tracing::warn!(
                    "cannot read today's spend ({failed}); treating the daily budget as used up"
                );
                Err(refused(cap, cap))
            }
            None => {
                self.warn(failed);
                Ok(None)
            }
        }
    }

    /// Ends a hold with what its call was billed (zero for a call that billed nothing): in the
    /// store, the spend is recorded and the hold dropped together; in the coordination table,
    /// the shared caps are settled. Without a local hold, a billed call is still recorded.
    pub(super) async fn settle_hold(&self, held: Held, call: CallOf<'_>, billed: Usd) {
        match held.local {
            Some(hold) => self.settle_local(hold, call, billed).await,
            None if billed > Usd::ZERO => self.record_spend(call, billed),
            None => {}
        }
        if let (Some(coordination), Some(shared)) = (&self.coordination, &held.shared) {
            coordination.settle(shared, billed).await;
        }
    }

    async fn settle_local(&self, hold: HoldId, call: CallOf<'_>, billed: Usd) {
        let (store, run_id) = (self.store.clone(), self.run_id.clone());
        let (image, model, step) = (call.image.to_owned(), call.model.to_owned(), call.step);
        let job = move || {
            let call = PaidCall {
                run_id: &run_id,
                image: &image,
                step,
                model: &model,
            };
            store.settle_hold(hold, &call, billed, unix_now())
        };
        let failed = match tokio::task::spawn_blocking(job).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        // The hold stays (it expires later), so the day still counts at least what it held.
        tracing::warn!("could not record a billed call of ${billed} in the state store: {failed}");
    }

    /// Records money one call billed that was not held (see [`RunCache::hold`]).
    pub(super) fn record_spend(&self, call: CallOf<'_>, cost: Usd) {
        let call = PaidCall {
            run_id: &self.run_id,
            image: call.image,
            step: call.step,
            model: call.model,
        };
        if let Err(e) = self.store.record_spend(&call, cost, unix_now()) {
            self.warn(e);
        }
    }

    /// Claims `step` on the input `prev` for this task, waiting while another task or a live
    /// run holds it (it is doing the same paid work; its result lands in the cache). The
    /// caller looks the step up again once it holds the claim. `None` when the store cannot
    /// record claims: the step then runs unclaimed, as before claims existed.
    pub(super) async fn claim(
        &self,
        step: &Step,
        prev: blake3::Hash,
        image: &str,
    ) -> Option<ClaimGuard> {
        let key = StepKey::chain(prev, &spec(step, CLAIM_MODEL));
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let mut waited = false;
        loop {
            match self.store.claim(&key, &self.run_id, token, unix_now()) {
                Ok(Claim::Mine) => {
                    let mut guard = ClaimGuard {
                        store: self.store.clone(),
                        key,
                        token,
                        shared: None,
                        waited_elsewhere: false,
                    };
                    self.claim_shared(&mut guard, step, image).await;
                    return Some(guard);
                }
                Ok(Claim::Theirs { run_id }) => {
                    if !waited {
                        tracing::info!(
                            "{image}: step {} is being done by run {run_id}; waiting for its result",
                            step.index + 1
                        );
                        waited = true;
                    }
                    tokio::time::sleep(CLAIM_POLL).await;
                }
                Err(e) => {
                    self.warn(e);
                    return None;
                }
            }
        }
    }

    /// With a coordination table, claims the step `guard` holds locally across machines too,
    /// waiting while a live run elsewhere does it. A table that cannot be reached is logged
    /// once and the step runs claimed on this machine only.
    async fn claim_shared(&self, guard: &mut ClaimGuard, step: &Step, image: &str) {
        let Some(coordination) = &self.coordination else {
            return;
        };
        let hex = guard.key.to_hex();
        loop {
            match coordination.claim(&hex, guard.token).await {
                Ok(SharedClaim::Mine) => {
                    guard.shared = Some((coordination.clone(), hex));
                    return;
                }
                Ok(SharedClaim::Theirs { run_id }) => {
                    if !guard.waited_elsewhere {
                        tracing::info!(
                            "{image}: step {} is being done by run {run_id} on another machine; waiting for its result",
                            step.index + 1
                        );
                        guard.waited_elsewhere = true;
                    }
                    tokio::time::sleep(SHARED_CLAIM_POLL).await;
                }
                Err(e) => {
                    if self.claims_warned.first() {
                        tracing::warn!(
                            "claims across machines: {e}; steps are claimed on this machine only"
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Ends every claim this run still holds (when it ends).
    pub(super) fn release_claims(&self) {
        if let Err(e) = self.store.release_claims(&self.run_id) {
            self.warn(e);
        }
    }

    /// What an input listed with a version (an S3 object's ETag and size) held when an earlier
    /// run read it at that same version: enough to walk the cache without downloading it.
    /// `None` with `--force`, without a version, or when it was never read at this version.
    pub(super) fn known_input(&self, item: &InputItem) -> Option<KnownInput> {
        let version = item.version.as_deref().filter(|_| !self.force)?;
        self.store
            .known_input(&item.display, version)
            .unwrap_or_else(|e| {
                self.warn(e);
                None
            })
    }

    /// Remembers what a versioned input held, right after reading it.
    pub(super) fn record_input(&self, item: &InputItem, known: &KnownInput) {
        if let Some(version) = &item.version
            && let Err(e) = self.store.record_input(&item.display, version, known)
        {
            self.warn(e);
        }
    }

    /// Forgets a versioned input whose bytes no longer match what was recorded.
    pub(super) fn forget_input(&self, item: &InputItem) {
        if let Err(e) = self.store.forget_input(&item.display) {
            self.warn(e);
        }
    }

    /// Whether `dest` already holds exactly the result `key` (as recorded when it was written,
    /// and unchanged since: same size and, on disk, same modification time).
    pub(super) async fn output_current(
        &self,
        dest: &Destination,
        s3: Option<&crate::s3_client::S3>,
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

    /// Records that `dest` was just written with the result `key`, and what it is made of
    /// (`provenance`: the sidecar's JSON).
    pub(super) async fn record_output(
        &self,
        dest: &Destination,
        s3: Option<&crate::s3_client::S3>,
        key: StepKey,
        provenance: &[u8],
    ) {
        let json = String::from_utf8_lossy(provenance);
        if let Err(e) = self
            .store
            .record_provenance(&dest.to_string(), self.run_id(), &json)
        {
            self.warn(e);
        }
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
        if self.warned.first() {
            tracing::warn!(
                "step cache: {e}; results are still written, but may be recomputed next run"
            );
        }
    }
}

/// A paid call as the run names it (the run id is the cache's).
#[derive(Debug, Clone, Copy)]
pub(super) struct CallOf<'a> {
    pub image: &'a str,
    /// 0-based step index.
    pub step: usize,
    pub model: &'a str,
}

/// The model name claim keys are made with: no real model's, so a claim covers the step
/// whichever model ends up serving it.
const CLAIM_MODEL: &str = "(claim)";

/// How often a task waiting for another's claim looks again.
const CLAIM_POLL: Duration = Duration::from_millis(100);

/// How often a task waiting for a claim held on another machine looks again (each look is a
/// DynamoDB read or two).
const SHARED_CLAIM_POLL: Duration = Duration::from_millis(500);

/// A step this task claimed (see [`RunCache::claim`]); released when dropped, on every path.
pub(super) struct ClaimGuard {
    store: Arc<Store>,
    key: StepKey,
    token: u64,
    /// The claim in the coordination table, and the key's hex.
    shared: Option<(Coordination, String)>,
    /// Another machine held the step first (its result may be in the shared cache now).
    pub waited_elsewhere: bool,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        // The table's claim goes first (released in the background, awaited when the run
        // ends), then the local one: one short statement; a failure leaves a claim that dies
        // with this run's lease.
        if let Some((coordination, hex)) = &self.shared {
            coordination.release(hex, self.token);
        }
        let _ = self.store.release_claim(&self.key, self.token);
    }
}

/// The cache spec of `step` served by `model`, with the version of the code that serves it.
pub(super) fn spec(step: &Step, model: &str) -> StepSpec {
    spec_for(step, model, crate::providers::adapter_version(model))
}

/// A step result about to be recorded.
pub(super) struct StepResult<'a> {
    pub model: &'a str,
    pub image: &'a Arc<RgbaImage>,
    pub cost: Usd,
    pub latency: Duration,
    pub qa: Option<&'a Qa>,
}

/// The key naming an output file's content: the last step's key chained with the output format.
pub(super) fn output_key(prev: blake3::Hash, output: &OutputSpec) -> StepKey {
    StepKey::chain(
        prev,
        &output_spec(
            output.format.extension(),
            output.quality,
            crate::codec::ENCODER_VERSION,
        ),
    )
}
