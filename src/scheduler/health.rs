//! Per-model circuit breaker for one run: which remote models must not be called again, and a
//! probe gate so that a model nobody has heard back from yet gets only a few calls at once.
//!
//! A model starts *unknown*. Until one call to it succeeds, at most `probe` calls to it are in
//! flight; the other tasks wait at [`Health::admit`]. A success makes it *healthy* (no gate); a
//! permanent failure (access denied, unknown model, …) *opens* it for the rest of the run, and
//! every waiting and later task is told so instead of calling. Transient failures change nothing:
//! the probe permit is released and the next waiting task probes. This module never calls a
//! model and never sleeps; classifying failures belongs to the providers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many calls may probe an unknown model at once by default.
pub const DEFAULT_PROBE: usize = 2;

/// Why a model was taken out of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpenReason {
    /// The account may not invoke the model (not granted, or denied by policy).
    AccessDenied,
    /// The model id does not exist in the region.
    NotFound,
    /// The model exists but rejects requests as invalid for it (wrong family, retired version).
    InvalidModel,
    /// The service reports the model as not ready or not available to this account.
    Unavailable,
}

impl fmt::Display for OpenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenReason::AccessDenied => "access denied",
            OpenReason::NotFound => "model not found",
            OpenReason::InvalidModel => "model rejects requests",
            OpenReason::Unavailable => "model unavailable",
        })
    }
}

/// The answer of [`Health::admit`].
#[derive(Debug)]
pub enum Admission {
    /// Call the model, holding the permit until the call's outcome has been reported.
    Go(HealthPermit),
    /// Do not call this model in this run.
    Open(OpenReason),
}

/// Leave to call a model.
///
/// Lifecycle: returned by [`Health::admit`], moved into the task making the call, and dropped
/// once the outcome has been reported with [`Health::on_success`] or [`Health::open`] (or the
/// failure turned out transient). For an unknown model it holds one of the `probe` slots, so
/// dropping it lets the next waiting task probe; for a healthy model it holds nothing.
#[derive(Debug)]
pub struct HealthPermit {
    probe: Option<OwnedSemaphorePermit>,
}

impl HealthPermit {
    /// Whether this call is one of the few probing a model not yet known to work.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

/// The run's model health, shared by every task.
///
/// Lifecycle: created once per run by the scheduler; each task holds a clone (an `Arc`); dropped
/// with the last clone at the end of the run, so nothing is remembered across runs. The map's
/// std `Mutex` is only held to read or flip a state, never across an `.await`; waiting happens on
/// a per-model Tokio semaphore that is closed (waking every waiter) when the model's state
/// becomes known.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<HashMap<String, State>>>,
    probe: usize,
}

#[derive(Debug, Clone)]
enum State {
    Unknown(Arc<Semaphore>),
    Healthy,
    Open(OpenReason),
}

impl Default for Health {
    fn default() -> Health {
        Health::new(DEFAULT_PROBE)
    }
}

impl Health {
    /// A breaker letting at most `probe` calls (at least 1) at once to a model until one succeeds.
    pub fn new(probe: usize) -> Health {
        Health {
            inner: Arc::new(Mutex::new(HashMap::new())),
            probe: probe.max(1),
        }
    }

    /// `Some(reason)` once the model has been opened: do not call it again this run.
    pub fn is_open(&self, model: &str) -> Option<OpenReason> {
        match self.lock().get(model) {
            Some(State::Open(reason)) => Some(*reason),
            _ => None,
        }
    }

    /// Takes the model out of the run. The first reason sticks; waiting tasks are woken and told.
    pub fn open(&self, model: &str, reason: OpenReason) {
        let mut states = self.lock();
        let previous = states.get(model).cloned();
        if matches!(previous, Some(State::Open(_))) {
            return;
        }
        states.insert(model.to_owned(), State::Open(reason));
        drop(states);
        tracing::warn!(model, %reason, "model taken out of this run");
        if let Some(State::Unknown(gate)) = previous {
            gate.close();
        }
    }

    /// A call to the model succeeded: stop gating it (unless it was opened meanwhile).
    pub fn on_success(&self, model: &str) {
        let mut states = self.lock();
        if let Some(State::Unknown(gate)) = states.get(model) {
            gate.close();
            states.insert(model.to_owned(), State::Healthy);
        } else if !states.contains_key(model) {
            states.insert(model.to_owned(), State::Healthy);
        }
    }

    /// Waits until a call to `model` may be made. Healthy models are admitted at once, opened ones
    /// refused at once; for an unknown model this waits for one of the `probe` slots, or for the
    /// model's state to become known. Cancel-safe: dropping the future gives nothing up.
    pub async fn admit(&self, model: &str) -> Admission {
        loop {
            let gate = match self.state(model) {
                State::Open(reason) => return Admission::Open(reason),
                State::Healthy => return Admission::Go(HealthPermit { probe: None }),
                State::Unknown(gate) => gate,
            };
            // A closed gate means the state just became known: look again.
            let Ok(slot) = gate.acquire_owned().await else {
                continue;
            };
            // The state may have changed while waiting; a slot only counts for an unknown model.
            return match self.state(model) {
                State::Open(reason) => Admission::Open(reason),
                State::Healthy => Admission::Go(HealthPermit { probe: None }),
                State::Unknown(_) => Admission::Go(HealthPermit { probe: Some(slot) }),
            };
        }
    }

    fn state(&self, model: &str) -> State {
        self.lock()
            .entry(model.to_owned())
            .or_insert_with(|| State::Unknown(Arc::new(Semaphore::new(self.probe))))
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, State>> {
        // Every update is a single insert, so a poisoned map is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn is_go(a: &Admission) -> bool {
        matches!(a, Admission::Go(_))
    }

    #[tokio::test]
    async fn once_opened_every_admit_is_refused() {
        let health = Health::default();
        assert_eq!(health.is_open("m"), None);
        health.open("m", OpenReason::AccessDenied);
        health.open("m", OpenReason::NotFound);
        assert_eq!(health.is_open("m"), Some(OpenReason::AccessDenied));
        for _ in 0..5 {
            assert!(matches!(
                health.admit("m").await,
                Admission::Open(OpenReason::AccessDenied)
            ));
        }
        // A late success does not close the circuit again.
        health.on_success("m");
        assert!(matches!(health.admit("m").await, Admission::Open(_)));
        // Other models are unaffected.
        assert!(is_go(&health.admit("other").await));
        assert_eq!(health.is_open("other"), None);
    }

    /// 32 tasks want the same model; every call to it fails with access denied. Only the probes
    /// may reach it.
    async fn calls_made_to_a_denied_model(probe: usize) -> usize {
        let health = Health::new(probe);
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (health, calls) = (health.clone(), calls.clone());
                tokio::spawn(async move {
                    match health.admit("denied").await {
                        Admission::Go(permit) => {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            health.open("denied", OpenReason::AccessDenied);
                            drop(permit);
                            true
                        }
                        Admission::Open(reason) => {
                            assert_eq!(reason, OpenReason::AccessDenied);
                            false
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        calls.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn a_denied_model_gets_at_most_the_probe_calls() {
        assert_eq!(calls_made_to_a_denied_model(DEFAULT_PROBE).await, 2);
        assert_eq!(calls_made_to_a_denied_model(1).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_pass_the_probe_on_one_at_a_time() {
        let health = Health::new(1);
        let first = health.admit("m").await;
        let Admission::Go(first) = first else {
            panic!("first call must be admitted")
        };
        assert!(first.is_probe());
        let health2 = health.clone();
        let waiter = tokio::spawn(async move { health2.admit("m").await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "second call must wait for the probe");
        drop(first); // transient failure: neither success nor open
        let second = waiter.await.unwrap();
        assert!(matches!(&second, Admission::Go(p) if p.is_probe()));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_success_admission_no_longer_serialises() {
        let health = Health::new(1);
        let Admission::Go(probe) = health.admit("m").await else {
            panic!("first call must be admitted")
        };
        // 31 tasks queue behind the single probe.
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..31)
            .map(|_| {
                let (health, in_flight, peak) = (health.clone(), in_flight.clone(), peak.clone());
                tokio::spawn(async move {
                    let Admission::Go(permit) = health.admit("m").await else {
                        panic!("healthy model refused")
                    };
                    assert!(!permit.is_probe());
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(in_flight.load(Ordering::SeqCst), 0, "waiting on the probe");
        health.on_success("m");
        drop(probe);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 31, "all ran at once");
        assert!(matches!(health.admit("m").await, Admission::Go(p) if !p.is_probe()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_up_nothing() {
        let health = Health::new(1);
        let Admission::Go(probe) = health.admit("m").await else {
            panic!("first call must be admitted")
        };
        let waited = tokio::time::timeout(Duration::from_millis(50), health.admit("m")).await;
        assert!(waited.is_err(), "the single probe slot is taken");
        drop(probe);
        let next = tokio::time::timeout(Duration::from_millis(50), health.admit("m")).await;
        assert!(matches!(next, Ok(Admission::Go(p)) if p.is_probe()));
    }

    #[tokio::test]
    async fn success_without_admission_marks_healthy() {
        let health = Health::new(1);
        health.on_success("m");
        let a = health.admit("m").await;
        let b = health.admit("m").await;
        assert!(
            matches!((&a, &b), (Admission::Go(x), Admission::Go(y)) if !x.is_probe() && !y.is_probe())
        );
    }
}
