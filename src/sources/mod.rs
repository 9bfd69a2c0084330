//! Listing and reading inputs.
//!
//! Turns the manifest's `inputs:` and `exclude:` into a sorted, de-duplicated list of
//! [`InputItem`]s (paths only: pixels are read one image at a time, when its turn comes), and
//! reads an item's bytes. Only this module knows where inputs live: local globs (`local`),
//! S3 prefixes (`s3`, through the run's shared [`S3`] client) and the rows of prompts files
//! (`prompts`, for pipelines that start with `generate`; a row's "bytes" are its canonical
//! JSON).

mod local_glob;
pub mod prompts;
mod s3_prefix;

pub use local_glob::{LocalGlob, is_image_extension, read_file};
pub use prompts::{PromptRow, PromptsError};
pub use s3_prefix::S3Input;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::{InputSpec, Manifest};
use crate::reason::Reason;
use crate::s3_client::{S3, S3Error};

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
    /// Names this exact content without reading it, when the listing says so (S3: ETag and
    /// size). Lets a rerun find an unchanged object's cached results without downloading it.
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLocation {
    Local(PathBuf),
    S3 {
        bucket: String,
        key: String,
    },
    /// A row of a prompts file: an image to make, not one to read.
    Prompt(Arc<PromptRow>),
}

/// What listing found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub items: Vec<InputItem>,
    /// Files matched by a glob but skipped because their extension is not an image's.
    pub skipped_non_images: usize,
    /// Files left out by `exclude:`.
    pub excluded: usize,
    /// S3 keys ending in `/` (empty "folder" objects some tools create).
    pub skipped_folder_markers: usize,
    /// Dangling or looping symbolic links the globs do not match (matched ones are listed and
    /// fail when read).
    pub skipped_broken: usize,
    /// Subfolders of a glob's base that could not be read (skipped, with a warning).
    pub unreadable_folders: Vec<PathBuf>,
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
    #[error("{} is a {kind}, not a regular file; it was not read", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{} is a symbolic link that leads nowhere ({why})", path.display())]
    BrokenLink { path: PathBuf, why: String },
    #[error(
        "{input} is {size} bytes, more than any image within limits.max_megapixels can take ({limit} bytes); it was not read"
    )]
    TooLarge {
        input: String,
        size: u64,
        limit: u64,
    },
    /// Listing or reading an S3 input failed (missing bucket, access denied, ...).
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error(
        "S3 input s3://{bucket}/{prefix} is empty: no keys under prefix `{prefix}` in bucket `{bucket}`"
    )]
    EmptyPrefix { bucket: String, prefix: String },
    #[error("S3 input `{input}` needs an S3 client, and none was set up")]
    NoS3Client { input: String },
    #[error(transparent)]
    Prompts(#[from] PromptsError),
    #[error(
        "prompt id `{id}` is in both {first} and {second}; ids name the outputs, so each must be unique"
    )]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
}

impl SourceError {
    /// The report's reason.
    pub fn reason(&self) -> Reason {
        match self {
            SourceError::S3(e) => e.reason(),
            SourceError::NotAFile { .. } => Reason::NotAFile,
            SourceError::BrokenLink { .. } => Reason::BrokenLink,
            SourceError::TooLarge { .. } => Reason::TooLarge,
            _ => Reason::ReadFailed,
        }
    }
}

/// Lists every input of `manifest`, sorted by display path, duplicates removed. `s3` is the
/// run's client, needed when an input is in S3.
pub async fn list(manifest: &Manifest, s3: Option<&S3>) -> Result<Listing, SourceError> {
    let exclude = local_glob::exclude_set(&manifest.exclude)?;
    let mut listing = Listing::default();
    let mut seen = std::collections::HashSet::new();
    let mut seen_s3 = std::collections::HashSet::new();
    let mut seen_ids = std::collections::HashMap::new();
    for spec in &manifest.inputs {
        match spec {
            InputSpec::LocalGlob { pattern } => {
                let glob = LocalGlob::new(&manifest.base_dir, pattern)?;
                glob.walk(&manifest.base_dir, &exclude, &mut listing, &mut seen)?;
            }
            InputSpec::S3 {
                bucket,
                prefix,
                pattern,
            } => {
                let s3 = s3.ok_or_else(|| SourceError::NoS3Client {
                    input: spec.to_string(),
                })?;
                let input = S3Input::new(bucket, prefix, pattern.as_deref())?;
                input.list(s3, &exclude, &mut listing, &mut seen_s3).await?;
            }
            InputSpec::Prompts { path } => {
                let file = manifest.base_dir.join(path);
                let display = display_path(&file, &manifest.base_dir);
                let rows = prompts::read(&file)?;
                add_prompts(display, rows, &mut listing, &mut seen_ids)?;
            }
            InputSpec::S3Prompts { bucket, key } => {
                let s3 = s3.ok_or_else(|| SourceError::NoS3Client {
                    input: spec.to_string(),
                })?;
                let display = spec.to_string();
                let bytes = s3
                    .get_range(bucket, key, None, prompts::MAX_FILE_BYTES)
                    .await?;
                let rows = prompts::parse_bytes(std::path::Path::new(&display), &bytes)?;
                add_prompts(display, rows, &mut listing, &mut seen_ids)?;
            }
        }
    }
    if listing.items.is_empty() {
        let patterns = manifest
            .inputs
            .iter()
            .map(|spec| format!("`{spec}`"))
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

/// Adds the `rows` of the prompts file shown as `display` to `listing`: reported as
/// `<file>#<id>`, written as `<id>.<format>`.
fn add_prompts(
    display: String,
    rows: Vec<PromptRow>,
    listing: &mut Listing,
    seen: &mut std::collections::HashMap<String, String>,
) -> Result<(), SourceError> {
    for row in rows {
        if let Some(first) = seen.insert(row.id.clone(), display.clone()) {
            return Err(SourceError::DuplicateId {
                id: row.id,
                first,
                second: display,
            });
        }
        listing.items.push(InputItem {
            index: 0,
            display: format!("{display}#{}", row.id),
            // The extension is replaced by the output format's.
            rel_path: format!("{}.prompt", row.id),
            location: InputLocation::Prompt(Arc::new(row)),
            version: None,
        });
    }
    Ok(())
}

/// Reads an input's bytes (an S3 object is fetched with GetObject, retried when transient),
/// refusing, before reading them, inputs of more than `max_bytes`.
pub async fn read(
    item: &InputItem,
    s3: Option<&S3>,
    max_bytes: u64,
) -> Result<Vec<u8>, SourceError> {
    read_head(item, s3, None, max_bytes).await
}

/// Reads at most the first `len` bytes of an input (all of it for `None`): enough for image
/// headers without fetching a whole object. Inputs of more than `max_bytes` are refused whole.
/// Never blocks on a FIFO or device: only regular files are read.
pub async fn read_head(
    item: &InputItem,
    s3: Option<&S3>,
    len: Option<u64>,
    max_bytes: u64,
) -> Result<Vec<u8>, SourceError> {
    match &item.location {
        InputLocation::Prompt(row) => Ok(row.canonical()),
        InputLocation::Local(path) => {
            let (path, display) = (path.clone(), item.display.clone());
            let job = move || local_glob::read_file(&path, &display, len, max_bytes);
            tokio::task::spawn_blocking(job).await.unwrap_or_else(|e| {
                Err(SourceError::Read {
                    path: item.display.clone().into(),
                    source: std::io::Error::other(e),
                })
            })
        }
        InputLocation::S3 { bucket, key } => {
            let s3 = s3.ok_or_else(|| SourceError::NoS3Client {
                input: item.display.clone(),
            })?;
            match s3.get_range(bucket, key, len, max_bytes).await {
                Err(crate::s3_client::S3Error::TooLarge { size, .. }) => {
                    Err(SourceError::TooLarge {
                        input: item.display.clone(),
                        size,
                        limit: max_bytes,
                    })
                }
                other => Ok(other?),
            }
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
        crate::manifest::normalize(&joined)
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
