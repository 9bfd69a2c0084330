//! The content-addressed step cache: what identifies a step's result ([`StepKey`]), and where
//! the result bytes live ([`BlobStore`]).
//!
//! A key is a blake3 chain: the first link is the hash of the image's input bytes, and each step
//! hashes the previous link with its [`StepSpec`] (op, canonical parameters, model id, adapter
//! version, prompt, similarity). A change at step 3 therefore leaves the keys of steps 1–2 alone.
//! The spec is serialised canonically (fixed field order, floats as their bit patterns, never
//! `Debug` output), so a key is stable across builds and machines. Blobs are immutable files named
//! by the blake3 of their bytes, written atomically (temp file + rename) and verified on read, so
//! a crash can leave at most a stray temp file, never a corrupt blob. This module never decides
//! whether to call a model; the scheduler does, after a lookup in the [`super::Store`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::LedgerError;
use crate::manifest::{
    MaskRegion, NewBackground, OpParams, OutpaintParams, Rgb, Step, UpscaleTarget,
};

/// Everything that changes one step's result, given its input. Serialised canonically to make a
/// [`StepKey`]; field order is part of the key, so never reorder fields (append only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepSpec {
    /// `remove-bg`, `fix-lighting`, `upscale`.
    pub op: String,
    /// The op's parameters as canonical text (floats as `f32` bit patterns in hex).
    pub params: BTreeMap<String, String>,
    /// `local` or the canonical model id.
    pub model: String,
    /// The adapter (or local ops) version serving `model`.
    pub adapter_version: u32,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    /// `similarity` as its `f32` bit pattern in hex.
    pub similarity: Option<String>,
}

/// The spec of `step` when served by `model` (`local` or a canonical model id) through the
/// adapter (or local ops) at `adapter_version` (the providers own their versions). The model
/// that serves a step depends on routing, so the scheduler builds this after routing.
pub fn spec_for(step: &Step, model: &str, adapter_version: u32) -> StepSpec {
    StepSpec {
        op: step.op.as_str().to_string(),
        params: canonical_params(&step.params),
        model: model.to_string(),
        adapter_version,
        prompt: step.prompt.clone(),
        negative_prompt: step.negative_prompt.clone(),
        similarity: step.similarity.map(float),
    }
}

fn float(v: f32) -> String {
    format!("{:08x}", v.to_bits())
}

fn canonical_params(params: &OpParams) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match params {
        OpParams::RemoveBg(p) => {
            let bg = p
                .background
                .map_or_else(|| "none".into(), |c| c.to_string());
            out.insert("background".into(), bg);
        }
        OpParams::FixLighting(p) => {
            out.insert("strength".into(), float(p.strength));
        }
        OpParams::ReplaceBg(p) => {
            let behind = match &p.behind {
                None => "none".to_owned(),
                Some(NewBackground::Colour(c)) => c.to_string(),
                Some(NewBackground::Image { path, digest }) => format!(
                    "{}@{}",
                    path.display(),
                    digest.as_deref().unwrap_or("unread")
                ),
            };
            out.insert("background".into(), behind);
            out.insert("shadow".into(), float(p.shadow));
        }
        OpParams::Masked(p) => match &p.region {
            MaskRegion::Described(text) => {
                out.insert("mask_prompt".into(), text.clone());
            }
            MaskRegion::File { template, mask } => {
                let digest = mask.as_ref().map_or("unread", |m| m.digest.as_str());
                out.insert("mask".into(), format!("{template}@{digest}"));
            }
        },
        OpParams::Variation(p) => {
            if let Some(style) = &p.style {
                let digest = style
                    .picture
                    .as_ref()
                    .map_or("unread", |p| p.digest.as_str());
                out.insert(
                    "style_image".into(),
                    format!("{}@{digest}", style.path.display()),
                );
            }
        }
        OpParams::Generate(p) => {
            out.insert("aspect".into(), format!("{}:{}", p.aspect.0, p.aspect.1));
            if let Some(seed) = p.seed {
                out.insert("seed".into(), seed.to_string());
            }
        }
        OpParams::Outpaint(p) => {
            let text = match p {
                OutpaintParams::Margins(m) => {
                    format!("l{} r{} u{} d{}", m.left, m.right, m.up, m.down)
                }
                OutpaintParams::Aspect(w, h) => format!("{w}:{h}"),
            };
            out.insert("extend".into(), text);
        }
        OpParams::Frame(p) => {
            let o = &p.options;
            let preset = p.preset.map_or("none", |p| p.as_str());
            out.insert("preset".into(), preset.into());
            out.insert("aspect".into(), format!("{}:{}", o.aspect.0, o.aspect.1));
            out.insert("fill".into(), float(o.fill));
            out.insert("size".into(), o.size.to_string());
            out.insert("background".into(), Rgb(o.background).to_string());
            out.insert(
                "backdrop".into(),
                format!("{:?}", o.backdrop).to_lowercase(),
            );
        }
        OpParams::Upscale(p) => {
            out.insert("sharpen".into(), float(p.sharpen));
            match p.target {
                UpscaleTarget::Factor(f) => {
                    out.insert("factor".into(), float(f));
                }
                UpscaleTarget::Sides { min_side, max_side } => {
                    let side = |s: Option<u32>| s.map_or_else(|| "none".into(), |v| v.to_string());
                    out.insert("min_side".into(), side(min_side));
                    out.insert("max_side".into(), side(max_side));
                }
            }
        }
    }
    out
}

/// The pseudo-step that turns an image's last result into its output file: chained after the
/// last step's key, it names what an output file holds (`encoder_version`: the codec's).
pub fn output_spec(format_extension: &str, quality: u8, encoder_version: u32) -> StepSpec {
    let mut params = BTreeMap::new();
    params.insert("format".into(), format_extension.to_string());
    params.insert("quality".into(), quality.to_string());
    StepSpec {
        op: "output".into(),
        params,
        model: String::new(),
        adapter_version: encoder_version,
        prompt: None,
        negative_prompt: None,
        similarity: None,
    }
}

/// The first link of an image's chain: the blake3 hash of its input bytes.
pub fn input_hash(bytes: &[u8]) -> blake3::Hash {
    blake3::hash(bytes)
}

/// The cache key of one image at one step (32 bytes of blake3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepKey(pub [u8; 32]);

impl StepKey {
    /// Domain separation, so a key can never equal a plain content hash.
    const DOMAIN: &'static [u8] = b"retouch step key v1\0";

    /// The key of a step whose input is identified by `previous` (the input hash for step 1,
    /// else the previous step's key via [`StepKey::as_hash`]).
    pub fn chain(previous: blake3::Hash, spec: &StepSpec) -> StepKey {
        let canonical = serde_json::to_vec(spec).expect("StepSpec serialises to JSON");
        let mut h = blake3::Hasher::new();
        h.update(Self::DOMAIN);
        h.update(previous.as_bytes());
        h.update(&(canonical.len() as u64).to_le_bytes());
        h.update(&canonical);
        StepKey(*h.finalize().as_bytes())
    }

    /// The keys of every step of an image, in order.
    pub fn chain_all(input: &[u8], specs: &[StepSpec]) -> Vec<StepKey> {
        let mut prev = input_hash(input);
        specs
            .iter()
            .map(|spec| {
                let key = StepKey::chain(prev, spec);
                prev = key.as_hash();
                key
            })
            .collect()
    }

    /// This key as a link for the next step.
    pub fn as_hash(&self) -> blake3::Hash {
        blake3::Hash::from_bytes(self.0)
    }

    pub fn to_hex(&self) -> String {
        self.as_hash().to_hex().to_string()
    }
}

/// Immutable content-addressed files under `<state>/cache/ab/cdef…` (the blake3 hex of the bytes).
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// The blob folder `dir` (created on first `put`).
    pub fn new(dir: &Path) -> BlobStore {
        BlobStore {
            root: dir.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `hex` lives (whether or not it exists).
    pub fn path(&self, hex: &str) -> PathBuf {
        let (head, tail) = hex.split_at(hex.len().min(2));
        self.root.join(head).join(tail)
    }

    /// Stores `bytes` and returns their blake3 hex. Atomic: written to a temp file in the same
    /// folder, synced, then renamed, so readers see the whole blob or none. Idempotent.
    pub fn put(&self, bytes: &[u8]) -> Result<String, LedgerError> {
        let hex = blake3::hash(bytes).to_hex().to_string();
        let path = self.path(&hex);
        if path.is_file() {
            return Ok(hex);
        }
        let dir = path.parent().expect("blob path has a parent");
        let io = |source| LedgerError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = crate::atomic_file::temp_in(dir, ".tmp-", "").map_err(io)?;
        tmp.write_all(bytes).map_err(io)?;
        crate::atomic_file::commit(tmp, &path).map_err(io)?;
        Ok(hex)
    }

    /// The bytes of blob `hex`, if present and intact. A blob whose bytes no longer hash to its
    /// name is removed and reported missing, so a damaged cache costs a recompute, never a
    /// corrupt output.
    pub fn get(&self, hex: &str) -> Option<Vec<u8>> {
        if !is_hex(hex) {
            return None;
        }
        let path = self.path(hex);
        let bytes = std::fs::read(&path).ok()?;
        if blake3::hash(&bytes).to_hex().as_str() == hex {
            Some(bytes)
        } else {
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Whether blob `hex` exists (not verified).
    pub fn contains(&self, hex: &str) -> bool {
        is_hex(hex) && self.path(hex).is_file()
    }

    /// Every file under the blob folder (blobs and stray temp files) with its name as hex (temp
    /// files get a name that is not hex) and its modification time in unix seconds.
    pub(crate) fn list(&self) -> Vec<(PathBuf, String, i64)> {
        let mut out = Vec::new();
        let Ok(heads) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for head in heads.flatten() {
            let Ok(files) = std::fs::read_dir(head.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = format!(
                    "{}{}",
                    head.file_name().to_string_lossy(),
                    file.file_name().to_string_lossy()
                );
                let mtime = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                out.push((file.path(), name, mtime));
            }
        }
        out
    }
}

pub(super) fn is_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Op;
    use crate::manifest::{
        Fallback, FixLightingParams, ModelRef, RemoveBgParams, Rgb, UpscaleParams,
    };

    fn step(index: usize, params: OpParams) -> Step {
        let op = match params {
            OpParams::RemoveBg(_) => Op::RemoveBg,
            OpParams::FixLighting(_) => Op::FixLighting,
            OpParams::Upscale(_) => Op::Upscale,
            OpParams::Frame(_) => Op::Frame,
            OpParams::ReplaceBg(_) => Op::ReplaceBg,
            OpParams::Outpaint(_) => Op::Outpaint,
            OpParams::Masked(_) => Op::Inpaint,
            OpParams::Variation(_) => Op::Variation,
            OpParams::Generate(_) => Op::Generate,
        };
        Step {
            index,
            op,
            models: vec![ModelRef::Local],
            fallback: Fallback::Local,
            params,
            prompt: None,
            negative_prompt: None,
            similarity: None,
            escalate: None,
            grader: None,
        }
    }

    fn pipeline(strength: f32, factor: f32) -> Vec<Step> {
        vec![
            step(0, OpParams::RemoveBg(RemoveBgParams::default())),
            step(1, OpParams::FixLighting(FixLightingParams { strength })),
            step(
                2,
                OpParams::Upscale(UpscaleParams {
                    target: UpscaleTarget::Factor(factor),
                    sharpen: 0.0,
                }),
            ),
        ]
    }

    fn keys(input: &[u8], steps: &[Step], models: [&str; 3]) -> Vec<StepKey> {
        let specs: Vec<StepSpec> = steps
            .iter()
            .zip(models)
            .map(|(s, m)| spec_for(s, m, 1))
            .collect();
        StepKey::chain_all(input, &specs)
    }

    const LOCAL: [&str; 3] = ["local"; 3];

    #[test]
    fn same_inputs_give_the_same_keys() {
        let a = keys(b"photo", &pipeline(0.8, 2.0), LOCAL);
        let b = keys(b"photo", &pipeline(0.8, 2.0), LOCAL);
        assert_eq!(a, b);
        // Pinned: the canonical form must not drift between builds.
        let spec = spec_for(&pipeline(0.8, 2.0)[1], "local", 1);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"op":"fix-lighting","params":{"strength":"3f4ccccd"},"model":"local","adapter_version":1,"prompt":null,"negative_prompt":null,"similarity":null}"#
        );
    }

    #[test]
    fn a_change_at_step_three_keeps_steps_one_and_two() {
        let a = keys(b"photo", &pipeline(0.8, 2.0), LOCAL);
        let b = keys(b"photo", &pipeline(0.8, 3.0), LOCAL);
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        // A change at step 2 changes steps 2 and 3 (chained), not step 1.
        let c = keys(b"photo", &pipeline(0.7, 2.0), LOCAL);
        assert_eq!(a[0], c[0]);
        assert_ne!(a[1], c[1]);
        assert_ne!(a[2], c[2]);
    }

    #[test]
    fn every_ingredient_changes_the_key() {
        let base_steps = pipeline(0.8, 2.0);
        let base = StepKey::chain(input_hash(b"x"), &spec_for(&base_steps[0], "local", 1));
        let mut variants = Vec::new();
        variants.push(StepKey::chain(
            input_hash(b"y"),
            &spec_for(&base_steps[0], "local", 1),
        ));
        let flat = step(
            0,
            OpParams::RemoveBg(RemoveBgParams {
                background: Some(Rgb([255, 255, 255])),
                ..RemoveBgParams::default()
            }),
        );
        variants.push(StepKey::chain(
            input_hash(b"x"),
            &spec_for(&flat, "local", 1),
        ));
        let model = "stability.stable-image-remove-background-v1:0";
        variants.push(StepKey::chain(
            input_hash(b"x"),
            &spec_for(&base_steps[0], model, 1),
        ));
        let mut with_prompt = base_steps[0].clone();
        with_prompt.prompt = Some("white studio".into());
        variants.push(StepKey::chain(
            input_hash(b"x"),
            &spec_for(&with_prompt, "local", 1),
        ));
        let mut with_sim = base_steps[0].clone();
        with_sim.similarity = Some(0.5);
        variants.push(StepKey::chain(
            input_hash(b"x"),
            &spec_for(&with_sim, "local", 1),
        ));
        let mut bumped = spec_for(&base_steps[0], "local", 1);
        bumped.adapter_version += 1;
        variants.push(StepKey::chain(input_hash(b"x"), &bumped));
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i} kept the key");
        }
    }

    #[test]
    fn blobs_are_content_addressed_atomic_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(&dir.path().join("cache"));
        let hex = blobs.put(b"png bytes").unwrap();
        assert_eq!(hex, blake3::hash(b"png bytes").to_hex().as_str());
        let path = blobs.path(&hex);
        assert!(path.starts_with(dir.path().join("cache").join(&hex[..2])));
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), &hex[2..]);
        assert_eq!(blobs.get(&hex).unwrap(), b"png bytes");
        assert_eq!(blobs.put(b"png bytes").unwrap(), hex);
        // No temp file is left behind next to the blob.
        let siblings: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(siblings.len(), 1);
        // A damaged blob is reported missing and removed, never returned.
        std::fs::write(&path, b"png byteZ").unwrap();
        assert_eq!(blobs.get(&hex), None);
        assert!(!path.exists());
        assert_eq!(blobs.get("../../etc/passwd"), None);
    }
}
