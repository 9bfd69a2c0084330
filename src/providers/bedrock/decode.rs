//! Response decoding: reads a model's JSON, recognises content-filter and inference failures,
//! and maps the returned image back to the size and alpha the step expects.
//!
//! Synchronous and CPU-bound (base64 + PNG decode + resize): call it from rayon, not Tokio.
//! Mapping back never loses resolution on remove-bg: the model's alpha is scaled to the
//! original size and applied to the original pixels.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::RgbaImage;
use serde::Deserialize;

use super::error::{CONTENT_FILTER_TEXT, RemoteError};
use super::{Decoded, Mapping, pixels};
use crate::catalog::{Family, ModelEntry, Op};

/// Nova and Titan: `{"images": [b64…], "error": "…"}`, both optional.
#[derive(Deserialize)]
struct NovaResponse {
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Stability: `{"seeds": […], "finish_reasons": [null|"…"], "images": [b64…]}`, all optional.
#[derive(Deserialize)]
struct StabilityResponse {
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    finish_reasons: Vec<Option<String>>,
}

/// Decodes a 200 response for `op` and maps its image back onto `original`.
pub fn decode_response(
    model: &ModelEntry,
    op: Op,
    body: &[u8],
    original: &RgbaImage,
    mapping: &Mapping,
) -> Result<Decoded, RemoteError> {
    let (b64, billed) = match (mapping_api(model, op), model.family) {
        (super::Api::Converse, _) => converse_image(body)?,
        (_, Family::Nova | Family::Titan) => first_nova_image(body)?,
        (_, Family::Stability) => first_stability_image(body)?,
    };
    let bytes = B64
        .decode(b64.trim())
        .map_err(|e| bad(format!("image is not base64: {e}")))?;
    let result = image::load_from_memory(&bytes)
        .map_err(|e| bad(format!("image does not decode: {e}")))?
        .to_rgba8();
    let image = map_back(op, &result, original, mapping);
    Ok(Decoded {
        image,
        images_billed: billed,
    })
}

/// The API `model` serves `op` through (its catalog task says).
fn mapping_api(model: &ModelEntry, op: Op) -> super::Api {
    match model.spec(op).and_then(|s| s.task.as_deref()) {
        Some("CONVERSE") => super::Api::Converse,
        _ => super::Api::Invoke,
    }
}

/// A `Converse` edit's answer: its image, or why there is none (a content filter or guardrail
/// stopped it; a reply in words only is unreadable, and billed: tokens were used).
fn converse_image(body: &[u8]) -> Result<(String, u32), RemoteError> {
    let a: super::ConverseImageAnswer =
        serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    match (a.image, a.stop_reason.as_str()) {
        (_, "content_filtered" | "guardrail_intervened") => Err(RemoteError::ContentFiltered {
            detail: format!("Converse stopped: {} {}", a.stop_reason, a.text.trim()),
        }),
        (Some(img), _) => Ok((img, 1)),
        (None, reason) => Err(bad(format!(
            "the answer holds no image (stop reason {reason}): {}",
            a.text.trim()
        ))),
    }
}

fn bad(message: String) -> RemoteError {
    RemoteError::BadResponse { message }
}

fn first_nova_image(body: &[u8]) -> Result<(String, u32), RemoteError> {
    let r: NovaResponse = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let billed = r.images.len() as u32;
    match (r.images.into_iter().next(), r.error) {
        (Some(img), _) => Ok((img, billed)),
        (None, Some(e)) if e.contains(CONTENT_FILTER_TEXT) => {
            Err(RemoteError::ContentFiltered { detail: e })
        }
        (None, Some(e)) => Err(RemoteError::ModelError { message: e }),
        (None, None) => Err(bad("response holds no image".into())),
    }
}

fn first_stability_image(body: &[u8]) -> Result<(String, u32), RemoteError> {
    let r: StabilityResponse = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if let Some(reason) = r.finish_reasons.iter().flatten().next() {
        return Err(if reason.starts_with("Filter reason") {
            RemoteError::ContentFiltered {
                detail: reason.clone(),
            }
        } else if reason.contains("Inference error") {
            RemoteError::InferenceError
        } else {
            RemoteError::ModelError {
                message: reason.clone(),
            }
        });
    }
    let billed = r.images.len() as u32;
    let first = r.images.into_iter().next();
    first
        .map(|img| (img, billed))
        .ok_or_else(|| bad("response holds no image".into()))
}

/// Maps the model's output back to what the step expects.
fn map_back(op: Op, result: &RgbaImage, original: &RgbaImage, m: &Mapping) -> RgbaImage {
    let (w, h) = original.dimensions();
    match op {
        Op::RemoveBg => crate::ops::apply_alpha(original, &pixels::alpha_at(result, w, h), None),
        // No model serves frame (the catalog refuses it); keep the input's size if one did.
        Op::Outpaint => {
            let (tw, th) = m.target.unwrap_or(result.dimensions());
            let mut out = pixels::resize(result, tw, th);
            if let Some(margins) = m.margins {
                crate::ops::outpaint::keep_original(&mut out, original, margins);
            }
            out
        }
        // The product goes back over the scene in `PreparedCall::finish`.
        Op::ReplaceBg => pixels::resize(result, w, h),
        // Nothing to map back to: the image is what the model drew, at the size it drew it.
        Op::Generate => result.clone(),
        Op::FixLighting | Op::Frame | Op::Inpaint | Op::Erase | Op::Variation => {
            with_original_alpha(pixels::resize(result, w, h), original, m)
        }
        Op::Upscale => {
            let (tw, th) = m.target.unwrap_or(result.dimensions());
            with_original_alpha(pixels::resize(result, tw, th), original, m)
        }
    }
}

/// Re-applies the original's transparency (the model was sent an opaque image).
fn with_original_alpha(mut img: RgbaImage, original: &RgbaImage, m: &Mapping) -> RgbaImage {
    if !m.had_alpha {
        return img;
    }
    let (w, h) = img.dimensions();
    let alpha = pixels::alpha_at(original, w, h);
    for (p, a) in img.pixels_mut().zip(alpha.pixels()) {
        p[3] = a[0];
    }
    img
}
