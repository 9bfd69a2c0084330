//! What one model does for one op: request recipe, input limits, output size rule, price tiers.
//!
//! Owns the size arithmetic (does an image fit, how to resize it, what size comes back) and the
//! price tier lookup. Pure data and arithmetic; knows nothing of HTTP or image pixels.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::money::Usd;

/// How one model performs one op, as written in the catalog YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpSpec {
    /// Nova/Titan `taskType` (`BACKGROUND_REMOVAL`, `IMAGE_VARIATION`); absent for Stability
    /// services, where the model id is the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Fixed request parameters; a step's own parameters take precedence.
    #[serde(default)]
    pub params: OpParams,
    /// What an input image must satisfy. Absent for ops that take no image (`generate`).
    #[serde(default = "InputLimits::no_image")]
    pub input: InputLimits,
    pub output: OutputRule,
    /// Price per returned image, by output-pixel tier, ascending; the last tier is open-ended.
    pub prices: Vec<PriceTier>,
}

/// Default request parameters for an op. Only the ones a family understands are sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Nova/Titan `similarityStrength` (0.2–1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// Stability upscalers' `creativity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creativity: Option<f32>,
    /// Nova/Titan `quality` (`standard` | `premium`): selects the price table too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Stability variation services: the body field the step's `similarity` sets
    /// (`control_strength` for Control Structure, `fidelity` for Style Guide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength_field: Option<String>,
    /// inpaint and erase: how the service is told where to work, `described` (a description
    /// it finds: `search_prompt`) or `mask` (a mask image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Stability Search and Replace serving replace-bg: what it finds to repaint (the
    /// backdrop, described), as `search_prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_prompt: Option<String>,
    /// SD3.5's `mode` (`text-to-image`): sent as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Stability services finding a described region: the body field the description goes in
    /// (`search_prompt` by default; Search and Recolor's is `select_prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_field: Option<String>,
    /// Stability services: the body field the input image goes in (`image` by default; Style
    /// Transfer's is `init_image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_field: Option<String>,
    /// variation: the body field the step's `style_image` goes in (Style Transfer:
    /// `style_image`). A model with this field needs the step to give a style image; a model
    /// without it cannot take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style_field: Option<String>,
    /// Nova Canvas OUTPAINTING serving replace-bg: what to keep, described (`maskPrompt`); our
    /// own product is put back over the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_prompt: Option<String>,
    /// Nova Canvas OUTPAINTING's `outPaintingMode` (`DEFAULT` | `PRECISE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outpainting_mode: Option<String>,
}

/// What an input image must satisfy. Pixel bounds are inclusive; aspect is width / height.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputLimits {
    #[serde(default = "one")]
    pub min_side: u32,
    pub max_side: u32,
    #[serde(default)]
    pub min_pixels: u64,
    pub max_pixels: u64,
    /// `[min, max]` of width / height.
    pub aspect: [f64; 2],
    pub formats: Vec<String>,
    /// Largest encoded image accepted, in bytes.
    pub max_bytes: u64,
    /// Each side must be a multiple of this (1 = no rule).
    #[serde(default = "one")]
    pub side_multiple: u32,
}

fn one() -> u32 {
    1
}

impl InputLimits {
    /// The limits of an op that takes no image (text to image): nothing is sent.
    pub fn no_image() -> InputLimits {
        InputLimits {
            min_side: 1,
            max_side: 0,
            min_pixels: 0,
            max_pixels: 0,
            aspect: [1.0, 1.0],
            formats: Vec::new(),
            max_bytes: 0,
            side_multiple: 1,
        }
    }

    /// Whether these are [`InputLimits::no_image`]'s.
    pub fn takes_no_image(&self) -> bool {
        self.max_side == 0
    }
}

/// How the output size follows from the (possibly resized) input that was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OutputRule {
    /// Same width and height as the input sent.
    SameAsInput,
    /// The request names the size; it must be one of `sizes` (Titan). The adapter picks the
    /// size closest to the input's aspect.
    ConfigSizeList { sizes: Vec<[u32; 2]> },
    /// The request names the size within these bounds (Nova): sides `min_side..=max_side`,
    /// multiples of `multiple`, at most `max_pixels`, aspect within `aspect`.
    ConfigSizeRange {
        min_side: u32,
        max_side: u32,
        multiple: u32,
        max_pixels: u64,
        aspect: [f64; 2],
    },
    /// Text to image: the request names an aspect ratio, and the model returns the size listed
    /// for it (`"16:9": [1344, 768]`). The ratio closest to the one asked is used.
    AspectRatio {
        sizes: std::collections::BTreeMap<String, [u32; 2]>,
    },
    /// Each side times `factor`, capped so the long side stays within `max_long_side`.
    Upscale {
        factor: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_long_side: Option<u32>,
    },
}

/// One price tier: applies to outputs of at most `up_to_pixels` (none = any size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to_pixels: Option<u64>,
    #[serde(serialize_with = "ser_usd", deserialize_with = "de_usd")]
    pub usd: Usd,
}

fn ser_usd<S: Serializer>(usd: &Usd, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(usd.as_dollars())
}

fn de_usd<'de, D: Deserializer<'de>>(d: D) -> Result<Usd, D::Error> {
    let dollars = f64::deserialize(d)?;
    Usd::from_dollars(dollars)
        .filter(|u| u.micros() >= 0)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid price {dollars}")))
}

/// How an image will be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    AsIs,
    /// Resize to this size first (down for too-large images, up for too-small ones).
    Resize {
        w: u32,
        h: u32,
    },
}

/// Why an image cannot be sent to a model for an op.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Exclusion {
    #[error("the model cannot do {op}")]
    OpNotSupported { op: crate::catalog::Op },
    #[error("aspect ratio {aspect:.3} is outside {min:.3}..{max:.3}")]
    AspectOutOfRange { aspect: f64, min: f64, max: f64 },
    #[error("{w}x{h} is below the model's minimum input for upscaling")]
    TooSmallToUpscale { w: u32, h: u32 },
    #[error("{w}x{h} cannot be resized to meet the model's input limits")]
    CannotFit { w: u32, h: u32 },
}

impl Exclusion {
    /// Kebab-case reason for reports.
    pub fn reason(&self) -> &'static str {
        match self {
            Exclusion::OpNotSupported { .. } => "excluded-op-not-supported",
            Exclusion::AspectOutOfRange { .. } => "excluded-aspect-ratio",
            Exclusion::TooSmallToUpscale { .. } => "excluded-too-small",
            Exclusion::CannotFit { .. } => "excluded-size",
        }
    }
}

impl InputLimits {
    /// Whether `w`×`h` meets every dimensional rule as is.
    pub fn accepts(&self, w: u32, h: u32) -> bool {
        let px = u64::from(w) * u64::from(h);
        let side_ok = |s: u32| s >= self.min_side && s <= self.max_side;
        side_ok(w)
            && side_ok(h)
            && px >= self.min_pixels
            && px <= self.max_pixels
            && w.is_multiple_of(self.side_multiple)
            && h.is_multiple_of(self.side_multiple)
            && self.aspect_ok(w, h)
    }

    fn aspect_ok(&self, w: u32, h: u32) -> bool {
        let a = f64::from(w) / f64::from(h);
        // A hair of tolerance so exactly 1:4 after rounding still counts.
        a >= self.aspect[0] * 0.999 && a <= self.aspect[1] * 1.001
    }

    /// How to send a `w`×`h` image: as is, resized (aspect kept), or not at all. Too-large
    /// images are downscaled. Too-small ones are upscaled unless `may_grow` is false (the
    /// upscale op: enlarging before a paid upscaler wastes the model, a local one does better).
    pub fn fit(&self, w: u32, h: u32, may_grow: bool) -> Result<Fit, Exclusion> {
        if w == 0 || h == 0 {
            return Err(Exclusion::CannotFit { w, h });
        }
        if !self.aspect_ok(w, h) {
            let aspect = f64::from(w) / f64::from(h);
            let [min, max] = self.aspect;
            return Err(Exclusion::AspectOutOfRange { aspect, min, max });
        }
        if self.accepts(w, h) {
            return Ok(Fit::AsIs);
        }
        let (fw, fh) = (f64::from(w), f64::from(h));
        let px = fw * fh;
        let down = (f64::from(self.max_side) / fw.max(fh))
            .min((self.max_pixels as f64 / px).sqrt())
            .min(1.0);
        let up = (f64::from(self.min_side) / fw.min(fh))
            .max((self.min_pixels as f64 / px).sqrt())
            .max(1.0);
        let (scale, grow) = match (down < 1.0, up > 1.0) {
            (true, true) => return Err(Exclusion::CannotFit { w, h }),
            (false, true) if !may_grow => return Err(Exclusion::TooSmallToUpscale { w, h }),
            (false, true) => (up, true),
            _ => (down, false),
        };
        let side = |v: f64| self.snap((v * scale).max(1.0), grow);
        let (nw, nh) = (side(fw), side(fh));
        if self.accepts(nw, nh) {
            Ok(Fit::Resize { w: nw, h: nh })
        } else {
            Err(Exclusion::CannotFit { w, h })
        }
    }

    /// Rounds a scaled side to an integer multiple of `side_multiple`, up when growing.
    fn snap(&self, v: f64, grow: bool) -> u32 {
        let m = f64::from(self.side_multiple);
        let units = if grow {
            (v / m).ceil()
        } else {
            (v / m).floor()
        };
        (units.max(1.0) * m) as u32
    }
}

impl OutputRule {
    /// Output size for an input of `w`×`h` as sent.
    pub fn output_size(&self, w: u32, h: u32) -> (u32, u32) {
        match self {
            OutputRule::SameAsInput => (w, h),
            OutputRule::ConfigSizeList { sizes } => closest_listed(sizes, w, h),
            OutputRule::ConfigSizeRange {
                min_side,
                max_side,
                multiple,
                max_pixels,
                aspect,
            } => range_size(
                w,
                h,
                (*min_side, *max_side),
                *multiple,
                *max_pixels,
                *aspect,
            ),
            OutputRule::AspectRatio { sizes } => {
                let (w, h) = if w == 0 || h == 0 { (1, 1) } else { (w, h) };
                let (_, size) = closest_ratio(sizes, w, h).unwrap_or(("", [w, h]));
                (size[0], size[1])
            }
            OutputRule::Upscale {
                factor,
                max_long_side,
            } => {
                let long = f64::from(w.max(h));
                let cap = max_long_side.map_or(f64::INFINITY, |m| f64::from(m) / long);
                let f = f64::from(*factor).min(cap).max(1.0);
                (
                    (f64::from(w) * f).round() as u32,
                    (f64::from(h) * f).round() as u32,
                )
            }
        }
    }
}

/// The listed aspect ratio (`"16:9"`) closest to `w`:`h`, and its size; `None` when none is
/// listed or none parses.
pub fn closest_ratio(
    sizes: &std::collections::BTreeMap<String, [u32; 2]>,
    w: u32,
    h: u32,
) -> Option<(&str, [u32; 2])> {
    let target = (f64::from(w.max(1)) / f64::from(h.max(1))).ln();
    sizes
        .iter()
        .filter_map(|(name, size)| Some((name.as_str(), *size, ratio_ln(name)?)))
        .min_by(|a, b| (a.2 - target).abs().total_cmp(&(b.2 - target).abs()))
        .map(|(name, size, _)| (name, size))
}

/// `ln(w / h)` of a ratio written `w:h`.
fn ratio_ln(ratio: &str) -> Option<f64> {
    let (w, h) = ratio.split_once(':')?;
    let (w, h): (f64, f64) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w > 0.0 && h > 0.0).then(|| (w / h).ln())
}

/// The listed size whose aspect is closest to `w`×`h`; ties go to the closest pixel count.
fn closest_listed(sizes: &[[u32; 2]], w: u32, h: u32) -> (u32, u32) {
    let target = (f64::from(w) / f64::from(h)).ln();
    let px = f64::from(w) * f64::from(h);
    let key = |s: &[u32; 2]| {
        let a = (f64::from(s[0]) / f64::from(s[1])).ln();
        let p = f64::from(s[0]) * f64::from(s[1]);
        // Aspect error dominates; pixel distance only separates (near-)equal aspects.
        ((a - target).abs() * 1000.0).round() * 1e12 + (p - px).abs()
    };
    sizes
        .iter()
        .min_by(|a, b| key(a).total_cmp(&key(b)))
        .map_or((w, h), |s| (s[0], s[1]))
}

/// A legal configurable size as close as possible to the input's size and aspect.
fn range_size(
    w: u32,
    h: u32,
    (min_side, max_side): (u32, u32),
    multiple: u32,
    max_pixels: u64,
    aspect: [f64; 2],
) -> (u32, u32) {
    let a = (f64::from(w) / f64::from(h)).clamp(aspect[0], aspect[1]);
    let px = (f64::from(w) * f64::from(h)).min(max_pixels as f64);
    let m = multiple.max(1);
    let snap = |v: f64| {
        let v = v.clamp(f64::from(min_side), f64::from(max_side));
        ((v / f64::from(m)).round() as u32 * m).clamp(min_side.div_ceil(m) * m, max_side / m * m)
    };
    let (mut ow, mut oh) = (snap((px * a).sqrt()), snap((px / a).sqrt()));
    while u64::from(ow) * u64::from(oh) > max_pixels {
        if ow >= oh && ow - m >= min_side {
            ow -= m;
        } else if oh - m >= min_side {
            oh -= m;
        } else {
            break;
        }
    }
    (ow, oh)
}

impl OpSpec {
    /// The price of one returned image of `w`×`h` output pixels.
    pub fn price_for_output(&self, w: u32, h: u32) -> Usd {
        let px = u64::from(w) * u64::from(h);
        self.prices
            .iter()
            .find(|t| t.up_to_pixels.is_none_or(|max| px <= max))
            .or(self.prices.last())
            .map_or(Usd::ZERO, |t| t.usd)
    }
}
