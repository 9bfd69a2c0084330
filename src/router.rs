//! Which model serves a step for an image, and why: a pure function, no I/O.
//!
//! `local` is the free fallback, never a competitor on price: a step permitting only `local` runs
//! locally (`only-permitted`); otherwise the permitted remote models compete and the step's
//! `fallback:` decides what happens when none can serve.

use std::fmt;

use crate::manifest::{Fallback, ModelRef, Step};

/// Why a route was chosen. Rendered kebab-case in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The only permitted model.
    OnlyPermitted,
    /// The cheapest of several permitted models that can take this image.
    Cheapest,
    /// No remote model could serve: no credentials / endpoint configured.
    FallbackNoCredentials,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OnlyPermitted => "only-permitted",
            Reason::Cheapest => "cheapest",
            Reason::FallbackNoCredentials => "fallback-no-credentials",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one step of one image goes.
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
    /// `local`, a model id, or `-` when nothing runs.
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

/// Picks the route for `step`.
pub fn route(step: &Step) -> Route {
    if step.models.iter().all(ModelRef::is_local) {
        return Route::Local {
            reason: Reason::OnlyPermitted,
        };
    }
    fall_back(step.fallback, Reason::FallbackNoCredentials)
}

/// The route a step's `fallback:` gives when no remote model can serve, for `reason`.
pub fn fall_back(fallback: Fallback, reason: Reason) -> Route {
    match fallback {
        Fallback::Local => Route::Local { reason },
        Fallback::Skip => Route::Skip { reason },
        Fallback::Fail => Route::Fail { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FixLightingParams, Op, OpParams};

    fn step(models: Vec<ModelRef>, fallback: Fallback) -> Step {
        Step {
            index: 0,
            op: Op::FixLighting,
            models,
            fallback,
            params: OpParams::FixLighting(FixLightingParams { strength: 0.8 }),
            prompt: None,
            negative_prompt: None,
            similarity: None,
        }
    }

    #[test]
    fn routes_by_permission_and_fallback() {
        let remote = || vec![ModelRef::Remote("amazon.nova-canvas-v1:0".into())];
        let cases = [
            (
                vec![ModelRef::Local],
                Fallback::Local,
                "local",
                "only-permitted",
            ),
            (
                remote(),
                Fallback::Local,
                "local",
                "fallback-no-credentials",
            ),
            (remote(), Fallback::Skip, "-", "fallback-no-credentials"),
            (remote(), Fallback::Fail, "-", "fallback-no-credentials"),
        ];
        for (models, fallback, model, reason) in cases {
            let r = route(&step(models, fallback));
            assert_eq!((r.model().as_str(), r.reason().as_str()), (model, reason));
        }
    }
}
