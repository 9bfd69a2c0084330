//! Manifest × inputs → the work of a run: every image with its destination.
//!
//! Built before any pixel is read, so problems that belong to one image (an output path that
//! would escape the output folder, two inputs that would write the same file) are known up front
//! and become that image's failed rows, while everything else proceeds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::manifest::Manifest;
use crate::sinks;
use crate::sources::{InputItem, Listing};

/// One image's work.
#[derive(Debug, Clone)]
pub struct PlannedImage {
    pub item: InputItem,
    /// Where its result goes, or why it cannot be written.
    pub output: Result<PathBuf, PlanProblem>,
}

/// Why an image cannot be processed, known before reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    #[error("{0}")]
    UnsafeOutput(String),
    #[error("output {} would also be written by `{other}`; rename one of them or narrow the globs", path.display())]
    Collision { path: PathBuf, other: String },
}

impl PlanProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            PlanProblem::UnsafeOutput(_) => "unsafe-output-path",
            PlanProblem::Collision { .. } => "output-collision",
        }
    }
}

/// Everything a run will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub manifest: Arc<Manifest>,
    pub images: Vec<PlannedImage>,
    pub skipped_non_images: usize,
    pub excluded: usize,
}

impl Plan {
    pub fn new(manifest: Arc<Manifest>, listing: Listing) -> Plan {
        let mut taken: HashMap<PathBuf, String> = HashMap::new();
        let images = listing
            .items
            .into_iter()
            .map(|item| {
                let output = sinks::output_path(
                    &manifest.output.dir,
                    &item.rel_path,
                    manifest.output.format,
                )
                .map_err(|e| PlanProblem::UnsafeOutput(e.to_string()))
                .and_then(|path| match taken.get(&path) {
                    Some(other) => Err(PlanProblem::Collision {
                        path,
                        other: other.clone(),
                    }),
                    None => {
                        taken.insert(path.clone(), item.display.clone());
                        Ok(path)
                    }
                });
                PlannedImage { item, output }
            })
            .collect();
        Plan {
            manifest,
            images,
            skipped_non_images: listing.skipped_non_images,
            excluded: listing.excluded,
        }
    }
}
