//! Listing and reading inputs.
//!
//! Turns the manifest's `inputs:` and `exclude:` into a sorted, de-duplicated list of
//! [`InputItem`]s (paths only: pixels are read one image at a time, when its turn comes), and
//! reads an item's bytes. Only this module knows where inputs live.

mod local;

pub use local::{LocalGlob, is_image_extension};

use std::path::{Path, PathBuf};

use crate::manifest::{InputSpec, Manifest};

/// One input image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputItem {
    /// Position in the sorted input list.
    pub index: usize,
    /// How the report names it: the path relative to the manifest's folder (or absolute when
    /// outside it).
    pub display: String,
    /// The path relative to its glob's base folder, with `/` separators; outputs mirror it.
    pub rel_path: String,
    pub location: InputLocation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLocation {
    Local(PathBuf),
}

/// What listing found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub items: Vec<InputItem>,
    /// Files matched by a glob but skipped because their extension is not an image's.
    pub skipped_non_images: usize,
    /// Files left out by `exclude:`.
    pub excluded: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("input glob `{pattern}` is invalid: {source}")]
    BadGlob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("input folder {} (from `{pattern}`) cannot be read: {source}", base.display())]
    Unreadable {
        pattern: String,
        base: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("no input images match {patterns} (relative to {})", base.display())]
    NoMatches { patterns: String, base: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Lists every input of `manifest`, sorted by display path, duplicates removed.
pub fn list(manifest: &Manifest) -> Result<Listing, SourceError> {
    let exclude = local::exclude_set(&manifest.exclude)?;
    let mut listing = Listing::default();
    let mut seen = std::collections::HashSet::new();
    for spec in &manifest.inputs {
        match spec {
            InputSpec::LocalGlob { pattern } => {
                let glob = LocalGlob::new(&manifest.base_dir, pattern)?;
                glob.walk(&manifest.base_dir, &exclude, &mut listing, &mut seen)?;
            }
        }
    }
    if listing.items.is_empty() {
        let patterns = manifest
            .inputs
            .iter()
            .map(|InputSpec::LocalGlob { pattern }| format!("`{pattern}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SourceError::NoMatches {
            patterns,
            base: manifest.base_dir.clone(),
        });
    }
    listing.items.sort_by(|a, b| a.display.cmp(&b.display));
    for (i, item) in listing.items.iter_mut().enumerate() {
        item.index = i;
    }
    Ok(listing)
}

/// Reads an input's bytes.
pub async fn read(item: &InputItem) -> Result<Vec<u8>, SourceError> {
    match &item.location {
        InputLocation::Local(path) => {
            tokio::fs::read(path)
                .await
                .map_err(|source| SourceError::Read {
                    path: path.clone(),
                    source,
                })
        }
    }
}

/// `path` relative to `base` (both made absolute and normalised), with `/` separators and `..`
/// where needed: `../samples/a.jpg`, the way the manifest itself names it, whatever the working
/// directory.
fn display_path(path: &Path, base: &Path) -> String {
    let abs = |p: &Path| {
        let joined = if p.is_absolute() {
            p.to_owned()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        local::normalize(&joined)
    };
    let (path, base) = (abs(path), abs(base));
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return slash_path(&path);
    }
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &p[common..] {
        rel.push(c);
    }
    slash_path(&rel)
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
