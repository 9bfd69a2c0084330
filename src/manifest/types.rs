//! The validated, domain-level pipeline description that the rest of retouch consumes.
//!
//! Nothing here is parsed from YAML directly: `manifest::load` turns the raw serde types into these
//! after every check has passed, so a value of these types is always valid (ranges checked, paths
//! resolved against the manifest's folder, defaults filled in). Later features add fields here; the
//! engine must never see a `Raw*` type.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::catalog::Op;
pub use crate::money::Usd;

/// A fully validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file as given on the command line.
    pub path: PathBuf,
    /// The folder holding the manifest; every relative path in it is relative to this folder.
    pub base_dir: PathBuf,
    /// Format version; only `1` exists.
    pub version: u32,
    /// Pipeline name, used in the report and summaries.
    pub name: String,
    /// Where the photos come from, in manifest order.
    pub inputs: Vec<InputSpec>,
    /// Glob patterns of inputs to leave out (matched against each input's path relative to its
    /// glob's base folder, and against its file name).
    pub exclude: Vec<String>,
    /// Where results go and in which format.
    pub output: OutputSpec,
    /// The ordered steps every image goes through.
    pub steps: Vec<Step>,
    /// Run-time limits.
    pub limits: Limits,
    /// Where the CSV report is written (default `<output.dir>/report.csv`). An S3 report is
    /// uploaded when the run ends; its local copy is kept in [`Manifest::state_dir`].
    pub report: Place,
    /// Spending caps (all optional; no cap means unlimited).
    pub budget: Budget,
    /// AWS settings for remote models.
    pub aws: AwsSettings,
    /// A user catalog file (`catalog:`) that overrides or extends the built-in one, joined onto
    /// `base_dir`.
    pub catalog: Option<PathBuf>,
    /// Price overrides per model (`prices: { nova-canvas: 0.05 }`), keyed by canonical model id,
    /// USD per output image.
    pub prices: BTreeMap<String, Usd>,
    /// The state folder (`state:`, default `<manifest folder>/.retouch`): run history, step
    /// cache, daily spend. Several pipelines may share one.
    pub state: PathBuf,
    /// State shared by every machine the catalogue runs on (`shared:`).
    pub shared: SharedState,
}

impl Manifest {
    /// This pipeline's own working folder inside the state folder, `<state>/<name>`: where a
    /// report bound for S3 is kept locally.
    pub fn state_dir(&self) -> PathBuf {
        self.state.join(&self.name)
    }

    /// Whether any input, the output or the report lives in S3.
    pub fn uses_s3(&self) -> bool {
        self.inputs
            .iter()
            .any(|i| matches!(i, InputSpec::S3 { .. } | InputSpec::S3Prompts { .. }))
            || self.output.dir.is_s3()
            || self.report.is_s3()
            || self.shared.cache.is_some()
    }
}

/// `shared:`: what every machine running this catalogue shares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedState {
    /// `cache:`: an S3 prefix holding paid step results (`ledger::shared`).
    pub cache: Option<S3Location>,
    /// `dynamodb_table:`: the table coordinating every machine (`ledger::coordination`):
    /// claims on paid steps, the run and daily caps, each model's rpm.
    pub dynamodb_table: Option<String>,
}

/// `budget:`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Budget {
    /// Hard cap on what one run may be billed.
    pub max_usd: Option<Usd>,
    /// Hard cap on what one image (all its steps) may be billed in one run.
    pub per_image_max_usd: Option<Usd>,
    /// Hard cap on what all runs of this pipeline's state may be billed per UTC day.
    pub daily_max_usd: Option<Usd>,
}

/// `aws:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsSettings {
    /// Region for Bedrock (and S3); default from the environment / profile, else `us-east-1`.
    pub region: Option<String>,
    /// `aws.regions`: the regions models may be called in (a model offered in the run's region
    /// is called there; others in the first of their regions listed here). Empty: the regions
    /// of the run region's own geography (`us-*` for `us-east-1`), so images never leave it
    /// unless the manifest says so.
    pub regions: Vec<String>,
    /// Named profile; otherwise the default credential chain.
    pub profile: Option<String>,
    /// `aws.s3:`: how S3 is reached.
    pub s3: S3Endpoint,
}

/// `aws.s3:`. Without an endpoint, the SDK's own (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, or
/// AWS itself) is used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Endpoint {
    /// An S3-compatible store (`http://minio.local:9000`).
    pub endpoint_url: Option<String>,
    /// Address buckets in the path (`endpoint/bucket/key`), as MinIO and Ceph usually need.
    pub path_style: bool,
}

/// An object or key prefix in S3: `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct S3Location {
    pub bucket: String,
    /// The key, or a prefix ending in `/` (empty for the whole bucket).
    pub key: String,
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// A folder or file on local disk, or a prefix or object in S3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// Already joined onto the manifest's folder.
    Local(PathBuf),
    S3(S3Location),
}

impl Place {
    pub fn is_s3(&self) -> bool {
        matches!(self, Place::S3(_))
    }

    /// The local path, if this is one.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Place::Local(p) => Some(p),
            Place::S3(_) => None,
        }
    }

    /// `name` inside this folder or prefix.
    pub fn join(&self, name: &str) -> Place {
        match self {
            Place::Local(dir) => Place::Local(dir.join(name)),
            Place::S3(s3) => {
                let mut key = s3.key.clone();
                if !key.is_empty() && !key.ends_with('/') {
                    key.push('/');
                }
                key.push_str(name);
                Place::S3(S3Location {
                    bucket: s3.bucket.clone(),
                    key,
                })
            }
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Local(p) => write!(f, "{}", p.display()),
            Place::S3(s3) => s3.fmt(f),
        }
    }
}

/// One entry of `inputs:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// A local glob as written in the manifest (`../samples/**/*.jpg`), relative to `base_dir`
    /// unless absolute. `sources` splits it into a literal base folder and a pattern.
    LocalGlob { pattern: String },
    /// `s3://bucket/prefix/` (every image key under the prefix) or `s3://bucket/prefix/**/*.jpg`
    /// (keys below the prefix matching the glob). `prefix` is the literal part, empty or ending in
    /// `/`; outputs mirror each key's path relative to it.
    S3 {
        bucket: String,
        prefix: String,
        pattern: Option<String>,
    },
    /// A prompts file (CSV, YAML, JSON or JSONL) for a pipeline whose first step is `generate`,
    /// relative to `base_dir` unless absolute: each row is one input.
    Prompts { path: String },
    /// A prompts file in S3 (`s3://bucket/prompts.csv`).
    S3Prompts { bucket: String, key: String },
}

impl fmt::Display for InputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputSpec::LocalGlob { pattern } => f.write_str(pattern),
            InputSpec::Prompts { path } => f.write_str(path),
            InputSpec::S3Prompts { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            InputSpec::S3 {
                bucket,
                prefix,
                pattern,
            } => {
                let pattern = pattern.as_deref().unwrap_or("");
                write!(f, "s3://{bucket}/{prefix}{pattern}")
            }
        }
    }
}

/// `output:`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    /// Output folder (joined onto `base_dir`) or S3 prefix (ending in `/` unless empty).
    pub dir: Place,
    pub format: OutputFormat,
    /// 1..=100, used by jpeg and webp; default 90.
    pub quality: u8,
    /// `presign: 24h`: the report gains an `output_url` column with a presigned GET URL, valid
    /// this long (at most 7 days), for each S3 output.
    pub presign: Option<Duration>,
    /// `sidecar: true`: a JSON file of the output's provenance next to it (`<output>.json`).
    pub sidecar: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Png,
    Jpeg,
    Webp,
}

impl OutputFormat {
    /// The file extension written for this format (no dot).
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
        }
    }

    /// The MIME type, for sinks that record one.
    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }

    /// Whether this format can carry an alpha channel.
    pub fn has_alpha(self) -> bool {
        !matches!(self, OutputFormat::Jpeg)
    }
}

/// One step of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// 0-based position in `steps:` (the report prints it 1-based).
    pub index: usize,
    pub op: Op,
    /// The models this step may use, in manifest order. Never empty.
    pub models: Vec<ModelRef>,
    /// What happens when no permitted remote model can serve an image.
    pub fallback: Fallback,
    /// The op's parameters.
    pub params: OpParams,
    /// Prompt for remote models that take one (`prompt:`); adapters supply a sensible default.
    pub prompt: Option<String>,
    /// Negative prompt for remote models that take one (`negative_prompt:`).
    pub negative_prompt: Option<String>,
    /// How close a regenerating model must stay to the input (`similarity:`, 0.2..=1.0).
    pub similarity: Option<f32>,
    /// Redo the step with other models when its result's quality score is too low
    /// (`escalate:`).
    pub escalate: Option<Escalate>,
    /// Have a vision model grade the step's results (`qa:`).
    pub grader: Option<Grader>,
}

/// `qa: { model, below, rubric }`: a vision model grades the step's results through Bedrock
/// `Converse`; its grade becomes the result's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Grader {
    /// A catalog model that reads images and is priced per token (canonical id).
    pub model: String,
    /// Grade only results whose free local score is below this (`None`: grade every result).
    pub below: Option<f32>,
    /// What to judge; the op's default rubric when `None`.
    pub rubric: Option<String>,
}

impl Grader {
    /// Whether a result whose local checks found `qa` is sent to the grader.
    pub fn wants(&self, qa: Option<&crate::qa::Qa>) -> bool {
        match (self.below, qa) {
            (Some(below), Some(qa)) => qa.local_score() < below,
            _ => true,
        }
    }
}

/// `escalate: { below, to }`: when a step's result scores below `below`, the step is redone
/// with the models of `to` (cheapest first for the image, ties in list order) until a result
/// passes; when none does, the best-scoring result is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalate {
    /// The pass mark: a result whose `qa` score is below it is redone.
    pub below: f32,
    /// Remote models (canonical catalog ids) that may redo the step. Never empty.
    pub to: Vec<String>,
}

impl Escalate {
    /// Whether a result with this quality passes (an unmeasured result is never redone).
    pub fn passes(&self, qa: Option<&crate::qa::Qa>) -> bool {
        qa.is_none_or(|q| q.score() >= self.below)
    }
}

impl Step {
    /// The step as its escalation models would serve it (routing only): `models` are those of
    /// `escalate.to`, and when none can take an image it is skipped. `None` without `escalate:`.
    pub fn escalation_ladder(&self) -> Option<Step> {
        let escalate = self.escalate.as_ref()?;
        Some(Step {
            models: escalate.to.iter().cloned().map(ModelRef::Remote).collect(),
            fallback: Fallback::Skip,
            escalate: None,
            grader: None,
            ..self.clone()
        })
    }

    /// Every remote model this step may call (canonical ids): its `models`, then the models of
    /// `escalate.to`, then its grader.
    pub fn remote_models(&self) -> impl Iterator<Item = &str> {
        let models = self.models.iter().filter_map(|m| match m {
            ModelRef::Remote(id) => Some(id.as_str()),
            ModelRef::Local => None,
        });
        let escalation = self
            .escalate
            .iter()
            .flat_map(|e| e.to.iter().map(String::as_str));
        models.chain(escalation)
    }

    /// The size of this step's result for an input of `w`×`h`: upscaling grows it, framing
    /// sets it, every other op keeps it (remote results are mapped back to the input's size).
    pub fn output_size(&self, (w, h): (u32, u32)) -> (u32, u32) {
        match &self.params {
            OpParams::Upscale(p) => p.target.output_size(w, h),
            OpParams::Frame(p) => p.options.frame_size(),
            OpParams::Outpaint(p) => p.margins((w, h)).extended((w, h)),
            // About one megapixel at the aspect asked (the model decides; for estimates).
            OpParams::Generate(p) => {
                let ratio = f64::from(p.aspect.0) / f64::from(p.aspect.1);
                let side = |v: f64| ((v / 64.0).round() * 64.0).max(64.0) as u32;
                (
                    side((1_048_576.0 * ratio).sqrt()),
                    side((1_048_576.0 / ratio).sqrt()),
                )
            }
            _ => (w, h),
        }
    }
}

/// A model a step may use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelRef {
    /// The built-in local implementation (free, always available).
    Local,
    /// A remote model, by its canonical catalog id.
    Remote(String),
}

impl ModelRef {
    /// The name of the built-in implementation, in manifests, reports and cache records.
    pub const LOCAL: &'static str = "local";

    pub fn is_local(&self) -> bool {
        matches!(self, ModelRef::Local)
    }

    /// Whether a report's or cache record's model names a local method: `local` (the classical
    /// method and every other local op) or `local:<network>`.
    pub fn is_local_name(model: &str) -> bool {
        model == ModelRef::LOCAL
            || model
                .strip_prefix(ModelRef::LOCAL)
                .is_some_and(|rest| rest.starts_with(':'))
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Local => f.write_str(ModelRef::LOCAL),
            ModelRef::Remote(id) => f.write_str(id),
        }
    }
}

/// `fallback:` of a step: what to do when no permitted remote model can serve an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// Run the built-in local implementation (the default).
    #[default]
    Local,
    /// Leave the image as it is for this step (row status `skipped`).
    Skip,
    /// Fail the image.
    Fail,
}

/// Per-op parameters; the variant always matches `Step::op`.
#[derive(Debug, Clone, PartialEq)]
pub enum OpParams {
    RemoveBg(RemoveBgParams),
    FixLighting(FixLightingParams),
    Upscale(UpscaleParams),
    Frame(FrameParams),
    ReplaceBg(ReplaceBgParams),
    Outpaint(OutpaintParams),
    /// `inpaint` and `erase`: the region, described (`mask_prompt`).
    Masked(MaskedParams),
    /// `variation`: the step's `prompt` and `similarity`, and a style picture.
    Variation(VariationParams),
    /// `generate`: defaults for prompts-file rows that do not say.
    Generate(GenerateParams),
}

/// `variation` parameters (the step's `prompt` and `similarity` are on [`Step`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VariationParams {
    /// `style_image:`: a picture whose look the result takes (models whose catalog spec has a
    /// `style_field`, e.g. Style Transfer).
    pub style: Option<StyleImage>,
}

/// A variation step's style picture: `path` is absolute (joined onto the manifest's folder);
/// the file is read and decoded when the run starts, and `picture` set then.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleImage {
    pub path: PathBuf,
    pub picture: Option<std::sync::Arc<Picture>>,
}

/// A picture a step sends with every image, read once.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// blake3 of the file's bytes, in hex: the step's cache key includes it.
    pub digest: String,
    pub pixels: image::RgbaImage,
}

/// `generate` parameters. The prompt itself comes from each row of the prompts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateParams {
    /// The aspect ratio asked for (`aspect: "4:5"`, default 1:1); a row's `aspect_ratio` wins.
    pub aspect: (u32, u32),
    /// The seed: set per row (given, or derived from the row so a rerun asks the same).
    pub seed: Option<u32>,
}

/// The region an `inpaint` or `erase` step changes.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedParams {
    pub region: MaskRegion,
}

/// How an `inpaint` or `erase` step knows where to work.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskRegion {
    /// Described (`mask_prompt`): the model finds it (Stability's `search_prompt`), e.g. "the
    /// price tag".
    Described(String),
    /// A mask file per image (`mask`): a path template relative to the manifest's folder
    /// (`../masks/{path}.png`); white marks what to change. `mask` is the file read for the
    /// image at hand (set per image by the scheduler; `None` in the manifest).
    File {
        template: String,
        mask: Option<std::sync::Arc<Mask>>,
    },
}

/// One image's mask, read and checked: white (at least half) marks what to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// blake3 of the file's bytes, in hex: the step's cache key includes it.
    pub digest: String,
    pub pixels: image::GrayImage,
}

impl MaskedParams {
    /// The description, when the region is described.
    pub fn described(&self) -> Option<&str> {
        match &self.region {
            MaskRegion::Described(text) => Some(text),
            MaskRegion::File { .. } => None,
        }
    }

    /// The image's mask, once read.
    pub fn mask(&self) -> Option<&std::sync::Arc<Mask>> {
        match &self.region {
            MaskRegion::File { mask, .. } => mask.as_ref(),
            MaskRegion::Described(_) => None,
        }
    }
}

/// `outpaint` parameters: fixed margins, or the margins that reach an aspect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutpaintParams {
    Margins(crate::ops::outpaint::Margins),
    Aspect(u32, u32),
}

impl OutpaintParams {
    /// The margins for a `w`×`h` input.
    pub fn margins(&self, size: (u32, u32)) -> crate::ops::outpaint::Margins {
        match *self {
            OutpaintParams::Margins(m) => m,
            OutpaintParams::Aspect(aw, ah) => {
                crate::ops::outpaint::Margins::to_aspect(size, (aw, ah))
            }
        }
    }
}

/// `replace-bg` parameters. The remote routes paint a scene from the step's `prompt`; the local
/// one composites onto `behind`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaceBgParams {
    /// What the local route puts behind the product (`None`: the step runs remotely only).
    pub behind: Option<NewBackground>,
    /// Contact shadow strength, 0 (none) to 1.
    pub shadow: f32,
}

/// `background:` (a colour) or `background_image:` (a picture file) of a replace-bg step.
#[derive(Debug, Clone, PartialEq)]
pub enum NewBackground {
    Colour(Rgb),
    /// `path` is absolute (joined onto the manifest's folder); the file is read when the run
    /// starts, and `digest` (blake3 of its bytes, hex) set then, so the step cache knows when the
    /// picture changes.
    Image {
        path: PathBuf,
        digest: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoveBgParams {
    /// Flatten onto this colour instead of leaving transparency.
    pub background: Option<Rgb>,
    /// Which local method runs when the step runs locally (`local_model:`).
    pub local_model: LocalMethod,
}

/// How local remove-bg finds the product.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LocalMethod {
    /// The best installed segmentation network, else the classical method.
    #[default]
    Auto,
    /// The backdrop model alone (no network).
    Classical,
    /// This network (by its catalog name); it must be installed.
    Network(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FixLightingParams {
    /// 0..=1 blend between the original (0) and the fully corrected image (1). Default 0.8.
    pub strength: f32,
}

/// `frame` parameters: a preset's framing, or explicit keys (explicit keys refine a preset
/// within its rules; the manifest check refuses any that would break them).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameParams {
    pub preset: Option<crate::marketplace::Preset>,
    pub options: crate::ops::frame::FrameOptions,
}

impl FrameParams {
    /// The rules results are checked against: the preset's, else those the keys ask for (exact
    /// size, aspect and, unless the photo's backdrop is kept, the backdrop colour).
    pub fn rules(&self) -> crate::marketplace::Rules {
        use crate::ops::frame::Backdrop;
        if let Some(p) = self.preset {
            return p.rules();
        }
        let o = &self.options;
        let (w, h) = o.frame_size();
        crate::marketplace::Rules {
            background: (o.backdrop == Backdrop::Cut).then_some(o.background),
            min_fill: 0.0,
            min_long_side: w.max(h),
            max_long_side: w.max(h),
            aspect: Some(o.aspect),
            jpeg: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpscaleParams {
    pub target: UpscaleTarget,
    /// 0..=1 amount of unsharp masking after resampling. Default 0 (none).
    pub sharpen: f32,
}

/// How big an upscaled image becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpscaleTarget {
    /// Multiply both sides; > 1 and <= 8.
    Factor(f32),
    /// Scale so the sides reach these bounds: the short side at least `min_side`, and the long
    /// side at most `max_side` (each optional, at least one given). Never shrinks; never more
    /// than 8x.
    Sides {
        min_side: Option<u32>,
        max_side: Option<u32>,
    },
}

impl UpscaleTarget {
    /// The output size for an input of `w`×`h`.
    pub fn output_size(&self, w: u32, h: u32) -> (u32, u32) {
        let scale = match *self {
            UpscaleTarget::Factor(f) => f as f64,
            UpscaleTarget::Sides { min_side, max_side } => {
                let short = w.min(h).max(1) as f64;
                let long = w.max(h).max(1) as f64;
                let mut s = match (min_side, max_side) {
                    (Some(min), _) => min as f64 / short,
                    (None, Some(max)) => max as f64 / long,
                    (None, None) => 1.0,
                };
                if let Some(max) = max_side {
                    s = s.min(max as f64 / long);
                }
                s.clamp(1.0, 8.0)
            }
        };
        let ow = ((w as f64) * scale).round().max(1.0) as u32;
        let oh = ((h as f64) * scale).round().max(1.0) as u32;
        (ow, oh)
    }
}

/// An sRGB colour (`"#RRGGBB"` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub [u8; 3]);

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.0;
        write!(f, "#{r:02X}{g:02X}{b:02X}")
    }
}

/// `limits:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Images in flight at once; 1..=1024, default 8.
    pub concurrency: usize,
    /// Inputs read ahead of processing (`downloads:`, 1..=1024, default 16): their reads run
    /// while earlier images are processed, so network latency to S3 overlaps CPU work. Bounds
    /// the encoded bytes held in memory beyond the images in flight.
    pub downloads: usize,
    /// Requests per minute per remote model (`rpm: { nova-canvas: 60 }`), keyed by canonical
    /// model id; models not listed use the catalog's default.
    pub rpm: BTreeMap<String, u32>,
    /// Attempts per remote call before falling back (`attempts:`, 1..=10, default 4).
    pub attempts: u32,
    /// Largest input accepted, in megapixels (`max_megapixels:`, default 100).
    pub max_megapixels: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: 8,
            downloads: 16,
            rpm: BTreeMap::new(),
            attempts: 4,
            max_megapixels: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_scales_both_sides() {
        assert_eq!(UpscaleTarget::Factor(2.0).output_size(300, 200), (600, 400));
        assert_eq!(UpscaleTarget::Factor(1.5).output_size(101, 10), (152, 15));
    }

    #[test]
    fn sides_reach_min_and_respect_max() {
        let t = UpscaleTarget::Sides {
            min_side: Some(1000),
            max_side: None,
        };
        assert_eq!(t.output_size(500, 250), (2000, 1000));
        let t = UpscaleTarget::Sides {
            min_side: Some(1000),
            max_side: Some(1500),
        };
        assert_eq!(t.output_size(500, 250), (1500, 750));
        let t = UpscaleTarget::Sides {
            min_side: None,
            max_side: Some(1000),
        };
        assert_eq!(t.output_size(500, 250), (1000, 500));
        // Never shrinks, never beyond 8x.
        assert_eq!(t.output_size(2000, 100), (2000, 100));
        let t = UpscaleTarget::Sides {
            min_side: Some(10_000),
            max_side: None,
        };
        assert_eq!(t.output_size(100, 100), (800, 800));
    }
}
