//! One step of one image on a remote model: budget reservation, circuit breaker, rate limit,
//! retries with backoff, and the walk down the router's candidate list.
//!
//! Money rules live here: a call's estimated cost is reserved before it is made and settled with
//! the billed amount after (a 200 answer is billed per returned image; errors are not), so
//! concurrent images can never push the billed total past a cap. With a daily cap the price is
//! also held in the state store, shared with every other run, for as long as the call lasts.
//! When every candidate fails, the caller gets the reason (and anything that was billed anyway)
//! and applies the step's fallback.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::RgbaImage;

use crate::qa::Qa;

use super::budget::{Budget, Reservation};
use super::cache::{CallOf, Held, NotHeld, RunCache};
use super::cpu;
use super::health::{Admission, Health, HealthPermit, OpenReason};
use super::rate_limit::RateLimits;
use super::refusals::Refusals;
use super::retry::RetryPolicy;
use crate::catalog::Date;
use crate::manifest::Step;
use crate::money::Usd;
use tokio_util::sync::CancellationToken;

use crate::catalog::ModelEntry;
use crate::providers::grader::{GradeCall, default_rubric};
use crate::providers::local::Reviewer;
use crate::providers::{PreparedCall, Providers, RemoteError, RetryAction};
use crate::router::{Candidate, Reason};

/// Everything remote calls share during a run. Created once per run, dropped at its end.
pub(super) struct Remote {
    /// `None` when no credentials were found: every remote step falls back at once.
    pub client: Option<Providers>,
    pub region: String,
    pub today: Date,
    pub budget: Budget,
    pub rates: RateLimits,
    pub health: Health,
    pub retry: RetryPolicy,
    /// Legacy models already warned about, so each is named once per run.
    warned_legacy: Mutex<HashSet<String>>,
    /// Where billed calls are recorded the moment they settle (for the daily budget).
    ledger: Option<Arc<RunCache>>,
    /// The last hold the shared caps refused, so the calls behind it that would be refused
    /// again do not each wait for a rate-limit slot first.
    refusals: Refusals,
    /// The run's shutdown signal: every wait here (a probe slot, a rate-limit slot, a retry
    /// back-off) ends at once when it fires, and the step falls back as interrupted.
    cancel: CancellationToken,
}

/// A step a remote model performed.
pub(super) struct Served {
    pub image: RgbaImage,
    /// The local quality checks of the result.
    pub qa: Qa,
    pub model: String,
    pub reason: Reason,
    pub cost: Usd,
    pub attempts: u32,
    pub latency: Duration,
    /// The served call's money, still held: the caller settles it once the result is recorded
    /// ([`Remote::settle`]), so a run killed in between counts the call as possibly billed.
    pub unsettled: Unsettled,
}

/// A served call whose holds (in the state store, in the coordination table) are not settled
/// yet; see [`Served::unsettled`].
pub(super) struct Unsettled {
    image: String,
    step: usize,
    model: String,
    cost: Usd,
    hold: Option<Held>,
}

/// Every candidate failed (or could not be afforded).
pub(super) struct NotServed {
    pub reason: Reason,
    pub error: String,
    /// Billed although no usable result came back.
    pub cost: Usd,
    pub attempts: u32,
    pub latency: Duration,
}

impl NotServed {
    /// Records why the latest candidate failed and what to do next.
    fn set<T>(&mut self, reason: Reason, error: String, next: Next) -> Result<T, Next> {
        self.reason = reason;
        self.error = error;
        Err(next)
    }
}

/// What to do after one candidate failed.
enum Next {
    /// Try the next candidate.
    NextModel,
    /// This image cannot be served remotely: fall back now.
    Stop,
}

impl Remote {
    pub(super) fn new(
        client: Option<Providers>,
        region: String,
        today: Date,
        budget: Budget,
        rates: RateLimits,
        retry: RetryPolicy,
        ledger: Option<Arc<RunCache>>,
    ) -> Remote {
        Remote {
            client,
            region,
            today,
            budget,
            rates,
            health: Health::default(),
            retry,
            warned_legacy: Mutex::new(HashSet::new()),
            ledger,
            refusals: Refusals::default(),
            cancel: CancellationToken::new(),
        }
    }

    /// Ends every wait of this run's calls when `cancel` fires.
    pub(super) fn cancelled_by(mut self, cancel: CancellationToken) -> Remote {
        self.cancel = cancel;
        self
    }

    /// `wait`, unless the run is cancelled first.
    async fn until_cancelled<T>(&self, wait: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            done = wait => Some(done),
        }
    }

    /// With a state store, holds `amount` for the call in the store until it settles, so a
    /// run killed mid-call still shows it as possibly billed; with a daily cap too, the hold
    /// counts against the day across every run sharing the store, so runs started together
    /// cannot overspend it between them; with a coordination table, against the run group's
    /// and the day's caps across machines. `None` when there is nothing to hold (no store, a
    /// free call).
    async fn hold(&self, call: CallOf<'_>, amount: Usd) -> Result<Option<Held>, NotHeld> {
        match &self.ledger {
            Some(ledger) if amount > Usd::ZERO => ledger
                .hold(call, self.budget.daily_cap(), amount)
                .await
                .map(Some),
            _ => Ok(None),
        }
    }

    /// Records what a call was billed, right as it settles, ending its hold if it had one.
    /// Called with zero for a call that was never made or billed nothing.
    async fn billed(&self, call: CallOf<'_>, cost: Usd, hold: Option<Held>) {
        let Some(ledger) = &self.ledger else { return };
        match hold {
            Some(hold) => {
                ledger.settle_hold(hold, call, cost).await;
                self.refusals.forget();
            }
            None if cost > Usd::ZERO => ledger.record_spend(call, cost),
            None => {}
        }
    }

    /// Why a model may not be called this run, as a report reason.
    pub(super) fn unhealthy(&self, model: &str) -> Option<Reason> {
        self.health.is_open(model).map(open_reason)
    }

    /// Serves `step` for the image `key` with the first candidate that succeeds; a remove-bg
    /// answer is held against `reviewer`'s own cut-out when there is one.
    pub(super) async fn serve(
        &self,
        step: &Step,
        key: &str,
        image: Arc<RgbaImage>,
        candidates: Vec<Candidate>,
        first_reason: Reason,
        reviewer: Option<Reviewer>,
    ) -> Result<Served, NotServed> {
        let started = Instant::now();
        let mut failure = NotServed {
            reason: Reason::FallbackTooLarge,
            error: String::new(),
            cost: Usd::ZERO,
            attempts: 0,
            latency: Duration::ZERO,
        };
        for (i, candidate) in candidates.into_iter().enumerate() {
            let reason = if i == 0 {
                first_reason
            } else {
                Reason::NextCheapest
            };
            match self
                .try_candidate(step, key, &image, candidate, &reviewer, &mut failure)
                .await
            {
                Ok((image, qa, model, cost, hold)) => {
                    let unsettled = Unsettled {
                        image: key.to_owned(),
                        step: step.index,
                        model: model.clone(),
                        cost,
                        hold,
                    };
                    return Ok(Served {
                        image,
                        qa,
                        model,
                        reason,
                        cost: failure.cost + cost,
                        attempts: failure.attempts,
                        latency: started.elapsed(),
                        unsettled,
                    });
                }
                Err(Next::NextModel) => continue,
                Err(Next::Stop) => break,
            }
        }
        failure.latency = started.elapsed();
        Err(failure)
    }

    /// Settles a served call's holds with what it was billed (after its result is recorded).
    pub(super) async fn settle(&self, unsettled: Unsettled) {
        let call = CallOf {
            image: &unsettled.image,
            step: unsettled.step,
            model: &unsettled.model,
        };
        self.billed(call, unsettled.cost, unsettled.hold).await;
    }

    /// One candidate: reserve, admit, prepare, hold, call with retries, map back; settled here
    /// unless it served (then the caller settles its holds once the result is recorded).
    async fn try_candidate(
        &self,
        step: &Step,
        key: &str,
        image: &Arc<RgbaImage>,
        candidate: Candidate,
        reviewer: &Option<Reviewer>,
        failure: &mut NotServed,
    ) -> Result<(RgbaImage, Qa, String, Usd, Option<Held>), Next> {
        let model_id = candidate.model.id.clone();
        let Some(providers) = &self.client else {
            return failure.set(
                Reason::FallbackNoCredentials,
                "no AWS credentials".into(),
                Next::Stop,
            );
        };
        // Cheapest first: if this one cannot be afforded, neither can the rest.
        let reservation = match self.budget.reserve(key, candidate.price) {
            Ok(r) => r,
            Err(e) => return failure.set(Reason::FallbackBudget, e.to_string(), Next::Stop),
        };
        let _permit = self.admit(&model_id, failure).await?;
        self.warn_if_legacy(&candidate);
        let call = match prepare(step, image, &candidate).await {
            Ok(call) => call.reviewed_by(reviewer.clone()),
            Err((reason, e)) => return failure.set(reason, e, Next::NextModel),
        };
        let paid = CallOf {
            image: key,
            step: step.index,
            model: &model_id,
        };
        let attempt = || providers.attempt(&call);
        let (answer, reservation, hold) = self
            .send(paid, candidate.price, reservation, attempt, failure)
            .await?;
        let (cost, result) = map_back(step, image, candidate.price, call, answer).await;
        reservation.settle(cost);
        match result {
            Ok((image, qa)) => {
                self.log_budget_warnings();
                Ok((image, qa, model_id, cost, hold))
            }
            Err((reason, error, next)) => {
                self.billed(paid, cost, hold).await;
                failure.cost += cost;
                failure.set(reason, error, next)
            }
        }
    }

    /// The part of a paid call every kind shares, once it is reserved, admitted and prepared:
    /// the model's rate-limit slot, the hold on `price` in the state store, then `attempt` with
    /// retries. On an answer the model's breaker and limiter hear of the success and the caller
    /// settles the reservation and hold with what was billed; on none both are released (errors
    /// are not billed) and the failure is classified.
    async fn send<F, A, T>(
        &self,
        paid: CallOf<'_>,
        price: Usd,
        reservation: Reservation,
        attempt: F,
        failure: &mut NotServed,
    ) -> Result<(T, Reservation, Option<Held>), Next>
    where
        F: Fn() -> A,
        A: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let model = paid.model;
        // A hold the shared caps refused a moment ago would be refused again: fall back without
        // waiting for a slot (see `refusals.rs`).
        if let Some(e) = self.refusals.would_refuse(price) {
            drop(reservation); // nothing called
            return failure.set(Reason::FallbackBudget, e.to_string(), Next::Stop);
        }
        // Held only once the first attempt has its rate-limit slot, so a hold lasts as long as
        // the call itself: a run killed while waiting for a slot has nothing possibly billed
        // (holds of runs that died stop counting against the day after `HOLD_EXPIRES_SECS`).
        if self
            .until_cancelled(self.rates.acquire(model))
            .await
            .is_none()
        {
            return interrupted(failure);
        }
        let hold = match self.hold(paid, price).await {
            Ok(hold) => {
                if hold.is_some() {
                    self.refusals.forget();
                }
                hold
            }
            Err(e) => {
                self.refusals.saw(&e);
                drop(reservation); // nothing called
                return failure.set(Reason::FallbackBudget, e.to_string(), Next::Stop);
            }
        };
        match self.call(model, attempt, failure).await {
            Ok(answer) => {
                self.health.on_success(model);
                self.rates.on_success(model);
                Ok((answer, reservation, hold))
            }
            Err(stopped) => {
                drop(reservation); // nothing billed
                self.billed(paid, Usd::ZERO, hold).await;
                match stopped {
                    Stopped::Failed(e) => self.not_answered(model, &e, failure),
                    Stopped::Interrupted => interrupted(failure),
                }
            }
        }
    }

    /// Admission through the model's circuit breaker (waiting for a probe slot while its health
    /// is unknown, unless the run is cancelled meanwhile).
    async fn admit(&self, model_id: &str, failure: &mut NotServed) -> Result<HealthPermit, Next> {
        match self.until_cancelled(self.health.admit(model_id)).await {
            Some(Admission::Go(permit)) => Ok(permit),
            Some(Admission::Open(r)) => {
                failure.set(open_reason(r), format!("{model_id}: {r}"), Next::NextModel)
            }
            None => interrupted(failure),
        }
    }

    /// A call that got no usable answer after its retries: what to do next, and the model's
    /// circuit opened when the failure says the model is unusable for the run.
    fn not_answered<T>(
        &self,
        model_id: &str,
        e: &RemoteError,
        failure: &mut NotServed,
    ) -> Result<T, Next> {
        let next = match e.action() {
            RetryAction::OpenCircuit => {
                self.health.open(model_id, circuit_reason(e));
                Next::NextModel
            }
            RetryAction::Retry => Next::NextModel,
            RetryAction::FallBack => next_after(e),
        };
        failure.set(e.reason(), e.to_string(), next)
    }

    /// The call with retries: `attempt` sends it once; each retry waits out its back-off and its
    /// rate-limit slot (the first attempt's slot is taken by the caller), unless the run is
    /// cancelled meanwhile. Counts attempts into `failure`.
    async fn call<F, A, T>(
        &self,
        model: &str,
        attempt: F,
        failure: &mut NotServed,
    ) -> Result<T, Stopped>
    where
        F: Fn() -> A,
        A: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            failure.attempts += 1;
            let err = match attempt().await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            if err.action() != RetryAction::Retry || !self.retry.allows_another(tries) {
                return Err(Stopped::Failed(err));
            }
            if matches!(err, RemoteError::Throttled) {
                self.rates.on_throttled(model);
            }
            let delay = self.retry.backoff(tries - 1, &mut rand::rng());
            tracing::debug!(model, tries, ?delay, error = %err, "retrying");
            let turn = async {
                tokio::time::sleep(delay).await;
                self.rates.acquire(model).await;
            };
            if self.until_cancelled(turn).await.is_none() {
                return Err(Stopped::Interrupted);
            }
        }
    }

    fn warn_if_legacy(&self, candidate: &Candidate) {
        if candidate.legacy
            && self
                .warned_legacy
                .lock()
                .expect("legacy set")
                .insert(candidate.model.id.clone())
        {
            let eol = candidate
                .model
                .lifecycle
                .end_of_life
                .map(|d| format!(", end of life {d}"))
                .unwrap_or_default();
            tracing::warn!(
                "model {} is legacy{eol}; plan a replacement",
                candidate.model.alias
            );
        }
    }

    fn log_budget_warnings(&self) {
        for w in self.budget.take_warnings() {
            tracing::warn!("budget: {}% used (${} of ${})", w.percent, w.spent, w.cap);
        }
    }
}

/// What grading one result came to.
pub(super) struct Graded {
    /// The grader's score; `None` when no grade could be had (the result keeps its local
    /// checks).
    pub grade: Option<f32>,
    /// What the grading calls were billed (tokens, even for an unreadable verdict).
    pub cost: Usd,
    pub attempts: u32,
    pub latency: Duration,
}

impl Remote {
    /// Grades `output`, the result of `step` on `input`, with `model` through `Converse`, under
    /// the same rules as any call: its bound reserved against the budgets (and held against the
    /// daily cap) before it is made, admitted by the model's circuit breaker and rate limit,
    /// retried with backoff, and settled with the tokens the answer says it used.
    /// `region` is where the grader is called (the run's, or one `aws.regions` allows).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn grade(
        &self,
        step: &Step,
        model: &ModelEntry,
        region: &str,
        key: &str,
        input: Arc<RgbaImage>,
        output: Arc<RgbaImage>,
    ) -> Graded {
        let started = Instant::now();
        let mut failure = NotServed {
            reason: Reason::FallbackBadResponse,
            error: String::new(),
            cost: Usd::ZERO,
            attempts: 0,
            latency: Duration::ZERO,
        };
        let grade = match self
            .try_grade(step, (model, region), key, input, output, &mut failure)
            .await
        {
            Ok(grade) => Some(grade),
            Err(_) => {
                tracing::warn!(
                    image = key,
                    step = step.index + 1,
                    "not graded by {}: {} ({})",
                    model.alias,
                    failure.reason,
                    failure.error
                );
                None
            }
        };
        Graded {
            grade,
            cost: failure.cost,
            attempts: failure.attempts,
            latency: started.elapsed(),
        }
    }

    async fn try_grade(
        &self,
        step: &Step,
        (model, region): (&ModelEntry, &str),
        key: &str,
        input: Arc<RgbaImage>,
        output: Arc<RgbaImage>,
        failure: &mut NotServed,
    ) -> Result<f32, Next> {
        let Some(providers) = &self.client else {
            return failure.set(
                Reason::FallbackNoCredentials,
                "no AWS credentials".into(),
                Next::Stop,
            );
        };
        let (op, entry) = (step.op, model.clone());
        let mut rubric = step.grader.as_ref().and_then(|g| g.rubric.clone());
        if op.makes_image() {
            // A generated image is judged against what was asked.
            let base = rubric.unwrap_or_else(|| default_rubric(op).to_owned());
            let asked = step.prompt.as_deref().unwrap_or_default();
            rubric = Some(format!("{base} The prompt was: \"{asked}\""));
        }
        let job = move || GradeCall::prepare(&entry, op, &input, &output, rubric.as_deref());
        let call = match cpu::run(job).await {
            Ok(Ok(call)) => call,
            Ok(Err(e)) => return failure.set(e.reason(), e.to_string(), Next::Stop),
            Err(panic) => return failure.set(Reason::InternalError, panic.to_string(), Next::Stop),
        };
        let bound = call.reservation();
        let reservation = match self.budget.reserve(key, bound) {
            Ok(r) => r,
            Err(e) => return failure.set(Reason::FallbackBudget, e.to_string(), Next::Stop),
        };
        let _permit = self.admit(&model.id, failure).await?;
        let paid = CallOf {
            image: key,
            step: step.index,
            model: &model.id,
        };
        let attempt = || providers.grade(&call, Some(region));
        let (answer, reservation, hold) = self
            .send(paid, bound, reservation, attempt, failure)
            .await?;
        let (cost, _billed, verdict) = call.finish(&answer);
        reservation.settle(cost);
        self.billed(paid, cost, hold).await;
        failure.cost += cost;
        match verdict {
            Ok(grade) => Ok(grade.score),
            Err(e) => failure.set(e.reason(), e.to_string(), Next::Stop),
        }
    }
}

/// Why a call gave up.
enum Stopped {
    /// Its last attempt failed this way (not worth, or out of, retries).
    Failed(RemoteError),
    /// The run was cancelled while it waited for a retry.
    Interrupted,
}

/// The step stops trying remote models: the run was cancelled while it waited.
fn interrupted<T>(failure: &mut NotServed) -> Result<T, Next> {
    failure.set(
        Reason::FallbackInterrupted,
        "the run was interrupted while this call waited for its turn".into(),
        Next::Stop,
    )
}

/// After a per-image failure: content filters and rejected inputs would fail the same way on the
/// next model, so stop; a model's own failure may not repeat elsewhere.
fn next_after(e: &RemoteError) -> Next {
    match e {
        RemoteError::ContentFiltered { .. } | RemoteError::Validation { .. } => Next::Stop,
        _ => Next::NextModel,
    }
}

fn circuit_reason(e: &RemoteError) -> OpenReason {
    match e {
        RemoteError::AccessDenied { .. } => OpenReason::AccessDenied,
        RemoteError::ModelNotFound { .. } => OpenReason::NotFound,
        RemoteError::InvalidModel { .. } => OpenReason::InvalidModel,
        _ => OpenReason::Unavailable,
    }
}

fn open_reason(r: OpenReason) -> Reason {
    match r {
        OpenReason::AccessDenied => Reason::FallbackAccessDenied,
        OpenReason::NotFound => Reason::FallbackModelNotFound,
        OpenReason::InvalidModel => Reason::FallbackModelInvalid,
        OpenReason::Unavailable => Reason::FallbackModelUnavailable,
    }
}

/// A step's failure as the candidate walk records it: reason, message, what to do next.
type Failed = (Reason, String, Next);

/// Maps a 200 answer back onto the image on the CPU pool; returns what the answer was billed
/// (at `price` per image) and the result. An answer that does not map back is billed unless
/// nothing came back (filtered out).
async fn map_back(
    step: &Step,
    image: &Arc<RgbaImage>,
    price: Usd,
    call: PreparedCall,
    answer: Vec<u8>,
) -> (Usd, Result<(RgbaImage, Qa), Failed>) {
    let original = image.clone();
    let job = move || {
        let result = call.finish(&answer, &original);
        let lost = result
            .as_ref()
            .err()
            .map(|e| call.billed_without_result(&answer, e, price));
        (result, lost)
    };
    match cpu::run_at(cpu::priority(step), job).await {
        Ok((Ok(output), _)) => {
            let cost = output.billed.cost(price, None).unwrap_or(price);
            (cost, Ok((output.image, output.qa)))
        }
        Ok((Err(e), lost)) => {
            let cost = lost.unwrap_or(price);
            (cost, Err((e.reason(), e.to_string(), next_after(&e))))
        }
        Err(panic) => {
            let failed = (
                Reason::FallbackBadResponse,
                panic.to_string(),
                Next::NextModel,
            );
            (price, Err(failed))
        }
    }
}

/// Prepares the call on the CPU pool.
async fn prepare(
    step: &Step,
    image: &Arc<RgbaImage>,
    candidate: &Candidate,
) -> Result<PreparedCall, (Reason, String)> {
    let (step_owned, model, image) = (step.clone(), candidate.model.clone(), image.clone());
    let region = candidate.region.clone();
    let job =
        move || PreparedCall::prepare(&step_owned, &model, &image).map(|c| c.in_region(&region));
    match cpu::run_at(cpu::priority(step), job).await {
        Ok(Ok(call)) => Ok(call),
        Ok(Err(e)) => Err((e.reason(), e.to_string())),
        Err(panic) => Err((Reason::InternalError, panic.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::time::Instant;

    use super::*;

    /// A run's remote side with no clients: `rpm` requests a minute per model, retries every
    /// 30 s, shut down by `cancel`.
    fn remote(rpm: u32, cancel: &CancellationToken) -> Remote {
        let retry = RetryPolicy {
            attempts: 5,
            base: Duration::from_secs(30),
            cap: Duration::from_secs(30),
        };
        let rates = RateLimits::new(&BTreeMap::new(), move |_| rpm);
        let budget = Budget::new(None, None, None);
        let today = Date::new(2026, 12, 1).unwrap();
        Remote::new(None, "us-east-1".into(), today, budget, rates, retry, None)
            .cancelled_by(cancel.clone())
    }

    fn nothing_yet() -> NotServed {
        NotServed {
            reason: Reason::FallbackTooLarge,
            error: String::new(),
            cost: Usd::ZERO,
            attempts: 0,
            latency: Duration::ZERO,
        }
    }

    /// Cancels `cancel` after `after` of (paused, auto-advancing) time.
    async fn cancel_after(cancel: CancellationToken, after: Duration) {
        tokio::time::sleep(after).await;
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_30_s_back_off_ends_at_once_on_shutdown() {
        let cancel = CancellationToken::new();
        let remote = remote(6_000, &cancel);
        let started = Instant::now();
        let tried_at = std::sync::Mutex::new(Vec::new());
        let throttled = || async {
            tried_at.lock().unwrap().push(started.elapsed());
            Err::<Vec<u8>, _>(RemoteError::Throttled)
        };
        let mut failure = nothing_yet();
        let (result, ()) = tokio::join!(
            remote.call("m", throttled, &mut failure),
            cancel_after(cancel.clone(), Duration::from_secs(1)),
        );
        assert!(matches!(result, Err(Stopped::Interrupted)));
        let took = started.elapsed();
        // Without the shutdown race the call would sleep up to 30 s and try again, four times.
        assert!(took < Duration::from_millis(1_100), "{took:?}");
        // Back-offs are fully jittered (0–30 s), so a short one may let a second try in before
        // the shutdown; none comes after it, and each is counted.
        let tried_at = tried_at.into_inner().unwrap();
        assert!(!tried_at.is_empty());
        assert!(
            tried_at.iter().all(|&t| t < Duration::from_secs(1)),
            "{tried_at:?}"
        );
        assert_eq!(failure.attempts as usize, tried_at.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_wait_ends_at_once_on_shutdown() {
        let cancel = CancellationToken::new();
        let remote = remote(1, &cancel); // one call a minute
        remote.rates.acquire("m").await;
        let started = Instant::now();
        let (waited, ()) = tokio::join!(
            remote.until_cancelled(remote.rates.acquire("m")),
            cancel_after(cancel.clone(), Duration::from_millis(500)),
        );
        assert_eq!(waited, None, "the wait was cut short");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}");
        // The failure says why the step falls back.
        let mut failure = nothing_yet();
        let next = interrupted::<()>(&mut failure);
        assert!(matches!(next, Err(Next::Stop)));
        assert_eq!(failure.reason, Reason::FallbackInterrupted);
    }
}
