//! Manifest × inputs → the work of a run: every image with its destination.
//!
//! Built before any pixel is read, so problems that belong to one image (an output path that
//! would escape the output folder, as a hostile S3 key could make it, or two inputs that would
//! write the same file or key) are known up front and become that image's failed rows, while
//! everything else proceeds. [`overwrite`] then checks that the run would destroy none of the
//! files it reads.

pub mod estimate;
pub mod overwrite;

use std::collections::HashMap;
use std::sync::Arc;

use crate::manifest::Manifest;
use crate::reason::Reason;
use crate::s3_client::S3;
use crate::sinks::{self, Destination};
use crate::sources::{InputItem, Listing};

/// One image's work.
#[derive(Debug, Clone)]
pub struct PlannedImage {
    pub item: InputItem,
    /// Where its result goes, or why it cannot be written.
    pub output: Result<Destination, PlanProblem>,
    /// The run's S3 client, for reading an S3 input or writing an S3 output (shared; cloning
    /// it is a reference count).
    pub s3: Option<S3>,
}

/// Why an image cannot be processed, known before reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    #[error("{0}")]
    UnsafeOutput(String),
    #[error(
        "output {output} would also be written by `{other}`; rename one of them or narrow the globs"
    )]
    Collision { output: String, other: String },
}

impl PlanProblem {
    pub fn reason(&self) -> Reason {
        match self {
            PlanProblem::UnsafeOutput(_) => Reason::UnsafeOutputPath,
            PlanProblem::Collision { .. } => Reason::OutputCollision,
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
    /// S3 folder-marker keys (ending in `/`) that were skipped.
    pub skipped_folder_markers: usize,
    /// Broken symbolic links no glob matched.
    pub skipped_broken: usize,
    /// Subfolders that could not be read.
    pub unreadable_folders: Vec<std::path::PathBuf>,
    /// The run's S3 client, when anything is in S3.
    pub s3: Option<S3>,
    /// The shard this run is, when the catalogue is split across processes: `images` holds only
    /// the inputs it owns (listed and planned in full first, so output collisions are found
    /// across the whole catalogue), and the report is its part.
    pub shard: Option<crate::shard::Shard>,
}

impl Plan {
    /// Plans every listed input; `s3` is the run's client (when anything is in S3).
    pub fn new(manifest: Arc<Manifest>, listing: Listing, s3: Option<S3>) -> Plan {
        let mut taken: HashMap<Destination, String> = HashMap::new();
        let out = &manifest.output;
        let images = listing
            .items
            .into_iter()
            .map(|item| {
                let output = sinks::destination(&out.dir, &item.rel_path, out.format)
                    .map_err(|e| PlanProblem::UnsafeOutput(format!("{}: {e}", item.display)))
                    .and_then(|dest| match taken.get(&dest) {
                        Some(other) => Err(PlanProblem::Collision {
                            output: dest.to_string(),
                            other: other.clone(),
                        }),
                        None => {
                            taken.insert(dest.clone(), item.display.clone());
                            Ok(dest)
                        }
                    });
                PlannedImage {
                    item,
                    output,
                    s3: s3.clone(),
                }
            })
            .collect();
        Plan {
            manifest,
            images,
            skipped_non_images: listing.skipped_non_images,
            excluded: listing.excluded,
            skipped_folder_markers: listing.skipped_folder_markers,
            skipped_broken: listing.skipped_broken,
            unreadable_folders: listing.unreadable_folders,
            s3,
            shard: None,
        }
    }

    /// Keeps only the images `shard` owns (by their source key, as the report names them).
    pub fn into_shard(mut self, shard: crate::shard::Shard) -> Plan {
        self.images.retain(|i| shard.owns(&i.item.display));
        self.shard = Some(shard);
        self
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::catalog::Catalog;
    use crate::sources::InputLocation;

    fn manifest(out_dir: &str) -> Arc<Manifest> {
        let text = format!(
            "version: 1\nname: t\ninputs: [\"s3://cat-in/p/\"]\noutput: {{ dir: \"{out_dir}\" }}\n\
             steps:\n  - op: upscale\n    models: [local]\n    factor: 2\n"
        );
        Arc::new(crate::manifest::parse(&text, Path::new("m/t.yaml"), &Catalog::builtin()).unwrap())
    }

    fn listing(keys: &[&str]) -> Listing {
        let items = keys
            .iter()
            .enumerate()
            .map(|(index, key)| InputItem {
                index,
                display: format!("s3://cat-in/p/{key}"),
                rel_path: key.to_string(),
                location: InputLocation::S3 {
                    bucket: "cat-in".into(),
                    key: format!("p/{key}"),
                },
                version: None,
            })
            .collect();
        Listing {
            items,
            ..Listing::default()
        }
    }

    #[test]
    fn traversal_keys_become_failed_images_for_local_and_s3_outputs() {
        let keys = [
            "ok/1.jpg",
            "../../etc/x.jpg",
            "/abs.jpg",
            "a\\b.jpg",
            "a//b.jpg",
            "a/./b.jpg",
        ];
        for dir in ["out", "s3://cat-out/done/"] {
            let plan = Plan::new(manifest(dir), listing(&keys), None);
            let reasons: Vec<_> = plan
                .images
                .iter()
                .map(|i| i.output.as_ref().map_err(PlanProblem::reason).err())
                .collect();
            assert_eq!(reasons[0], None, "{dir}");
            assert!(
                reasons[1..]
                    .iter()
                    .all(|r| *r == Some(Reason::UnsafeOutputPath)),
                "{dir}: {reasons:?}"
            );
            let err = plan.images[1].output.as_ref().unwrap_err().to_string();
            assert!(err.contains("s3://cat-in/p/../../etc/x.jpg"), "{err}");
        }
        let plan = Plan::new(manifest("out"), listing(&keys[..1]), None);
        let dest = plan.images[0].output.as_ref().unwrap();
        assert_eq!(dest, &Destination::Local("m/out/ok/1.png".into()));
    }

    #[test]
    fn two_inputs_writing_one_key_collide() {
        let plan = Plan::new(
            manifest("s3://cat-out/"),
            listing(&["a.jpg", "a.png"]),
            None,
        );
        assert!(plan.images[0].output.is_ok());
        let err = plan.images[1].output.as_ref().unwrap_err();
        assert_eq!(err.reason(), Reason::OutputCollision);
        assert!(err.to_string().contains("s3://cat-out/a.png"), "{err}");
    }
}
