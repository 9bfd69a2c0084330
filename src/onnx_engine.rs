//! Which engine runs the local segmentation networks: tract (pure Rust, in every build) or ONNX
//! Runtime, loaded once per process from the library `RETOUCH_ONNXRUNTIME` names, in builds with
//! the `onnxruntime` feature (nothing is downloaded at build time; the library usually comes
//! from the `onnxruntime` PyPI wheel).
//!
//! Owns reading the variable and loading the library; `ops::saliency` only runs what it is
//! given, and `providers::local` asks here for each network it loads.

use crate::ops::OpError;
use crate::ops::saliency::{NetInput, SaliencyNet};

/// The environment variable naming the ONNX Runtime library (`libonnxruntime.so.1.x`).
pub const VAR: &str = "RETOUCH_ONNXRUNTIME";

/// Loads `onnx` for `input` on the engine this process uses: ONNX Runtime when this build has
/// it and [`VAR`] names a library (one that does not load is an error: the user asked for it),
/// else tract.
pub fn load(onnx: &[u8], input: NetInput) -> Result<SaliencyNet, OpError> {
    #[cfg(feature = "onnxruntime")]
    if let Some(env) = ort_env::environment()? {
        return SaliencyNet::with_onnxruntime(env, onnx, input);
    }
    SaliencyNet::from_onnx(onnx, input)
}

/// The engine networks loaded now would run on, for people: `tract (pure Rust)` or
/// `onnxruntime (RETOUCH_ONNXRUNTIME=…)`; an error when the named library does not load.
pub fn describe() -> Result<String, OpError> {
    #[cfg(feature = "onnxruntime")]
    if ort_env::environment()?.is_some() {
        let path = std::env::var(VAR).unwrap_or_default();
        return Ok(format!("onnxruntime ({VAR}={path})"));
    }
    let ignored = std::env::var_os(VAR).is_some() && !cfg!(feature = "onnxruntime");
    Ok(if ignored {
        format!("tract (pure Rust; {VAR} is ignored: this build has no `onnxruntime` feature)")
    } else {
        "tract (pure Rust)".to_owned()
    })
}

#[cfg(feature = "onnxruntime")]
mod ort_env {
    use std::sync::OnceLock;

    use ort::environment::Environment;

    use super::VAR;
    use crate::ops::OpError;

    static ENV: OnceLock<Result<Option<Environment>, String>> = OnceLock::new();

    /// The runtime's environment, loaded on first use; `None` when [`VAR`] is unset or empty.
    pub(super) fn environment() -> Result<Option<&'static Environment>, OpError> {
        let env = ENV.get_or_init(|| {
            let Some(path) = std::env::var_os(VAR).filter(|p| !p.is_empty()) else {
                return Ok(None);
            };
            ort::init_from(&path)
                .map_err(|e| format!("{VAR}={}: {e}", path.to_string_lossy()))?
                .with_name("retouch")
                .build()
                .map(Some)
                .map_err(|e| format!("{VAR}: {e}"))
        });
        env.as_ref()
            .map(Option::as_ref)
            .map_err(|e| OpError::Network(e.clone()))
    }
}
