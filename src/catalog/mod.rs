//! Model data: which models exist, what they can do, their limits, prices and lifecycle.
//!
//! The built-in catalog is data (`models.yaml`, embedded), not code per model; a user catalog
//! file in the same format overrides fields by alias or id, or adds models. This module owns
//! parsing, validation and lookups, and the per-model arithmetic (fit, output size, price,
//! lifecycle). It depends on nothing else in the crate except `money`, and never does I/O beyond
//! reading an override file.

mod date;
mod entry;
mod local_model;
mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

pub use date::{Date, DateError};
pub use entry::{Family, Lifecycle, LifecycleSpec, LifecycleStatus, ModelEntry, TokenPrices};
pub use local_model::{LocalModel, ModelInput, local_model, local_models};
pub use spec::{
    Exclusion, Fit, InputLimits, OpParams, OpSpec, OutputRule, PriceTier, closest_ratio,
};

use crate::money::Usd;

const BUILTIN_YAML: &str = include_str!("models.yaml");

/// The operations retouch knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    RemoveBg,
    FixLighting,
    Upscale,
    Frame,
    ReplaceBg,
    Outpaint,
    Inpaint,
    Erase,
    Variation,
    /// Text to image: the input is a prompt (a row of a prompts file), not a photo.
    Generate,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::RemoveBg,
        Op::FixLighting,
        Op::Upscale,
        Op::Frame,
        Op::ReplaceBg,
        Op::Outpaint,
        Op::Inpaint,
        Op::Erase,
        Op::Variation,
        Op::Generate,
    ];

    /// The kebab-case name used in manifests and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::RemoveBg => "remove-bg",
            Op::FixLighting => "fix-lighting",
            Op::Upscale => "upscale",
            Op::Frame => "frame",
            Op::ReplaceBg => "replace-bg",
            Op::Outpaint => "outpaint",
            Op::Inpaint => "inpaint",
            Op::Erase => "erase",
            Op::Variation => "variation",
            Op::Generate => "generate",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Whether retouch has a local implementation (`models: [local]`, `fallback: local`).
    /// inpaint and erase have one for mask files only (the manifest checks).
    pub fn has_local(self) -> bool {
        !matches!(self, Op::Variation | Op::Generate)
    }

    /// Whether the op makes an image from a prompt instead of editing one: it takes no input
    /// image, so input limits do not apply and it can only be a pipeline's first step.
    pub fn makes_image(self) -> bool {
        self == Op::Generate
    }

    /// Ops retouch always does itself (deterministic, exact): no catalog model may claim them.
    pub fn local_only(self) -> bool {
        matches!(self, Op::Frame)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of model an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Can edit images (some ops).
    ImageEditing,
    /// Can only read images and answer in text: never permitted for a step.
    TextUnderstanding,
}

/// A catalog that could not be loaded. `origin` is the file path (or `<built-in>`).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: cannot read catalog file: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: model `{model}`: {message}")]
    Invalid {
        origin: String,
        model: String,
        message: String,
    },
    #[error("no model `{name}` in the catalog")]
    UnknownModel { name: String },
}

/// The set of models retouch knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    entries: Vec<ModelEntry>,
}

impl Catalog {
    /// The built-in catalog (parsed once, on first use).
    pub fn builtin() -> Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Catalog::default_empty()
                    .merged_yaml(BUILTIN_YAML, "<built-in models.yaml>")
                    .expect("built-in catalog is valid (checked by a unit test)")
            })
            .clone()
    }

    fn default_empty() -> Catalog {
        Catalog {
            entries: Vec::new(),
        }
    }

    /// The built-in catalog with a user catalog file merged over it.
    pub fn load_overrides(path: &Path) -> Result<Catalog, CatalogError> {
        Catalog::builtin().with_overrides(path)
    }

    /// This catalog with a user catalog file merged over it.
    pub fn with_overrides(&self, path: &Path) -> Result<Catalog, CatalogError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: origin.clone(),
            source,
        })?;
        self.merged_yaml(&text, &origin)
    }

    /// Merges catalog YAML (`models: [...]`; top-level `x-*` keys are free for anchors) over
    /// this catalog. An entry whose `alias` or `id` matches an existing model overrides only the
    /// fields it names (nested maps merge, lists replace); any other entry is a new model.
    pub fn merged_yaml(&self, text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let parse_err = |message: String| CatalogError::Parse {
            origin: origin.to_string(),
            message,
        };
        let doc: Value = serde_yaml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        let models = top_level_models(&doc).map_err(parse_err)?;
        let mut out = self.clone();
        for (i, raw) in models.iter().enumerate() {
            out.merge_one(raw, i, origin)?;
        }
        out.check_unique(origin)?;
        Ok(out)
    }

    fn merge_one(&mut self, raw: &Value, index: usize, origin: &str) -> Result<(), CatalogError> {
        let key = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let (id, alias) = (key("id"), key("alias"));
        let name = alias
            .clone()
            .or(id.clone())
            .unwrap_or_else(|| format!("models[{index}]"));
        let invalid = |message: String| CatalogError::Invalid {
            origin: origin.to_string(),
            model: name.clone(),
            message,
        };
        let pos = self.entries.iter().position(|m| {
            id.as_deref() == Some(m.id.as_str()) || alias.as_deref() == Some(m.alias.as_str())
        });
        let merged = match pos {
            Some(p) => {
                let mut base =
                    serde_yaml::to_value(&self.entries[p]).map_err(|e| invalid(e.to_string()))?;
                deep_merge(&mut base, raw);
                base
            }
            None => raw.clone(),
        };
        let entry: ModelEntry =
            serde_yaml::from_value(merged).map_err(|e| invalid(e.to_string()))?;
        entry.validate().map_err(invalid)?;
        match pos {
            Some(p) => self.entries[p] = entry,
            None => self.entries.push(entry),
        }
        Ok(())
    }

    fn check_unique(&self, origin: &str) -> Result<(), CatalogError> {
        let mut seen = BTreeMap::new();
        for m in &self.entries {
            for name in [&m.id, &m.alias, &m.invoke_id] {
                if let Some(other) = seen.insert(name.as_str(), m.alias.as_str())
                    && other != m.alias
                {
                    return Err(CatalogError::Invalid {
                        origin: origin.to_string(),
                        model: m.alias.clone(),
                        message: format!("name `{name}` is also used by `{other}`"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Looks a model up by alias, id or invoke id (inference profile).
    pub fn resolve(&self, name: &str) -> Option<&ModelEntry> {
        self.entries
            .iter()
            .find(|m| m.alias == name || m.id == name || m.invoke_id == name)
    }

    /// The requests per minute `name` is assumed to allow when the manifest sets none: its
    /// entry's default, or the catalog's fallback for a model it does not know.
    pub fn default_rpm(&self, name: &str) -> u32 {
        self.resolve(name)
            .map_or(entry::FALLBACK_RPM, |m| m.default_rpm)
    }

    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    /// The image-editing models that can do `op`.
    pub fn models_for(&self, op: Op) -> Vec<&ModelEntry> {
        self.entries
            .iter()
            .filter(|m| m.kind == ModelKind::ImageEditing && m.ops.contains(&op))
            .collect()
    }

    /// Replaces every price tier of every op of a model with one flat price.
    pub fn set_price(&mut self, name: &str, price: Usd) -> Result<(), CatalogError> {
        let entry = self
            .entries
            .iter_mut()
            .find(|m| m.alias == name || m.id == name || m.invoke_id == name)
            .ok_or_else(|| CatalogError::UnknownModel {
                name: name.to_string(),
            })?;
        for spec in entry.specs.values_mut() {
            spec.prices = vec![PriceTier {
                up_to_pixels: None,
                usd: price,
            }];
        }
        Ok(())
    }
}

/// The `models` list of a catalog document; other top-level keys must start with `x-`.
fn top_level_models(doc: &Value) -> Result<&Vec<Value>, String> {
    let map = doc
        .as_mapping()
        .ok_or("expected a mapping with a `models` list")?;
    for k in map.keys() {
        let k = k.as_str().unwrap_or("");
        if k != "models" && !k.starts_with("x-") {
            return Err(format!("unknown top-level key `{k}` (expected `models`)"));
        }
    }
    doc.get("models")
        .and_then(Value::as_sequence)
        .ok_or_else(|| "expected a `models` list".to_string())
}

/// Overlays `over` onto `base`: mappings merge key by key, anything else replaces. A mapping
/// naming a different output `rule` replaces the old one whole (its fields would not fit).
fn deep_merge(base: &mut Value, over: &Value) {
    let rule_changes = base
        .get("rule")
        .is_some_and(|r| over.get("rule").is_some_and(|o| o != r));
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) if !rule_changes => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests;
