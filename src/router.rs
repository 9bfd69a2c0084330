//! Which model serves a step for an image, and why: a pure function, no I/O.
//!
//! `local` is the free fallback, never a competitor on price: a step permitting only `local` runs
//! locally (`only-permitted`). Otherwise the permitted remote models compete: candidates are those
//! that can do the op, are offered in the region, are not past end-of-life, are healthy and can
//! take this image (possibly as a resized copy); the cheapest estimated price for this image wins
//! and ties go to manifest order. When no candidate remains, the step's `fallback:` decides, and
//! the reason says why. Budget and call failures are the scheduler's to handle: it walks the
//! candidate list and falls back with the reason the router names here.

use std::fmt;

use crate::catalog::{Catalog, Date, Exclusion, Fit, Lifecycle, ModelEntry};
use crate::manifest::{Fallback, ModelRef, Step};
use crate::money::Usd;
pub use crate::reason::Reason;

/// Where one step of one image goes when it does not go to a remote model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Run the built-in implementation.
    Local { reason: Reason },
    /// Leave the image unchanged at this step (`fallback: skip`).
    Skip { reason: Reason },
    /// Fail the image (`fallback: fail`).
    Fail { reason: Reason },
}

impl Route {
    /// `local`, or `-` when nothing runs.
    pub fn model(&self) -> String {
        match self {
            Route::Local { .. } => ModelRef::Local.to_string(),
            Route::Skip { .. } | Route::Fail { .. } => "-".into(),
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            Route::Local { reason } | Route::Skip { reason } | Route::Fail { reason } => *reason,
        }
    }
}

/// The route a step's `fallback:` gives when no remote model can serve, for `reason`.
pub fn fall_back(fallback: Fallback, reason: Reason) -> Route {
    match fallback {
        Fallback::Local => Route::Local { reason },
        Fallback::Skip => Route::Skip { reason },
        Fallback::Fail => Route::Fail { reason },
    }
}

/// What the router knows about the world for one decision.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    pub catalog: &'a Catalog,
    pub region: &'a str,
    /// `aws.regions`: where models not offered in `region` may be called (empty: `region`'s
    /// geography).
    pub regions: &'a [String],
    pub today: Date,
    /// Whether a remote client exists (credentials were found).
    pub remote_available: bool,
    /// Why a model may not be called this run (circuit open), if so.
    pub unhealthy: &'a dyn Fn(&str) -> Option<Reason>,
}

/// A remote model that can serve this image.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub model: ModelEntry,
    /// The region to call it in (the run's, or another the manifest allows).
    pub region: String,
    /// Estimated billed price for this image.
    pub price: Usd,
    pub fit: Fit,
    /// The model is legacy (still usable; warn).
    pub legacy: bool,
}

/// A permitted model that cannot serve this image, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Excluded {
    pub model: String,
    pub why: NotCandidate,
}

/// Why a permitted model is not a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum NotCandidate {
    NotInRegion,
    EndOfLife(Option<Date>),
    Unhealthy(Reason),
    Image(Exclusion),
}

impl NotCandidate {
    /// The fallback reason this exclusion gives when it leaves no candidate.
    fn fallback_reason(&self) -> Reason {
        match self {
            NotCandidate::NotInRegion => Reason::FallbackRegion,
            NotCandidate::EndOfLife(_) => Reason::FallbackEndOfLife,
            NotCandidate::Unhealthy(r) => *r,
            NotCandidate::Image(Exclusion::AspectOutOfRange { .. }) => Reason::FallbackAspectRatio,
            NotCandidate::Image(Exclusion::TooSmallToUpscale { .. }) => Reason::FallbackTooSmall,
            NotCandidate::Image(_) => Reason::FallbackTooLarge,
        }
    }
}

impl fmt::Display for NotCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotCandidate::NotInRegion => {
                f.write_str("not offered in this region nor in any region `aws.regions` allows")
            }
            NotCandidate::EndOfLife(Some(d)) => write!(f, "past end of life ({d})"),
            NotCandidate::EndOfLife(None) => f.write_str("retired"),
            NotCandidate::Unhealthy(r) => write!(f, "unavailable this run ({r})"),
            NotCandidate::Image(e) => write!(f, "{e}"),
        }
    }
}

/// The router's answer for one step of one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Try these remote models in order (cheapest first, ties in manifest order); the first
    /// carries `reason`.
    Remote {
        candidates: Vec<Candidate>,
        reason: Reason,
        excluded: Vec<Excluded>,
    },
    /// No remote model: run locally, skip or fail.
    Other {
        route: Route,
        excluded: Vec<Excluded>,
    },
}

/// Decides how `step` is served for an image of `size`.
pub fn decide(step: &Step, size: (u32, u32), facts: &Facts) -> Decision {
    if step.models.iter().all(ModelRef::is_local) {
        return Decision::Other {
            route: Route::Local {
                reason: Reason::OnlyPermitted,
            },
            excluded: Vec::new(),
        };
    }
    if !facts.remote_available {
        return Decision::Other {
            route: fall_back(step.fallback, Reason::FallbackNoCredentials),
            excluded: Vec::new(),
        };
    }
    let (mut candidates, excluded) = candidates(step, size, facts);
    if candidates.is_empty() {
        let reason = fallback_reason(&excluded);
        return Decision::Other {
            route: fall_back(step.fallback, reason),
            excluded,
        };
    }
    // Stable: equal prices keep manifest order.
    candidates.sort_by_key(|c| c.price);
    let reason = if step.models.len() == 1 {
        Reason::OnlyPermitted
    } else {
        Reason::Cheapest
    };
    Decision::Remote {
        candidates,
        reason,
        excluded,
    }
}

/// Splits the step's permitted remote models into candidates and exclusions, in manifest order.
pub fn candidates(step: &Step, size: (u32, u32), facts: &Facts) -> (Vec<Candidate>, Vec<Excluded>) {
    let mut candidates = Vec::new();
    let mut excluded = Vec::new();
    for id in step.models.iter().filter_map(|m| match m {
        ModelRef::Remote(id) => Some(id),
        ModelRef::Local => None,
    }) {
        let Some(model) = facts.catalog.resolve(id) else {
            continue;
        };
        match assess(model, step, size, facts) {
            Ok(c) => candidates.push(c),
            Err(why) => excluded.push(Excluded {
                model: model.id.clone(),
                why,
            }),
        }
    }
    (candidates, excluded)
}

fn assess(
    model: &ModelEntry,
    step: &Step,
    (w, h): (u32, u32),
    facts: &Facts,
) -> Result<Candidate, NotCandidate> {
    let Some(region) = model.call_region(facts.region, facts.regions) else {
        return Err(NotCandidate::NotInRegion);
    };
    let legacy = match model.lifecycle_on(facts.today) {
        Lifecycle::PastEndOfLife { eol } => return Err(NotCandidate::EndOfLife(eol)),
        Lifecycle::Legacy { .. } => true,
        Lifecycle::Active | Lifecycle::Preview => false,
    };
    if let Some(reason) = (facts.unhealthy)(&model.id) {
        return Err(NotCandidate::Unhealthy(reason));
    }
    let fit = model.fit(step.op, w, h).map_err(NotCandidate::Image)?;
    let price = model
        .price_for(step.op, w, h)
        .ok_or(NotCandidate::Image(Exclusion::CannotFit { w, h }))?;
    Ok(Candidate {
        model: model.clone(),
        region: region.to_owned(),
        price,
        fit,
        legacy,
    })
}

/// The reason to report when every permitted model was excluded: the most specific one (an
/// image-specific exclusion beats a run-wide one, since another image may still be served).
fn fallback_reason(excluded: &[Excluded]) -> Reason {
    let rank = |e: &Excluded| match e.why {
        NotCandidate::Image(_) => 0,
        NotCandidate::Unhealthy(_) => 1,
        NotCandidate::EndOfLife(_) => 2,
        NotCandidate::NotInRegion => 3,
    };
    excluded
        .iter()
        .min_by_key(|e| rank(e))
        .map(|e| e.why.fallback_reason())
        .unwrap_or(Reason::FallbackTooLarge)
}

#[cfg(test)]
mod tests;
