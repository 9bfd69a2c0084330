//! Where local networks live on this machine, and how they get there.
//!
//! Weights are never in the repository or the binary: `retouch models install NAME` puts the
//! file into a per-user folder (`RETOUCH_MODEL_DIR`, else `$XDG_CACHE_HOME/retouch/models`, else
//! `~/.cache/retouch/models`), from the model's upstream URL by default, or from a file or
//! another URL with `--from`. Every byte is checked against the catalog's pinned size and
//! SHA-256 before the file appears under its name (written whole: temporary file, then rename),
//! and again when a run loads it, so a corrupt or substituted file is never used.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::catalog::{LocalModel, local_models};

/// Why a network could not be installed or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no folder for local models: set RETOUCH_MODEL_DIR (or XDG_CACHE_HOME or HOME) to where they should live"
    )]
    NoFolder,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot download {url}: {detail}")]
    Download { url: String, detail: String },
    #[error("{what} is {got} bytes, but {model} is {expected} bytes; it was not installed")]
    Size {
        what: String,
        model: String,
        expected: u64,
        got: u64,
    },
    #[error("{what} has SHA-256 {got}, but {model} must have {expected}; it was not used")]
    Checksum {
        what: String,
        model: String,
        expected: String,
        got: String,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{model} is not installed; install it with `retouch models install {model}`")]
    NotInstalled { model: String },
    #[error(
        "{model} is installed but cannot be loaded ({detail}); reinstall it with `retouch models install {model}`"
    )]
    Unusable { model: String, detail: String },
}

/// A folder of installed networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    /// The user's folder: `RETOUCH_MODEL_DIR`, else `$XDG_CACHE_HOME/retouch/models`, else
    /// `~/.cache/retouch/models` (not created until something is installed).
    pub fn locate() -> Result<ModelStore, StoreError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = if let Some(dir) = var("RETOUCH_MODEL_DIR") {
            PathBuf::from(dir)
        } else if let Some(cache) = var("XDG_CACHE_HOME") {
            PathBuf::from(cache).join("retouch/models")
        } else {
            var("HOME")
                .map(|home| PathBuf::from(home).join(".cache/retouch/models"))
                .ok_or(StoreError::NoFolder)?
        };
        Ok(ModelStore { dir })
    }

    /// The folder `dir` (tests, embedding code).
    pub fn at(dir: impl Into<PathBuf>) -> ModelStore {
        ModelStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `model` is installed, if it is (a file of the right size; its checksum is verified
    /// when loaded).
    pub fn installed(&self, model: &LocalModel) -> Option<PathBuf> {
        let path = self.dir.join(&model.file);
        let len = std::fs::metadata(&path).ok()?.len();
        (len == model.bytes).then_some(path)
    }

    /// The best installed network (highest rank), if any.
    pub fn best_installed(&self) -> Option<&'static LocalModel> {
        local_models().iter().find(|m| self.installed(m).is_some())
    }

    /// The bytes of `model`'s installed file, verified against its checksum.
    pub fn load(&self, model: &LocalModel) -> Result<Vec<u8>, StoreError> {
        let path = self
            .installed(model)
            .ok_or_else(|| StoreError::NotInstalled {
                model: model.name.clone(),
            })?;
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Read {
            path: path.clone(),
            source,
        })?;
        verify(model, &bytes, &path.display().to_string())?;
        Ok(bytes)
    }

    /// Installs `model` from `from` (a file, or an `http(s)://` URL; default: the model's
    /// upstream URL) and returns where it now is. Nothing is written unless every byte checks
    /// out; the file appears whole or not at all.
    pub async fn install(
        &self,
        model: &LocalModel,
        from: Option<&str>,
    ) -> Result<PathBuf, StoreError> {
        let source = from.unwrap_or(&model.url);
        let bytes = if is_url(source) {
            download(source, model.bytes).await?
        } else {
            let path = Path::new(source);
            std::fs::read(path).map_err(|e| StoreError::Read {
                path: path.to_owned(),
                source: e,
            })?
        };
        verify(model, &bytes, source)?;
        let dest = self.dir.join(&model.file);
        crate::atomic_file::write(&dest, &bytes).map_err(|source| StoreError::Write {
            path: dest.clone(),
            source,
        })?;
        Ok(dest)
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// Checks `bytes` (read from `what`) are exactly `model`'s file.
fn verify(model: &LocalModel, bytes: &[u8], what: &str) -> Result<(), StoreError> {
    if bytes.len() as u64 != model.bytes {
        return Err(StoreError::Size {
            what: what.to_owned(),
            model: model.name.clone(),
            expected: model.bytes,
            got: bytes.len() as u64,
        });
    }
    let got = hex(&Sha256::digest(bytes));
    if got != model.sha256 {
        return Err(StoreError::Checksum {
            what: what.to_owned(),
            model: model.name.clone(),
            expected: model.sha256.clone(),
            got,
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// GETs `url` (following redirects), refusing a body longer than `expected` bytes.
async fn download(url: &str, expected: u64) -> Result<Vec<u8>, StoreError> {
    let fail = |detail: String| StoreError::Download {
        url: url.to_owned(),
        detail,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(e.to_string()))?;
    let mut body = Vec::with_capacity(expected.min(512 << 20) as usize);
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
        if (body.len() + chunk.len()) as u64 > expected {
            return Err(fail(format!(
                "the file is larger than the expected {expected} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_model(bytes: &[u8]) -> LocalModel {
        let mut m = crate::catalog::local_model("u2netp").unwrap().clone();
        m.name = "fake".into();
        m.file = "fake.onnx".into();
        m.bytes = bytes.len() as u64;
        m.sha256 = hex(&Sha256::digest(bytes));
        m
    }

    #[test]
    fn only_exact_bytes_pass() {
        let m = fake_model(b"network weights");
        assert!(verify(&m, b"network weights", "x").is_ok());
        let e = verify(&m, b"network weightz", "x").unwrap_err();
        assert!(matches!(e, StoreError::Checksum { .. }), "{e}");
        let e = verify(&m, b"short", "x").unwrap_err();
        assert!(matches!(e, StoreError::Size { .. }), "{e}");
    }

    #[test]
    fn sha256_of_a_known_text() {
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
