//! Model data: which models exist, what they can do, their limits, prices and lifecycle.
//!
//! Depends on nothing else in the crate. STUB: the data-driven built-in catalog replaces this.

use std::fmt;

/// The operations retouch knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    RemoveBg,
    FixLighting,
    Upscale,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::RemoveBg, Op::FixLighting, Op::Upscale];

    /// The kebab-case name used in manifests and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::RemoveBg => "remove-bg",
            Op::FixLighting => "fix-lighting",
            Op::Upscale => "upscale",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of model an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Can edit images (some ops).
    ImageEditing,
    /// Can only read images and answer in text: never permitted for a step.
    TextUnderstanding,
}

/// One model the catalog knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// Canonical Bedrock model id (`amazon.nova-canvas-v1:0`).
    pub id: String,
    /// Short alias (`nova-canvas`).
    pub alias: String,
    pub kind: ModelKind,
    /// The ops it can do.
    pub ops: Vec<Op>,
}

/// The set of models retouch knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    entries: Vec<ModelEntry>,
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Catalog {
        let e = |id: &str, alias: &str, kind, ops: &[Op]| ModelEntry {
            id: id.into(),
            alias: alias.into(),
            kind,
            ops: ops.to_vec(),
        };
        use ModelKind::*;
        Catalog {
            entries: vec![
                e(
                    "amazon.nova-canvas-v1:0",
                    "nova-canvas",
                    ImageEditing,
                    &[Op::RemoveBg, Op::FixLighting],
                ),
                e(
                    "amazon.titan-image-generator-v2:0",
                    "titan-image-v2",
                    ImageEditing,
                    &[Op::RemoveBg, Op::FixLighting],
                ),
                e(
                    "us.stability.stable-fast-upscale-v1:0",
                    "stability-fast-upscale",
                    ImageEditing,
                    &[Op::Upscale],
                ),
                e("amazon.nova-lite-v1:0", "nova-lite", TextUnderstanding, &[]),
            ],
        }
    }

    /// Looks a model up by alias or id.
    pub fn resolve(&self, name: &str) -> Option<&ModelEntry> {
        self.entries
            .iter()
            .find(|m| m.alias == name || m.id == name)
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
}
