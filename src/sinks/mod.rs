//! Writing outputs: where each result goes and writing it atomically.
//!
//! An output's path mirrors its input's path relative to the input's glob base, with the output
//! format's extension. Writes go to a temporary file in the destination folder, are synced, then
//! renamed over the destination, so an interrupted run never leaves a half-written file. A
//! relative path that could escape the output folder is refused.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::manifest::OutputFormat;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("unsafe output path `{rel}`: {why}")]
    UnsafePath { rel: String, why: &'static str },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SinkError {
    /// Short kebab-case reason for the report.
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::UnsafePath { .. } => "unsafe-output-path",
            SinkError::Write { .. } => "write-failed",
        }
    }
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

/// Writes `bytes` to `path` atomically, creating parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let err = |source| SinkError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".retouch-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_data().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
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
        ] {
            let err = output_path(Path::new("out"), rel, OutputFormat::Png).unwrap_err();
            assert_eq!(err.reason(), "unsafe-output-path", "{rel}");
        }
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
