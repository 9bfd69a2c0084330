//! Local globs: `../samples/**/*.{jpg,png}` relative to the manifest's folder.
//!
//! A glob is split into its literal base folder (`../samples`) and the pattern below it
//! (`**/*.{jpg,png}`); the base is walked and each file's path relative to it is matched. That
//! relative path is what outputs mirror, so `a/1.jpg` and `b/1.jpg` never collide. Extensions
//! match case-insensitively (`IMG_1.JPG` matches `*.jpg`).

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
        Ok(LocalGlob {
            pattern: pattern.to_owned(),
            base,
            matcher,
        })
    }

    /// Walks the base folder, adding every matching image to `listing`.
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
        let walker = walkdir::WalkDir::new(&self.base).follow_links(true);
        for entry in walker {
            let entry = entry.map_err(|source| SourceError::Unreadable {
                pattern: self.pattern.clone(),
                base: self.base.clone(),
                source,
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            let rel = slash_path(path.strip_prefix(&self.base).unwrap_or(path));
            if !self.is_match(&rel) {
                continue;
            }
            if !is_image_extension(path) {
                listing.skipped_non_images += 1;
                continue;
            }
            let display = display_path(path, manifest_dir);
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
            let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
            if !seen.insert(key) {
                continue;
            }
            listing.items.push(InputItem {
                index: 0,
                display,
                rel_path: rel,
                location: InputLocation::Local(path.to_owned()),
                version: None,
            });
        }
        Ok(())
    }

    fn is_match(&self, rel: &str) -> bool {
        self.matcher.is_match(rel) || self.matcher.is_match(lowercase_extension(rel))
    }
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
