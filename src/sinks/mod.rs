//! Writing outputs: where each result goes, and writing it atomically (local) or in one
//! PutObject with the right Content-Type (S3).
//!
//! An output's path mirrors its input's path relative to the input's glob base or S3 prefix, with
//! the output format's extension. Local writes go to a temporary file in the destination folder,
//! are synced, then renamed over the destination, so an interrupted run never leaves a
//! half-written file; an S3 object appears whole or not at all. A relative path that could escape
//! the output folder (`..`, absolute, backslashes, empty segments, as S3 keys may contain) or that
//! holds control characters is refused, for S3 outputs too, so every output key mirrors a clean
//! relative path.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::manifest::{OutputFormat, Place, S3Location};
use crate::reason::Reason;
use crate::s3_client::{S3, S3Error};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("unsafe output path `{}`: {why}", escape_controls(rel))]
    UnsafePath { rel: String, why: &'static str },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("output {dest} is in S3, and no S3 client was set up")]
    NoS3Client { dest: String },
}

impl SinkError {
    /// The report's reason.
    pub fn reason(&self) -> Reason {
        match self {
            SinkError::UnsafePath { .. } => Reason::UnsafeOutputPath,
            SinkError::Write { .. } | SinkError::NoS3Client { .. } => Reason::WriteFailed,
            SinkError::S3(e) => e.reason(),
        }
    }
}

/// Where one result goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Local(PathBuf),
    S3(S3Location),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Local(p) => write!(f, "{}", p.display()),
            Destination::S3(loc) => loc.fmt(f),
        }
    }
}

/// A destination with the client to reach it: what an image task writes its result to.
#[derive(Debug, Clone)]
pub struct Target {
    pub dest: Destination,
    /// The run's S3 client (needed for an S3 destination).
    pub s3: Option<S3>,
}

impl Target {
    /// Writes one encoded result (see [`write`]), with S3 user `metadata` on an S3 object.
    pub async fn write(
        &self,
        bytes: Vec<u8>,
        format: OutputFormat,
        metadata: &[(String, String)],
    ) -> Result<(), SinkError> {
        write(&self.dest, bytes, format, self.s3.as_ref(), metadata).await
    }

    /// Writes `json` next to the output as `<output>.json` (atomically, or one PutObject).
    pub async fn write_sidecar(&self, json: Vec<u8>) -> Result<(), SinkError> {
        match &self.dest {
            Destination::Local(path) => {
                let mut name = path.clone().into_os_string();
                name.push(".json");
                let path = PathBuf::from(name);
                let job = tokio::task::spawn_blocking(move || write_atomic(&path, &json));
                job.await.unwrap_or_else(|e| {
                    Err(SinkError::Write {
                        path: PathBuf::new(),
                        source: std::io::Error::other(e),
                    })
                })
            }
            Destination::S3(loc) => {
                let s3 = self.s3.as_ref().ok_or_else(|| SinkError::NoS3Client {
                    dest: self.dest.to_string(),
                })?;
                let key = format!("{}.json", loc.key);
                Ok(s3.put(&loc.bucket, &key, json, "application/json").await?)
            }
        }
    }
}

/// The destination, under `dir`, of an input whose path relative to its base is `rel`.
pub fn destination(dir: &Place, rel: &str, format: OutputFormat) -> Result<Destination, SinkError> {
    match dir {
        Place::Local(dir) => output_path(dir, rel, format).map(Destination::Local),
        Place::S3(prefix) => {
            let rel_out = output_path(Path::new(""), rel, format)?;
            let rel_key: Vec<_> = rel_out
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect();
            Ok(Destination::S3(S3Location {
                bucket: prefix.bucket.clone(),
                key: format!("{}{}", prefix.key, rel_key.join("/")),
            }))
        }
    }
}

/// Writes one encoded result to `dest`: atomically on disk, or one PutObject with `format`'s
/// Content-Type (retried when transient).
pub async fn write(
    dest: &Destination,
    bytes: Vec<u8>,
    format: OutputFormat,
    s3: Option<&S3>,
    metadata: &[(String, String)],
) -> Result<(), SinkError> {
    match dest {
        Destination::Local(path) => {
            let path = path.clone();
            let job = tokio::task::spawn_blocking(move || write_atomic(&path, &bytes));
            job.await.unwrap_or_else(|e| {
                Err(SinkError::Write {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })
            })
        }
        Destination::S3(loc) => {
            let s3 = s3.ok_or_else(|| SinkError::NoS3Client {
                dest: dest.to_string(),
            })?;
            Ok(s3
                .put_with_metadata(&loc.bucket, &loc.key, bytes, format.mime(), metadata)
                .await?)
        }
    }
}

/// What is at a destination now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    pub size: u64,
    /// Modification time, nanoseconds since the epoch (0 in S3, where only the size is compared).
    pub mtime_ns: i64,
}

/// What is at `dest` now, or `None` when nothing is there (or it cannot be checked).
pub async fn existing(dest: &Destination, s3: Option<&S3>) -> Option<Existing> {
    match dest {
        Destination::Local(path) => {
            let meta = tokio::fs::metadata(path).await.ok()?;
            let mtime = meta.modified().ok()?;
            let mtime_ns = mtime
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            meta.is_file().then_some(Existing {
                size: meta.len(),
                mtime_ns,
            })
        }
        Destination::S3(loc) => {
            let size = s3?.head(&loc.bucket, &loc.key).await.ok()??;
            Some(Existing { size, mtime_ns: 0 })
        }
    }
}

/// Uploads the local file at `path` to `dest` with `content_type` (the report, at the end of a
/// run).
pub async fn upload_file(
    s3: &S3,
    path: &Path,
    dest: &S3Location,
    content_type: &str,
) -> Result<(), SinkError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| SinkError::Write {
            path: path.to_owned(),
            source,
        })?;
    Ok(s3.put(&dest.bucket, &dest.key, bytes, content_type).await?)
}

/// The destination of an input whose path relative to its base is `rel` (`/`-separated).
pub fn output_path(dir: &Path, rel: &str, format: OutputFormat) -> Result<PathBuf, SinkError> {
    let unsafe_path = |why| SinkError::UnsafePath {
        rel: rel.to_owned(),
        why,
    };
    if rel.is_empty() {
        return Err(unsafe_path("empty path"));
    }
    if rel.starts_with('/') {
        return Err(unsafe_path("absolute path"));
    }
    if rel.contains('\\') {
        return Err(unsafe_path("backslash in path"));
    }
    // A control character is a legal byte in a file name and an S3 key, but not in a file a
    // user can see, type or pass to another tool.
    if rel.chars().any(char::is_control) {
        return Err(unsafe_path("control character in path"));
    }
    let mut out = dir.to_owned();
    for segment in rel.split('/') {
        match segment {
            "" => return Err(unsafe_path("empty path segment")),
            "." | ".." => return Err(unsafe_path("`.` or `..` segment")),
            s => out.push(s),
        }
    }
    out.set_extension(format.extension());
    Ok(out)
}

/// `s` with each control character written as a `\u{..}` escape, so messages never carry one.
pub(crate) fn escape_controls(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Writes `bytes` to `path` atomically, creating parent folders, with the umask's permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    crate::atomic_file::write(path, bytes).map_err(|source| SinkError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_relative_path_with_format_extension() {
        let p = output_path(Path::new("out"), "a/b/1.JPG", OutputFormat::Png).unwrap();
        assert_eq!(p, PathBuf::from("out/a/b/1.png"));
        let p = output_path(Path::new("out"), "x.tar.jpg", OutputFormat::Webp).unwrap();
        assert_eq!(p, PathBuf::from("out/x.tar.webp"));
    }

    #[test]
    fn refuses_paths_that_escape() {
        for rel in [
            "../x.jpg",
            "a/../../x.jpg",
            "/etc/x.jpg",
            "a\\b.jpg",
            "a//b.jpg",
            "",
            "a\u{1}b.jpg",
            "a/b\n.jpg",
            "\u{1b}[2J.jpg",
        ] {
            let err = output_path(Path::new("out"), rel, OutputFormat::Png).unwrap_err();
            assert_eq!(err.reason(), Reason::UnsafeOutputPath, "{rel}");
            assert!(!err.to_string().contains(char::is_control), "{err}");
        }
        let err = output_path(Path::new("out"), "a\u{1}b.jpg", OutputFormat::Png).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsafe output path `a\\u{1}b.jpg`: control character in path"
        );
    }

    #[test]
    fn s3_destinations_mirror_the_clean_relative_path() {
        let dir = Place::S3(S3Location {
            bucket: "out".into(),
            key: "done/".into(),
        });
        let d = destination(&dir, "a/b/1.JPG", OutputFormat::Webp).unwrap();
        assert_eq!(d.to_string(), "s3://out/done/a/b/1.webp");
        for rel in ["../x.jpg", "/x.jpg", "a\\b.jpg", "a//b.jpg"] {
            let err = destination(&dir, rel, OutputFormat::Png).unwrap_err();
            assert_eq!(err.reason(), Reason::UnsafeOutputPath, "{rel}");
        }
        let local = Place::Local(PathBuf::from("out"));
        let d = destination(&local, "x/y.png", OutputFormat::Jpeg).unwrap();
        assert_eq!(d, Destination::Local(PathBuf::from("out/x/y.jpg")));
    }

    #[test]
    fn writes_atomically_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/out.png");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.png"]);
    }
}
