//! Request encoding: fits the image to the model's input rules and builds the exact JSON body.
//!
//! Synchronous and CPU-bound (resize + PNG encode + base64): call it from rayon, not Tokio.
//! Bodies carry only documented fields: Nova/Titan `taskType` + params object
//! (+ `imageGenerationConfig` except for BACKGROUND_REMOVAL); Stability flat snake_case.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::RgbaImage;
use serde_json::{Map, Value, json};

use super::pixels;
use super::{AdapterError, Api, ConverseEdit, EncodedRequest, Mapping, RemoteParams};
use crate::catalog::{Family, Fit, ModelEntry, Op, OpSpec, OutputRule, closest_ratio};

/// Nova's and Titan's text fields are limited to these many characters.
const NOVA_TEXT_MAX: usize = 1024;
const TITAN_TEXT_MAX: usize = 512;
/// Stable Outpaint takes at most this many pixels per side.
const MAX_OUTPAINT: u32 = 2000;

/// Builds the request for doing `op` on `image` with `model`.
pub fn encode_request(
    model: &ModelEntry,
    op: Op,
    image: &RgbaImage,
    params: &RemoteParams,
) -> Result<EncodedRequest, AdapterError> {
    let spec = model.spec(op).ok_or_else(|| AdapterError::Unsupported {
        model: model.alias.clone(),
        op,
    })?;
    if op.makes_image() {
        return generate_request(model, spec, params);
    }
    let (w, h) = image.dimensions();
    let fit = model.fit(op, w, h).map_err(|e| AdapterError::Excluded {
        model: model.alias.clone(),
        reason: e,
    })?;
    let sent = match fit {
        Fit::AsIs => (w, h),
        Fit::Resize { w, h } => (w, h),
    };
    let had_alpha = pixels::has_transparency(image);
    // replace-bg sends the product on its photo (or on white, for a cut-out) and a mask of the
    // backdrop to repaint, made from our own segmentation.
    let mask = match (op, &params.mask) {
        (Op::Inpaint | Op::Erase, Some(mask)) => {
            let png = pixels::mask_png(&mask.pixels, sent.0, sent.1).ok_or_else(|| {
                AdapterError::TooLarge {
                    model: model.alias.clone(),
                    max_bytes: spec.input.max_bytes,
                }
            })?;
            Some(B64.encode(png))
        }
        // Stable Image Inpaint repaints the backdrop mask; Search and Replace finds the
        // backdrop itself, Nova's OUTPAINTING the product (by `maskPrompt`), and a Converse edit
        // takes no mask.
        (Op::ReplaceBg, _)
            if model.family == Family::Stability && spec.params.search_prompt.is_none() =>
        {
            let cut = match &params.product {
                Some(cut) => cut.clone(),
                None => std::sync::Arc::new(crate::ops::replace_bg::product_matte(image).image),
            };
            let png = pixels::backdrop_mask_png(&cut, sent.0, sent.1).ok_or_else(|| {
                AdapterError::TooLarge {
                    model: model.alias.clone(),
                    max_bytes: spec.input.max_bytes,
                }
            })?;
            Some(B64.encode(png))
        }
        _ => None,
    };
    // outpaint: the margins at the size sent (Stability takes 0–2000 per side).
    let margins = match (op, params.margins) {
        (Op::Outpaint, Some(m)) => {
            let sent_margins = m.scaled(f64::from(sent.0) / f64::from(w.max(1)));
            let capped = [
                sent_margins.left,
                sent_margins.right,
                sent_margins.up,
                sent_margins.down,
            ]
            .map(|v| v.min(MAX_OUTPAINT));
            if capped == [0; 4] {
                return Err(AdapterError::NothingToExtend {
                    model: model.alias.clone(),
                });
            }
            Some(capped)
        }
        _ => None,
    };
    let bytes = encode_sent(model, spec, image, sent)?;
    let b64 = B64.encode(&bytes);
    let style = match (&spec.params.style_field, &params.style) {
        (Some(field), Some(style)) => Some((field.clone(), style_picture(model, op, spec, style)?)),
        (Some(_), None) => {
            return Err(AdapterError::StyleExcluded {
                model: model.alias.clone(),
                reason: crate::catalog::Exclusion::OpNotSupported { op },
            });
        }
        _ => None,
    };
    let expected_output = spec.output.output_size(sent.0, sent.1);
    let mapping = Mapping {
        original: (w, h),
        sent,
        expected_output,
        had_alpha,
        target: match (op, params.margins) {
            (Op::Outpaint, Some(m)) => Some(m.extended((w, h))),
            _ => params.target,
        },
        margins: params.margins.filter(|_| op == Op::Outpaint),
    };
    if spec.task.as_deref() == Some(CONVERSE) {
        let format = if bytes.starts_with(b"\x89PNG") {
            "png"
        } else {
            "jpeg"
        };
        let edit = ConverseEdit {
            instruction: instruction(spec, params, None),
            image: Some(b64),
            format: Some(format.into()),
        };
        return Ok(converse_request(model, &edit, mapping));
    }
    let body = match model.family {
        Family::Nova | Family::Titan => {
            nova_titan_body(model.family, spec, &b64, expected_output, params)?
        }
        Family::Stability => {
            let mut body = stability_body(op, spec, b64, mask, params);
            if let Value::Object(map) = &mut body {
                if let Some(m) = margins {
                    for (key, v) in ["left", "right", "up", "down"].into_iter().zip(m) {
                        if v > 0 {
                            map.insert(key.into(), json!(v));
                        }
                    }
                }
                if let Some((field, picture)) = style {
                    map.insert(field, json!(picture));
                }
            }
            body
        }
    };
    Ok(EncodedRequest {
        invoke_id: model.invoke_id.clone(),
        body: serde_json::to_vec(&body).expect("JSON values always serialise"),
        api: Api::Invoke,
        mapping,
    })
}

/// The catalog task of ops served through `Converse` (Nova 2 Omni).
const CONVERSE: &str = "CONVERSE";

/// The instruction for a `Converse` edit: the catalog's template with `{prompt}` (the step's
/// prompt), `{aspect}` and `{negative}` filled in; a step prompt the template has no place for is
/// appended. A negative prompt adds the catalog's `negative_prompt` sentence.
fn instruction(spec: &OpSpec, params: &RemoteParams, aspect: Option<&str>) -> String {
    let prompt = params.prompt.as_deref().unwrap_or("").trim();
    let template = spec.params.prompt.as_deref().unwrap_or("{prompt}");
    let mut text = template
        .replace("{prompt}", prompt)
        .replace("{aspect}", aspect.unwrap_or("1:1"));
    if !template.contains("{prompt}") && !prompt.is_empty() {
        text = format!("{text} {prompt}");
    }
    if let (Some(negative), Some(sentence)) = (
        params
            .negative_prompt
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty()),
        spec.params.negative_prompt.as_deref(),
    ) {
        text = format!("{text} {}", sentence.replace("{negative}", negative));
    }
    text.chars().take(10_000).collect()
}

fn converse_request(model: &ModelEntry, edit: &ConverseEdit, mapping: Mapping) -> EncodedRequest {
    EncodedRequest {
        invoke_id: model.invoke_id.clone(),
        body: serde_json::to_vec(edit).expect("JSON values always serialise"),
        api: Api::Converse,
        mapping,
    }
}

/// Text to image: no image is sent; the body names the prompt, the aspect ratio closest to the
/// one asked among those the catalog lists for the model, and the seed.
fn generate_request(
    model: &ModelEntry,
    spec: &OpSpec,
    params: &RemoteParams,
) -> Result<EncodedRequest, AdapterError> {
    let (aw, ah) = params.aspect.unwrap_or((1, 1));
    let OutputRule::AspectRatio { sizes } = &spec.output else {
        return Err(AdapterError::UnknownTask {
            task: format!("{} without aspect-ratio sizes", Op::Generate),
        });
    };
    let (ratio, [ow, oh]) =
        closest_ratio(sizes, aw, ah).ok_or_else(|| AdapterError::UnknownTask {
            task: format!("{} without aspect-ratio sizes", Op::Generate),
        })?;
    let mapping = Mapping {
        original: (0, 0),
        sent: (0, 0),
        expected_output: (ow, oh),
        had_alpha: false,
        target: None,
        margins: None,
    };
    if spec.task.as_deref() == Some(CONVERSE) {
        let edit = ConverseEdit {
            instruction: instruction(spec, params, Some(ratio)),
            image: None,
            format: None,
        };
        return Ok(converse_request(model, &edit, mapping));
    }
    let body = match model.family {
        Family::Stability => {
            let mut body = Map::new();
            let prompt = params.prompt.clone().unwrap_or_default();
            body.insert(
                "prompt".into(),
                json!(prompt.chars().take(10_000).collect::<String>()),
            );
            insert_text(
                &mut body,
                "negative_prompt",
                params.negative_prompt.as_ref(),
                10_000,
            );
            body.insert("aspect_ratio".into(), json!(ratio));
            if let Some(mode) = &spec.params.mode {
                body.insert("mode".into(), json!(mode));
            }
            if let Some(seed) = params.seed {
                body.insert("seed".into(), json!(seed));
            }
            body.insert("output_format".into(), json!("png"));
            Value::Object(body)
        }
        Family::Nova | Family::Titan => text_image_body(model, spec, params, (ow, oh))?,
    };
    Ok(EncodedRequest {
        invoke_id: model.invoke_id.clone(),
        body: serde_json::to_vec(&body).expect("JSON values always serialise"),
        api: Api::Invoke,
        mapping,
    })
}

/// Nova Canvas / Titan `TEXT_IMAGE`: the prompt (refused, not cut, when longer than the model
/// takes: a shortened prompt asks for another picture), the size of the ratio asked, the seed
/// (these models take at most 2,147,483,646: a larger one is sent modulo 2,147,483,647, the
/// same on every run).
fn text_image_body(
    model: &ModelEntry,
    spec: &OpSpec,
    params: &RemoteParams,
    (w, h): (u32, u32),
) -> Result<Value, AdapterError> {
    let task = spec.task.as_deref().unwrap_or_default();
    if task != "TEXT_IMAGE" {
        return Err(AdapterError::UnknownTask { task: task.into() });
    }
    let max = text_max(model.family);
    let mut tp = Map::new();
    for (key, text) in [
        ("text", params.prompt.as_ref()),
        ("negativeText", params.negative_prompt.as_ref()),
    ] {
        let Some(text) = text.map(|t| t.trim()).filter(|t| !t.is_empty()) else {
            continue;
        };
        let chars = text.chars().count();
        if chars > max {
            return Err(AdapterError::PromptTooLong {
                model: model.alias.clone(),
                chars,
                max,
            });
        }
        tp.insert(key.into(), json!(text));
    }
    if !tp.contains_key("text") {
        return Err(AdapterError::PromptTooLong {
            model: model.alias.clone(),
            chars: 0,
            max,
        });
    }
    Ok(json!({
        "taskType": task,
        "textToImageParams": tp,
        "imageGenerationConfig": generation_config(spec, params, Some((w, h))),
    }))
}

/// Nova's and Titan's `imageGenerationConfig`: one image, `size` when the task takes one (not
/// OUTPAINTING: its output is the input's size), the catalog's quality, and the seed (these
/// models take at most 2,147,483,646: a larger one is sent modulo 2,147,483,647, the same on
/// every run).
fn generation_config(
    spec: &OpSpec,
    params: &RemoteParams,
    size: Option<(u32, u32)>,
) -> Map<String, Value> {
    let mut cfg = Map::new();
    cfg.insert("numberOfImages".into(), json!(1));
    if let Some((w, h)) = size {
        cfg.insert("width".into(), json!(w));
        cfg.insert("height".into(), json!(h));
    }
    if let Some(q) = &spec.params.quality {
        cfg.insert("quality".into(), json!(q));
    }
    if let Some(seed) = params.seed {
        cfg.insert("seed".into(), json!(seed % 2_147_483_647));
    }
    cfg
}

fn text_max(family: Family) -> usize {
    if family == Family::Nova {
        NOVA_TEXT_MAX
    } else {
        TITAN_TEXT_MAX
    }
}

fn nova_titan_body(
    family: Family,
    spec: &OpSpec,
    b64: &str,
    (ow, oh): (u32, u32),
    params: &RemoteParams,
) -> Result<Value, AdapterError> {
    let task = spec.task.as_deref().unwrap_or_default();
    let text_max = text_max(family);
    match task {
        "BACKGROUND_REMOVAL" => Ok(json!({
            "taskType": task,
            "backgroundRemovalParams": { "image": b64 },
        })),
        "IMAGE_VARIATION" => {
            let mut vp = Map::new();
            vp.insert("images".into(), json!([b64]));
            let similarity = params.similarity.or(spec.params.similarity);
            if let Some(s) = similarity {
                vp.insert(
                    "similarityStrength".into(),
                    json!(round3(s.clamp(0.2, 1.0))),
                );
            }
            let prompt = params.prompt.as_ref().or(spec.params.prompt.as_ref());
            let negative = params
                .negative_prompt
                .as_ref()
                .or(spec.params.negative_prompt.as_ref());
            insert_text(&mut vp, "text", prompt, text_max);
            insert_text(&mut vp, "negativeText", negative, text_max);
            Ok(json!({
                "taskType": task,
                "imageVariationParams": vp,
                "imageGenerationConfig": generation_config(spec, params, Some((ow, oh))),
            }))
        }
        // replace-bg: keep what `maskPrompt` describes (the product), paint the step's prompt
        // around it at the input's size (no width or height may be sent).
        "OUTPAINTING" => {
            let mut op = Map::new();
            op.insert("image".into(), json!(b64));
            let keep = spec.params.mask_prompt.clone().unwrap_or_default();
            insert_text(&mut op, "maskPrompt", Some(&keep), text_max);
            insert_text(&mut op, "text", params.prompt.as_ref(), text_max);
            insert_text(
                &mut op,
                "negativeText",
                params.negative_prompt.as_ref(),
                text_max,
            );
            if let Some(mode) = &spec.params.outpainting_mode {
                op.insert("outPaintingMode".into(), json!(mode));
            }
            Ok(json!({
                "taskType": task,
                "outPaintingParams": op,
                "imageGenerationConfig": generation_config(spec, params, None),
            }))
        }
        other => Err(AdapterError::UnknownTask {
            task: other.to_string(),
        }),
    }
}

/// The step's style picture fitted to the model's input rules (like the image itself) and
/// encoded, base64.
fn style_picture(
    model: &ModelEntry,
    op: Op,
    spec: &OpSpec,
    style: &crate::manifest::Picture,
) -> Result<String, AdapterError> {
    let (w, h) = style.pixels.dimensions();
    let fit = model
        .fit(op, w, h)
        .map_err(|reason| AdapterError::StyleExcluded {
            model: model.alias.clone(),
            reason,
        })?;
    let (sw, sh) = match fit {
        Fit::AsIs => (w, h),
        Fit::Resize { w, h } => (w, h),
    };
    Ok(B64.encode(encode_sent(model, spec, &style.pixels, (sw, sh))?))
}

/// `image` resized to `(w, h)`, flattened on white and encoded as the model takes it (JPEG when
/// it accepts JPEG and PNG would not fit its byte limit).
fn encode_sent(
    model: &ModelEntry,
    spec: &OpSpec,
    image: &RgbaImage,
    (w, h): (u32, u32),
) -> Result<Vec<u8>, AdapterError> {
    let rgb = pixels::flatten_on_white(&pixels::resize(image, w, h));
    let jpeg_ok = spec.input.formats.iter().any(|f| f == "jpeg");
    pixels::encode_rgb(&rgb, spec.input.max_bytes, jpeg_ok).ok_or_else(|| AdapterError::TooLarge {
        model: model.alias.clone(),
        max_bytes: spec.input.max_bytes,
    })
}

/// Inserts a non-empty text field, cut to `max` characters.
fn insert_text(map: &mut Map<String, Value>, key: &str, text: Option<&String>, max: usize) {
    if let Some(t) = text.map(|t| t.trim()).filter(|t| !t.is_empty()) {
        map.insert(key.into(), json!(t.chars().take(max).collect::<String>()));
    }
}

/// Stability services: the prompt-driven ones are inpainting (replace-bg: the step's prompt
/// describes the scene; the mask is the backdrop) and the upscalers whose catalog spec has a
/// default prompt (conservative, creative); the others take only the image.
fn stability_body(
    op: Op,
    spec: &OpSpec,
    b64: String,
    mask: Option<String>,
    params: &RemoteParams,
) -> Value {
    let mut body = Map::new();
    let image_field = spec.params.image_field.as_deref().unwrap_or("image");
    body.insert(image_field.into(), json!(b64));
    body.insert("output_format".into(), json!("png"));
    if let Some(mask) = mask {
        body.insert("mask".into(), json!(mask));
    }
    let prompted = (op == Op::Upscale && spec.params.prompt.is_some()) || op == Op::ReplaceBg;
    let masked = body.contains_key("mask");
    match op {
        Op::ReplaceBg if spec.params.search_prompt.is_some() => {
            let search = spec.params.search_prompt.clone().unwrap_or_default();
            body.insert("search_prompt".into(), json!(search));
            prompt_fields(&mut body, spec, params);
            return Value::Object(body);
        }
        // A mask file: Stable Image Inpaint paints `prompt` in the mask; Erase Object removes
        // what the mask covers (no prompt).
        Op::Inpaint if masked => {
            prompt_fields(&mut body, spec, params);
            return Value::Object(body);
        }
        Op::Erase if masked => {
            if let Some(seed) = params.seed {
                body.insert("seed".into(), json!(seed));
            }
            return Value::Object(body);
        }
        Op::Inpaint | Op::Erase => {
            // Search and Replace: find `mask_prompt`, paint `prompt` there (erase: the default
            // prompt describes the surroundings continuing). Search and Recolor: the same, the
            // description in `select_prompt` and the prompt a colour.
            let search = params.mask_prompt.clone().unwrap_or_default();
            let field = spec
                .params
                .search_field
                .as_deref()
                .unwrap_or("search_prompt");
            body.insert(field.into(), json!(search));
            prompt_fields(&mut body, spec, params);
            return Value::Object(body);
        }
        Op::Variation => {
            // Control Structure keeps the input's structure at `control_strength`; Style Guide
            // keeps its style at `fidelity` (the catalog names the field; `similarity` sets it).
            prompt_fields(&mut body, spec, params);
            let field = spec
                .params
                .strength_field
                .as_deref()
                .unwrap_or("control_strength");
            let strength = params.similarity.or(spec.params.similarity);
            if let Some(s) = strength {
                body.insert(field.into(), json!(round3(s.clamp(0.0, 1.0))));
            }
            return Value::Object(body);
        }
        _ => {}
    }
    if op == Op::Outpaint {
        // Optional prompt: the step's, else none (the model continues what it sees).
        insert_text(&mut body, "prompt", params.prompt.as_ref(), 10_000);
        if let Some(seed) = params.seed {
            body.insert("seed".into(), json!(seed));
        }
        return Value::Object(body);
    }
    if prompted {
        let prompt = params.prompt.as_ref().or(spec.params.prompt.as_ref());
        body.insert("prompt".into(), json!(prompt.cloned().unwrap_or_default()));
        if let Some(c) = spec.params.creativity {
            body.insert("creativity".into(), json!(round3(c)));
        }
        let negative = params
            .negative_prompt
            .as_ref()
            .or(spec.params.negative_prompt.as_ref());
        if let Some(n) = negative.filter(|n| !n.is_empty()) {
            body.insert("negative_prompt".into(), json!(n));
        }
        if let Some(seed) = params.seed {
            body.insert("seed".into(), json!(seed));
        }
    }
    Value::Object(body)
}

/// `prompt` (the step's, else the catalog's default), `negative_prompt` when given, and `seed`:
/// the fields every prompted Stability edit takes alike.
fn prompt_fields(body: &mut Map<String, Value>, spec: &OpSpec, params: &RemoteParams) {
    let prompt = params.prompt.as_ref().or(spec.params.prompt.as_ref());
    body.insert("prompt".into(), json!(prompt.cloned().unwrap_or_default()));
    insert_text(
        body,
        "negative_prompt",
        params.negative_prompt.as_ref(),
        10_000,
    );
    if let Some(seed) = params.seed {
        body.insert("seed".into(), json!(seed));
    }
}

/// f32 → f64 without the binary noise (0.9f32 would print as 0.8999999761581421).
fn round3(v: f32) -> f64 {
    (f64::from(v) * 1000.0).round() / 1000.0
}
