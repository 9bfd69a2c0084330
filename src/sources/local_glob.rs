//! Local globs: `../samples/**/*.{jpg,png}` relative to the manifest's folder.
//!
//! A glob is split into its literal base folder (`../samples`) and the pattern below it
//! (`**/*.{jpg,png}`); the base is walked and each file's path relative to it is matched. That
//! relative path is what outputs mirror, so `a/1.jpg` and `b/1.jpg` never collide. Extensions
//! match case-insensitively (`IMG_1.JPG` matches `*.jpg`).
//!
//! One broken entry never stops a listing: a dangling or looping symbolic link, or a FIFO or
//! other special file, that the glob matches is listed like any input (reading it then fails
//! with its own reason, as that image's row, without ever blocking); one the glob does not match
//! is counted as skipped. A subfolder that cannot be read is skipped, counted and named in a
//! warning. A pattern without `**` is never walked deeper than it can match.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use super::{InputItem, InputLocation, Listing, SourceError, display_path, slash_path};

/// Extensions of the image formats retouch decodes.
const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "gif", "jfif",
];

pub fn is_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A local glob split into base folder and pattern.
#[derive(Debug)]
pub struct LocalGlob {
    pattern: String,
    /// The literal folder the pattern starts from, joined onto the manifest's folder.
    pub base: PathBuf,
    /// The pattern relative to `base` (`*` does not cross `/`; `**` does).
    matcher: GlobMatcher,
    /// How deep below `base` the pattern can match (`None` with `**`).
    max_depth: Option<usize>,
}

impl LocalGlob {
    pub fn new(manifest_dir: &Path, pattern: &str) -> Result<LocalGlob, SourceError> {
        let (base, rest) = split_glob(pattern);
        let base = manifest_dir.join(base);
        let matcher = GlobBuilder::new(&rest)
            .literal_separator(true)
            .build()
            .map_err(|source| SourceError::BadGlob {
                pattern: pattern.to_owned(),
                source,
            })?
            .compile_matcher();
        let max_depth = (!rest.contains("**")).then(|| rest.split('/').count());
        Ok(LocalGlob {
            pattern: pattern.to_owned(),
            base,
            matcher,
            max_depth,
        })
    }

    /// Walks the base folder, adding every matching image to `listing`. Only an unreadable
    /// base folder is an error; anything broken below it is listed, counted or warned about.
    pub fn walk(
        &self,
        manifest_dir: &Path,
        exclude: &GlobSet,
        listing: &mut Listing,
        seen: &mut HashSet<PathBuf>,
    ) -> Result<(), SourceError> {
        if !self.base.exists() {
            return Ok(());
        }
        let mut walker = walkdir::WalkDir::new(&self.base).follow_links(true);
        if let Some(depth) = self.max_depth {
            walker = walker.max_depth(depth);
        }
        for entry in walker {
            let path = match entry {
                Ok(entry) if entry.file_type().is_dir() => continue,
                Ok(entry) => entry.into_path(),
                Err(e) => match self.broken_entry(e, listing)? {
                    Some(path) => path,
                    None => continue,
                },
            };
            let rel = slash_path(path.strip_prefix(&self.base).unwrap_or(&path));
            if !self.is_match(&rel) {
                if is_symlink(&path) && std::fs::metadata(&path).is_err() {
                    listing.skipped_broken += 1;
                }
                continue;
            }
            if !is_image_extension(&path) {
                listing.skipped_non_images += 1;
                continue;
            }
            let display = display_path(&path, manifest_dir);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            if exclude.is_match(&rel)
                || exclude.is_match(&display)
                || exclude.is_match(name.as_ref())
            {
                listing.excluded += 1;
                continue;
            }
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if !seen.insert(key) {
                continue;
            }
            listing.items.push(InputItem {
                index: 0,
                display,
                rel_path: rel,
                location: InputLocation::Local(path),
                version: None,
            });
        }
        Ok(())
    }

    /// What to do with an entry the walk could not follow: the path of a broken link (listed
    /// or counted by the caller like any file), `None` for a skipped folder, or an error when
    /// the base folder itself cannot be read.
    fn broken_entry(
        &self,
        e: walkdir::Error,
        listing: &mut Listing,
    ) -> Result<Option<PathBuf>, SourceError> {
        let Some(path) = e.path().map(Path::to_owned) else {
            return Err(self.unreadable(e));
        };
        if e.depth() == 0 {
            return Err(self.unreadable(e));
        }
        if is_symlink(&path) {
            return Ok(Some(path)); // dangling, or a loop: reading it says which
        }
        tracing::warn!("skipping {}: {e}", path.display());
        listing.unreadable_folders.push(path);
        Ok(None)
    }

    fn unreadable(&self, source: walkdir::Error) -> SourceError {
        SourceError::Unreadable {
            pattern: self.pattern.clone(),
            base: self.base.clone(),
            source,
        }
    }

    fn is_match(&self, rel: &str) -> bool {
        self.matcher.is_match(rel) || self.matcher.is_match(lowercase_extension(rel))
    }
}

/// Reads the file at `path` (at most its first `len` bytes), known to the user as `display`.
/// Only a regular file is read: a FIFO, socket or device is refused without blocking (it is
/// opened non-blocking and checked before any read), as is a file over `max_bytes`.
pub fn read_file(
    path: &Path,
    display: &str,
    len: Option<u64>,
    max_bytes: u64,
) -> Result<Vec<u8>, SourceError> {
    let read_err = |source| SourceError::Read {
        path: path.to_owned(),
        source,
    };
    let file = open_nonblocking(path).map_err(|e| open_error(path, display, e))?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(SourceError::NotAFile {
            path: display.into(),
            kind: kind_of(&meta.file_type()),
        });
    }
    let too_large = |size| SourceError::TooLarge {
        input: display.to_owned(),
        size,
        limit: max_bytes,
    };
    if meta.len() > max_bytes && len.is_none() {
        return Err(too_large(meta.len()));
    }
    let want = len.unwrap_or(max_bytes).min(max_bytes);
    let mut bytes = Vec::with_capacity(meta.len().min(want) as usize);
    // One byte more than allowed, so a file that grew since it was measured is still caught.
    let limit = if len.is_some() { want } else { want + 1 };
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit), &mut bytes)
        .map_err(read_err)?;
    if len.is_none() && bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// Why `path` could not be opened: a link to nowhere, or the OS's reason.
fn open_error(path: &Path, display: &str, source: std::io::Error) -> SourceError {
    if !is_symlink(path) {
        return SourceError::Read {
            path: path.to_owned(),
            source,
        };
    }
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    let why = if source.kind() == std::io::ErrorKind::NotFound {
        format!("its target `{target}` does not exist")
    } else {
        format!("following it to `{target}` failed: {source}")
    };
    SourceError::BrokenLink {
        path: display.into(),
        why,
    }
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO (named pipe)";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "device";
        }
    }
    if t.is_dir() { "folder" } else { "special file" }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Compiles `exclude:` patterns.
pub(super) fn exclude_set(patterns: &[String]) -> Result<GlobSet, SourceError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|source| SourceError::BadGlob {
                pattern: p.clone(),
                source,
            })?;
        b.add(glob);
    }
    b.build().map_err(|source| SourceError::BadGlob {
        pattern: patterns.join(", "),
        source,
    })
}

/// Splits `../a/b*/c.jpg` into (`../a`, `b*/c.jpg`): the leading components free of glob syntax.
fn split_glob(pattern: &str) -> (PathBuf, String) {
    let parts: Vec<&str> = pattern.split('/').collect();
    let first_glob = parts
        .iter()
        .position(|p| p.contains(['*', '?', '[', '{']))
        .unwrap_or(parts.len() - 1);
    let mut base = parts[..first_glob].join("/");
    if base.is_empty() && pattern.starts_with('/') {
        base = "/".into();
    }
    (PathBuf::from(base), parts[first_glob..].join("/"))
}

pub(super) fn lowercase_extension(rel: &str) -> String {
    match rel.rfind('.') {
        Some(dot) if !rel[dot..].contains('/') => {
            format!("{}{}", &rel[..dot], rel[dot..].to_ascii_lowercase())
        }
        _ => rel.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literal_base_from_pattern() {
        assert_eq!(
            split_glob("../samples/**/*.jpg"),
            ("../samples".into(), "**/*.jpg".into())
        );
        assert_eq!(split_glob("*.png"), ("".into(), "*.png".into()));
        assert_eq!(split_glob("a/b/c.jpg"), ("a/b".into(), "c.jpg".into()));
        assert_eq!(
            split_glob("/abs/x/{a,b}/*.jpg"),
            ("/abs/x".into(), "{a,b}/*.jpg".into())
        );
    }

    #[test]
    fn extension_case_is_ignored() {
        assert_eq!(lowercase_extension("dir.X/IMG.JPG"), "dir.X/IMG.jpg");
        assert_eq!(lowercase_extension("noext"), "noext");
        assert!(is_image_extension(Path::new("a/B.JPEG")));
        assert!(!is_image_extension(Path::new("a/notes.txt")));
    }
}
