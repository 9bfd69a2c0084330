//! One catalog entry: a model's identity, family, regions, lifecycle and per-op specs.
//!
//! Owns the entry's (de)serialised shape, its validation, and the per-model questions the
//! router asks: can it take this image (fit), what will it cost (price), is it still offered
//! (lifecycle, region).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{Exclusion, Fit, OpSpec, OutputRule};
use super::{Date, ModelKind, Op};
use crate::money::Usd;

/// Request-format family: decides which adapter encodes the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Nova,
    Titan,
    Stability,
}

/// Lifecycle status as published by Bedrock, plus `retired` for models already gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleStatus {
    Active,
    /// Offered as a preview: it may change or go without notice (routed like an active model,
    /// only where a manifest names it, as every model is).
    Preview,
    Legacy,
    Retired,
}

/// Lifecycle data of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSpec {
    pub status: LifecycleStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_date: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life: Option<Date>,
}

/// A model's lifecycle on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Active,
    Preview,
    Legacy { eol: Option<Date> },
    PastEndOfLife { eol: Option<Date> },
}

/// Default requests per minute when an entry names none (a guess, like all rpm defaults).
pub(crate) const FALLBACK_RPM: u32 = 10;

/// One model the catalog knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawModel", into = "RawModel")]
pub struct ModelEntry {
    /// Canonical Bedrock model id (`amazon.nova-canvas-v1:0`).
    pub id: String,
    /// Short alias (`nova-canvas`).
    pub alias: String,
    pub kind: ModelKind,
    /// The ops it can do (the keys of `specs`, in `Op` order).
    pub ops: Vec<Op>,
    /// The id to put in the invoke URL: an inference profile (`us.stability…`) or `id`.
    pub invoke_id: String,
    pub family: Family,
    pub regions: Vec<String>,
    pub lifecycle: LifecycleSpec,
    /// Requests per minute to allow by default (a guess unless the user sets it).
    pub default_rpm: u32,
    pub specs: BTreeMap<Op, OpSpec>,
    /// For models billed per token (image understanding through `Converse`): the prices.
    pub tokens: Option<TokenPrices>,
}

/// Prices of a model billed per token, in USD per million tokens (`tokens:` in the catalog).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPrices {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

impl TokenPrices {
    /// What `input` and `output` tokens cost, rounded up to the micro-dollar (a paid call is
    /// never recorded as cheaper than it was). A price per million tokens in dollars is a price
    /// per token in micro-dollars, so this is exact integer arithmetic on nano-dollars.
    pub fn cost(self, input: u64, output: u64) -> Usd {
        let nanos = |per_million: f64| (per_million * 1000.0).round() as u128;
        let total = u128::from(input) * nanos(self.input_per_million)
            + u128::from(output) * nanos(self.output_per_million);
        Usd(i64::try_from(total.div_ceil(1000)).unwrap_or(i64::MAX))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    invoke_id: Option<String>,
    alias: String,
    family: Family,
    kind: ModelKind,
    #[serde(default)]
    regions: Vec<String>,
    lifecycle: LifecycleSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_rpm: Option<u32>,
    #[serde(default)]
    ops: BTreeMap<Op, OpSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<TokenPrices>,
}

impl TryFrom<RawModel> for ModelEntry {
    type Error = String;

    fn try_from(r: RawModel) -> Result<ModelEntry, String> {
        Ok(ModelEntry {
            invoke_id: r.invoke_id.unwrap_or_else(|| r.id.clone()),
            id: r.id,
            alias: r.alias,
            kind: r.kind,
            ops: r.ops.keys().copied().collect(),
            family: r.family,
            regions: r.regions,
            lifecycle: r.lifecycle,
            default_rpm: r.default_rpm.unwrap_or(FALLBACK_RPM),
            specs: r.ops,
            tokens: r.tokens,
        })
    }
}

impl From<ModelEntry> for RawModel {
    fn from(m: ModelEntry) -> RawModel {
        RawModel {
            invoke_id: (m.invoke_id != m.id).then_some(m.invoke_id),
            id: m.id,
            alias: m.alias,
            family: m.family,
            kind: m.kind,
            regions: m.regions,
            lifecycle: m.lifecycle,
            default_rpm: Some(m.default_rpm),
            ops: m.specs,
            tokens: m.tokens,
        }
    }
}

impl ModelEntry {
    /// How this model does `op`, if it can.
    pub fn spec(&self, op: Op) -> Option<&OpSpec> {
        self.specs.get(&op)
    }

    /// How to send a `w`×`h` image for `op`: as is, resized to fit, or excluded with a reason.
    pub fn fit(&self, op: Op, w: u32, h: u32) -> Result<Fit, Exclusion> {
        let spec = self.spec(op).ok_or(Exclusion::OpNotSupported { op })?;
        if op.makes_image() {
            return Ok(Fit::AsIs); // nothing is sent: `w`×`h` is only the aspect asked for
        }
        spec.input.fit(w, h, op != Op::Upscale)
    }

    /// The size of the image sent for a `w`×`h` input (after any fit resize).
    pub fn sent_size(&self, op: Op, w: u32, h: u32) -> Result<(u32, u32), Exclusion> {
        Ok(match self.fit(op, w, h)? {
            Fit::AsIs => (w, h),
            Fit::Resize { w, h } => (w, h),
        })
    }

    /// The size the model returns for a `w`×`h` input image.
    pub fn output_size(&self, op: Op, w: u32, h: u32) -> Result<(u32, u32), Exclusion> {
        let (sw, sh) = self.sent_size(op, w, h)?;
        let spec = self.spec(op).ok_or(Exclusion::OpNotSupported { op })?;
        Ok(spec.output.output_size(sw, sh))
    }

    /// Estimated billed price of doing `op` on a `w`×`h` image (one returned image, tier by
    /// output size); `None` when the model cannot take the image.
    pub fn price_for(&self, op: Op, w: u32, h: u32) -> Option<Usd> {
        let (ow, oh) = self.output_size(op, w, h).ok()?;
        Some(self.spec(op)?.price_for_output(ow, oh))
    }

    /// The model's lifecycle on `date`. A model is past end of life on its EOL date.
    pub fn lifecycle_on(&self, date: Date) -> Lifecycle {
        let LifecycleSpec {
            status,
            legacy_date,
            end_of_life: eol,
        } = self.lifecycle;
        if status == LifecycleStatus::Retired || eol.is_some_and(|e| date >= e) {
            Lifecycle::PastEndOfLife { eol }
        } else if status == LifecycleStatus::Legacy || legacy_date.is_some_and(|l| date >= l) {
            Lifecycle::Legacy { eol }
        } else if status == LifecycleStatus::Preview {
            Lifecycle::Preview
        } else {
            Lifecycle::Active
        }
    }

    /// Whether the model can be invoked from `region` (in-region or via its profile).
    pub fn offered_in(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == region)
    }

    /// The region to call the model in for a run in `run_region`: that region when the model
    /// is offered there, else the first of the model's regions that `allowed` lists (empty
    /// `allowed`: the regions of `run_region`'s geography, `us-*` for `us-east-1`). `None`: the
    /// run may not call it anywhere.
    pub fn call_region<'a>(&'a self, run_region: &'a str, allowed: &[String]) -> Option<&'a str> {
        if self.offered_in(run_region) {
            return Some(run_region);
        }
        let geography = |r: &str| r.split('-').next().map(str::to_owned);
        self.regions
            .iter()
            .find(|r| {
                if allowed.is_empty() {
                    geography(r) == geography(run_region)
                } else {
                    allowed.iter().any(|a| a == *r)
                }
            })
            .map(String::as_str)
    }

    /// Checks the entry is self-consistent; the message names the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.alias.is_empty() || self.invoke_id.is_empty() {
            return Err("`id`, `alias` and `invoke_id` must not be empty".into());
        }
        match (self.kind, self.specs.is_empty()) {
            (ModelKind::TextUnderstanding, false) => {
                return Err("a text-understanding model cannot have ops".into());
            }
            (ModelKind::ImageEditing, true) => {
                return Err("an image-editing model needs at least one op".into());
            }
            _ => {}
        }
        for (op, spec) in &self.specs {
            if op.local_only() {
                return Err(format!(
                    "op {op} is done locally only; no model can be given it"
                ));
            }
            self.validate_spec(*op, spec)
                .map_err(|m| format!("op {op}: {m}"))?;
        }
        Ok(())
    }

    fn validate_spec(&self, op: Op, spec: &OpSpec) -> Result<(), String> {
        if self.family != Family::Stability && spec.task.is_none() {
            return Err("Nova and Titan ops need a `task`".into());
        }
        let i = &spec.input;
        match (op.makes_image(), i.takes_no_image()) {
            (true, false) => return Err("takes no image: it has no `input` limits".into()),
            (false, true) => return Err("needs `input` limits".into()),
            (true, true) | (false, false) => {}
        }
        let ordered = i.takes_no_image()
            || (i.min_side <= i.max_side
                && i.min_pixels <= i.max_pixels
                && i.aspect[0] > 0.0
                && i.aspect[0] <= i.aspect[1]
                && i.side_multiple >= 1);
        if !ordered {
            return Err("input limits are not ordered (min <= max, aspect > 0)".into());
        }
        if spec.prices.is_empty() {
            return Err("`prices` needs at least one tier".into());
        }
        let tiers: Vec<u64> = spec
            .prices
            .iter()
            .map(|t| t.up_to_pixels.unwrap_or(u64::MAX))
            .collect();
        if tiers.windows(2).any(|w| w[0] >= w[1]) {
            return Err("price tiers must ascend by `up_to_pixels`, open tier last".into());
        }
        match &spec.output {
            OutputRule::ConfigSizeList { sizes } if sizes.is_empty() => {
                Err("`config-size-list` needs sizes".into())
            }
            OutputRule::Upscale { factor: 0, .. } => Err("upscale factor must be >= 1".into()),
            OutputRule::AspectRatio { sizes }
                if sizes.is_empty()
                    || sizes.iter().any(|(r, s)| {
                        super::spec::closest_ratio(&[(r.clone(), *s)].into(), 1, 1).is_none()
                            || s[0] == 0
                            || s[1] == 0
                    }) =>
            {
                Err("`aspect-ratio` needs sizes keyed by ratios like \"16:9\"".into())
            }
            OutputRule::AspectRatio { .. } if !op.makes_image() => {
                Err("`aspect-ratio` output is for ops that make an image".into())
            }
            _ if op.makes_image() && !matches!(spec.output, OutputRule::AspectRatio { .. }) => {
                Err("an op that makes an image needs the `aspect-ratio` output rule".into())
            }
            _ => Ok(()),
        }
    }
}
