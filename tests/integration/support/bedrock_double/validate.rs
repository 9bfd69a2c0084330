//! Strict request validation for the Bedrock double, written from the reference fact sheet
//! independently of the catalog (so adapter bugs are caught, not mirrored).
//!
//! Each model's body is checked for unknown and missing fields, ranges and image limits; any
//! violation is a `ValidationException` message. A valid body becomes a [`Job`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::{DynamicImage, ImageFormat};
use serde_json::{Map, Value};

/// Which model a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NovaCanvas,
    TitanV2,
    TitanV1,
    StabRemoveBg,
    StabFast,
    StabConservative,
    StabCreative,
    StabInpaint,
    StabOutpaint,
    StabSearchReplace,
    StabControlStructure,
    StabStyleGuide,
    StabErase,
    StabSearchRecolor,
    StabControlSketch,
    StabStyleTransfer,
    /// Text to image (bare ids, us-west-2 only).
    StabCore,
    StabUltra,
    Sd35Large,
}

impl Kind {
    pub(crate) fn is_stability(self) -> bool {
        matches!(
            self,
            Kind::StabRemoveBg
                | Kind::StabFast
                | Kind::StabConservative
                | Kind::StabCreative
                | Kind::StabInpaint
                | Kind::StabOutpaint
                | Kind::StabSearchReplace
                | Kind::StabControlStructure
                | Kind::StabStyleGuide
                | Kind::StabErase
                | Kind::StabSearchRecolor
                | Kind::StabControlSketch
                | Kind::StabStyleTransfer
                | Kind::StabCore
                | Kind::StabUltra
                | Kind::Sd35Large
        )
    }

    /// The text-to-image services: invoked by bare id, in us-west-2 only.
    pub(crate) fn is_generator(self) -> bool {
        matches!(self, Kind::StabCore | Kind::StabUltra | Kind::Sd35Large)
    }
}

/// A validated request: what to render.
pub(super) enum Job {
    RemoveBg {
        img: DynamicImage,
        format: String,
    },
    Variation {
        img: DynamicImage,
        w: u32,
        h: u32,
        n: u32,
    },
    Upscale {
        img: DynamicImage,
        w: u32,
        h: u32,
        format: String,
    },
    /// Repaint what `search_prompt` names (the double: the middle of the image).
    SearchReplace {
        img: DynamicImage,
        format: String,
    },
    /// Extend by these margins (left, right, up, down).
    Outpaint {
        img: DynamicImage,
        margins: [u32; 4],
        format: String,
    },
    /// Remove what the mask covers (the double: the border's colour there; every other pixel
    /// nudged, as a model's re-encoding would).
    Erase {
        img: DynamicImage,
        mask: Option<image::GrayImage>,
        format: String,
    },
    /// Redo `img` in the look of `style` (the double: tinted toward its mean colour).
    StyleTransfer {
        img: DynamicImage,
        style: DynamicImage,
        format: String,
    },
    /// Draw the prompt at this size.
    Generate {
        prompt: String,
        w: u32,
        h: u32,
        format: String,
    },
    /// Repaint the mask's white (or, with no mask, the image's transparent) pixels.
    Inpaint {
        img: DynamicImage,
        mask: Option<image::GrayImage>,
        format: String,
    },
}

/// Input image rules (inclusive bounds; aspect is width / height).
struct Rules {
    min_side: u32,
    max_side: u32,
    min_px: u64,
    max_px: u64,
    aspect: (f64, f64),
    max_bytes: usize,
    webp: bool,
    rgb8_only: bool,
}

const NOVA_IN: Rules = Rules {
    min_side: 320,
    max_side: 4096,
    min_px: 0,
    max_px: 4_194_303,
    aspect: (0.25, 4.0),
    max_bytes: 25_000_000,
    webp: false,
    rgb8_only: true,
};
const TITAN_IN: Rules = Rules {
    min_side: 256,
    max_side: 1408,
    min_px: 0,
    max_px: 1408 * 1408,
    aspect: (0.25, 4.0),
    max_bytes: 5_000_000,
    webp: false,
    rgb8_only: false,
};
const STAB_EDIT_IN: Rules = Rules {
    min_side: 64,
    max_side: u32::MAX,
    min_px: 0,
    max_px: 9_437_184,
    aspect: (0.4, 2.5),
    max_bytes: 25_000_000,
    webp: true,
    rgb8_only: false,
};
const STAB_FAST_IN: Rules = Rules {
    min_side: 32,
    max_side: 1536,
    min_px: 1024,
    max_px: 1_048_576,
    aspect: (0.0, f64::MAX),
    max_bytes: 25_000_000,
    webp: true,
    rgb8_only: false,
};
const STAB_CREATIVE_IN: Rules = Rules {
    min_side: 64,
    max_side: u32::MAX,
    min_px: 4096,
    max_px: 1_048_576,
    aspect: (0.4, 2.5),
    max_bytes: 25_000_000,
    webp: true,
    rgb8_only: false,
};

pub(super) const TITAN_SIZES: [(u32, u32); 25] = [
    (1024, 1024),
    (768, 1152),
    (1152, 768),
    (768, 1280),
    (1280, 768),
    (896, 1152),
    (1152, 896),
    (768, 1408),
    (1408, 768),
    (640, 1408),
    (1408, 640),
    (1152, 640),
    (1173, 640),
    (768, 768),
    (512, 512),
    (384, 576),
    (576, 384),
    (384, 640),
    (640, 384),
    (448, 576),
    (576, 448),
    (384, 704),
    (704, 384),
    (320, 704),
    (704, 320),
];

type Obj = Map<String, Value>;

fn malformed(detail: impl std::fmt::Display) -> String {
    format!("Malformed input request: {detail}, please reformat your input and try again.")
}

/// Validates a body for `kind`.
pub(super) fn validate(kind: Kind, body: &Value) -> Result<Job, String> {
    let obj = body
        .as_object()
        .ok_or_else(|| malformed("#: expected type: JSONObject"))?;
    match kind {
        Kind::NovaCanvas | Kind::TitanV2 | Kind::TitanV1 => validate_task(kind, obj),
        _ => validate_stability(kind, obj),
    }
}

fn check_keys(obj: &Obj, path: &str, allowed: &[&str], required: &[&str]) -> Result<(), String> {
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(malformed(format!(
            "{path}: extraneous key [{k}] is not permitted"
        )));
    }
    if let Some(k) = required.iter().find(|k| !obj.contains_key(**k)) {
        return Err(malformed(format!("{path}: required key [{k}] not found")));
    }
    Ok(())
}

fn sub<'a>(obj: &'a Obj, key: &str) -> Result<&'a Obj, String> {
    obj[key]
        .as_object()
        .ok_or_else(|| malformed(format!("#/{key}: expected type: JSONObject")))
}

fn num_in(obj: &Obj, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, String> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    let n = v
        .as_f64()
        .ok_or_else(|| malformed(format!("#/{key}: expected type: Number")))?;
    if n < lo || n > hi {
        return Err(malformed(format!(
            "#/{key}: {n} is not in range {lo}..{hi}"
        )));
    }
    Ok(Some(n))
}

fn int_in(obj: &Obj, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, String> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    let n = v
        .as_u64()
        .ok_or_else(|| malformed(format!("#/{key}: expected type: Integer")))?;
    if n < lo || n > hi {
        return Err(malformed(format!(
            "#/{key}: {n} is not in range {lo}..{hi}"
        )));
    }
    Ok(Some(n))
}

fn text_in(obj: &Obj, key: &str, min: usize, max: usize) -> Result<(), String> {
    let Some(v) = obj.get(key) else { return Ok(()) };
    let s = v
        .as_str()
        .ok_or_else(|| malformed(format!("#/{key}: expected type: String")))?;
    let n = s.chars().count();
    if n < min || n > max {
        return Err(malformed(format!(
            "#/{key}: expected length {min}..{max}, got {n}"
        )));
    }
    Ok(())
}

fn enum_in(obj: &Obj, key: &str, values: &[&str]) -> Result<String, String> {
    let Some(v) = obj.get(key) else {
        return Ok(values[0].to_string());
    };
    match v.as_str() {
        Some(s) if values.contains(&s) => Ok(s.to_string()),
        _ => Err(malformed(format!("#/{key}: {v} is not a valid enum value"))),
    }
}

/// Decodes a base64 image and checks it against `rules`.
fn image(v: &Value, rules: &Rules) -> Result<DynamicImage, String> {
    let s = v
        .as_str()
        .ok_or_else(|| malformed("#/image: expected type: String"))?;
    let bytes = B64
        .decode(s)
        .map_err(|_| "Invalid base64 encoding for the input image.".to_string())?;
    if bytes.len() > rules.max_bytes {
        return Err(format!(
            "The input image exceeds the maximum size of {} bytes.",
            rules.max_bytes
        ));
    }
    let format =
        image::guess_format(&bytes).map_err(|_| "Unable to decode the input image.".to_string())?;
    let ok_format = matches!(format, ImageFormat::Png | ImageFormat::Jpeg)
        || (rules.webp && format == ImageFormat::WebP);
    if !ok_format {
        return Err(format!("Unsupported input image format {format:?}."));
    }
    let img = image::load_from_memory(&bytes)
        .map_err(|e| format!("Unable to decode the input image: {e}"))?;
    check_pixels(&img, rules)?;
    Ok(img)
}

fn check_pixels(img: &DynamicImage, r: &Rules) -> Result<(), String> {
    let (w, h) = (img.width(), img.height());
    let px = u64::from(w) * u64::from(h);
    let aspect = f64::from(w) / f64::from(h);
    let sides_ok = w >= r.min_side && h >= r.min_side && w <= r.max_side && h <= r.max_side;
    if !sides_ok || px < r.min_px || px > r.max_px {
        return Err(format!(
            "The input image dimensions {w}x{h} are outside the supported range."
        ));
    }
    if aspect < r.aspect.0 * 0.999 || aspect > r.aspect.1 * 1.001 {
        return Err(format!(
            "The input image aspect ratio {aspect:.3} is not supported."
        ));
    }
    if r.rgb8_only {
        use image::ColorType::*;
        match img.color() {
            Rgb8 | L8 => {}
            Rgba8 | La8 if img.to_rgba8().pixels().all(|p| p[3] == 255) => {}
            Rgba8 | La8 => {
                return Err("The input image must not contain transparent pixels.".into());
            }
            c => {
                return Err(format!(
                    "The input image must be 8 bits per channel, got {c:?}."
                ));
            }
        }
    }
    Ok(())
}

fn validate_task(kind: Kind, obj: &Obj) -> Result<Job, String> {
    let task = obj
        .get("taskType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rules = if kind == Kind::NovaCanvas {
        &NOVA_IN
    } else {
        &TITAN_IN
    };
    match task {
        "BACKGROUND_REMOVAL" if kind != Kind::TitanV1 => {
            check_keys(
                obj,
                "#",
                &["taskType", "backgroundRemovalParams"],
                &["backgroundRemovalParams"],
            )?;
            let p = sub(obj, "backgroundRemovalParams")?;
            check_keys(p, "#/backgroundRemovalParams", &["image"], &["image"])?;
            Ok(Job::RemoveBg {
                img: image(&p["image"], rules)?,
                format: "png".into(),
            })
        }
        "IMAGE_VARIATION" => validate_variation(kind, obj, rules),
        "TEXT_IMAGE" => validate_text_image(kind, obj),
        "OUTPAINTING" => validate_outpainting(kind, obj, rules),
        other => Err(malformed(format!(
            "#/taskType: {other} is not a valid enum value for this model"
        ))),
    }
}

fn validate_variation(kind: Kind, obj: &Obj, rules: &Rules) -> Result<Job, String> {
    check_keys(
        obj,
        "#",
        &["taskType", "imageVariationParams", "imageGenerationConfig"],
        &["imageVariationParams"],
    )?;
    let p = sub(obj, "imageVariationParams")?;
    check_keys(
        p,
        "#/imageVariationParams",
        &["images", "similarityStrength", "text", "negativeText"],
        &["images"],
    )?;
    let max_images = if kind == Kind::TitanV1 { 1 } else { 5 };
    let images = p["images"]
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= max_images);
    let images = images.ok_or_else(|| {
        malformed(format!(
            "#/imageVariationParams/images: expected 1..{max_images} items"
        ))
    })?;
    let first = image(&images[0], rules)?;
    for extra in &images[1..] {
        image(extra, rules)?;
    }
    num_in(p, "similarityStrength", 0.2, 1.0)?;
    let text_max = if kind == Kind::NovaCanvas { 1024 } else { 512 };
    text_in(p, "text", 1, text_max)?;
    text_in(p, "negativeText", 1, text_max)?;
    let (w, h, n) = match obj.get("imageGenerationConfig") {
        Some(_) => generation_config(kind, sub(obj, "imageGenerationConfig")?)?,
        None => (1024, 1024, 1),
    };
    Ok(Job::Variation {
        img: first,
        w,
        h,
        n,
    })
}

/// Nova Canvas / Titan `TEXT_IMAGE`: `textToImageParams.text` required (Nova 1–1024 characters,
/// Titan 1–512); Nova also takes `style`; Nova and Titan v2 take image conditioning; the size
/// comes from `imageGenerationConfig` (default 1024×1024).
fn validate_text_image(kind: Kind, obj: &Obj) -> Result<Job, String> {
    check_keys(
        obj,
        "#",
        &["taskType", "textToImageParams", "imageGenerationConfig"],
        &["textToImageParams"],
    )?;
    let p = sub(obj, "textToImageParams")?;
    let mut allowed = vec!["text", "negativeText"];
    if kind != Kind::TitanV1 {
        allowed.extend(["conditionImage", "controlMode", "controlStrength"]);
    }
    if kind == Kind::NovaCanvas {
        allowed.push("style");
    }
    check_keys(p, "#/textToImageParams", &allowed, &["text"])?;
    let text_max = if kind == Kind::NovaCanvas { 1024 } else { 512 };
    text_in(p, "text", 1, text_max)?;
    text_in(p, "negativeText", 1, text_max)?;
    num_in(p, "controlStrength", 0.0, 1.0)?;
    if p.contains_key("controlMode") {
        enum_in(p, "controlMode", &["CANNY_EDGE", "SEGMENTATION"])?;
    }
    let (w, h, _) = match obj.get("imageGenerationConfig") {
        Some(_) => generation_config(kind, sub(obj, "imageGenerationConfig")?)?,
        None => (1024, 1024, 1),
    };
    Ok(Job::Generate {
        prompt: p["text"].as_str().unwrap_or_default().to_owned(),
        w,
        h,
        format: "png".into(),
    })
}

/// Nova Canvas / Titan `OUTPAINTING`: `image` and exactly one of `maskPrompt` / `maskImage`
/// (the size of the image); optional `text`, `negativeText`, `outPaintingMode`; the output
/// is the input's size, so `imageGenerationConfig` must not carry `width` or `height`.
fn validate_outpainting(kind: Kind, obj: &Obj, rules: &Rules) -> Result<Job, String> {
    check_keys(
        obj,
        "#",
        &["taskType", "outPaintingParams", "imageGenerationConfig"],
        &["outPaintingParams"],
    )?;
    let p = sub(obj, "outPaintingParams")?;
    check_keys(
        p,
        "#/outPaintingParams",
        &[
            "image",
            "maskPrompt",
            "maskImage",
            "outPaintingMode",
            "text",
            "negativeText",
        ],
        &["image"],
    )?;
    let text_max = if kind == Kind::NovaCanvas { 1024 } else { 512 };
    text_in(p, "text", 1, text_max)?;
    text_in(p, "negativeText", 1, text_max)?;
    if p.contains_key("outPaintingMode") {
        enum_in(p, "outPaintingMode", &["DEFAULT", "PRECISE"])?;
    }
    let img = image(&p["image"], rules)?;
    match (p.get("maskPrompt"), p.get("maskImage")) {
        (Some(_), None) => text_in(p, "maskPrompt", 1, text_max)?,
        (None, Some(m)) => {
            let m = image(m, rules).map_err(|e| e.replace("input image", "mask"))?;
            if (m.width(), m.height()) != (img.width(), img.height()) {
                return Err("The mask must be the size of the image.".into());
            }
        }
        _ => {
            return Err(malformed(
                "#/outPaintingParams: exactly one of maskPrompt and maskImage is required",
            ));
        }
    }
    if let Some(c) = obj.get("imageGenerationConfig") {
        let c = c
            .as_object()
            .ok_or_else(|| malformed("#/imageGenerationConfig: expected type: JSONObject"))?;
        if c.contains_key("width") || c.contains_key("height") {
            return Err(malformed(
                "#/imageGenerationConfig: width and height cannot be set for OUTPAINTING",
            ));
        }
        generation_config(kind, c)?;
    }
    Ok(Job::SearchReplace {
        img,
        format: "png".into(),
    })
}

fn generation_config(kind: Kind, c: &Obj) -> Result<(u32, u32, u32), String> {
    let allowed = [
        "width",
        "height",
        "quality",
        "cfgScale",
        "numberOfImages",
        "seed",
    ];
    check_keys(c, "#/imageGenerationConfig", &allowed, &[])?;
    enum_in(c, "quality", &["standard", "premium"])?;
    num_in(c, "cfgScale", 1.1, 10.0)?;
    num_in(c, "seed", 0.0, 2_147_483_646.0)?;
    let n = int_in(c, "numberOfImages", 1, 5)?.unwrap_or(1) as u32;
    let w = int_in(c, "width", 1, 100_000)?.unwrap_or(1024) as u32;
    let h = int_in(c, "height", 1, 100_000)?.unwrap_or(1024) as u32;
    let legal = if kind == Kind::NovaCanvas {
        let aspect = f64::from(w) / f64::from(h);
        (320..=4096).contains(&w)
            && (320..=4096).contains(&h)
            && w.is_multiple_of(16)
            && h.is_multiple_of(16)
            && u64::from(w) * u64::from(h) < 4_194_304
            && (0.25..=4.0).contains(&aspect)
    } else {
        TITAN_SIZES.contains(&(w, h))
    };
    if !legal {
        return Err(format!(
            "The requested image size {w}x{h} is not supported."
        ));
    }
    Ok((w, h, n))
}

/// Stable Image Inpaint: `prompt` and `image` required; optional `mask` (same size as the image,
/// white = repaint), `grow_mask` 0–20, `negative_prompt`, `seed`, `style_preset`,
/// `output_format`.
/// Stable Image Erase Object: `image`; optional `mask` (the size of the image), `grow_mask`
/// 0–20, `seed`, `output_format`. No prompt.
fn validate_erase(obj: &Obj) -> Result<Job, String> {
    let allowed = ["image", "mask", "grow_mask", "seed", "output_format"];
    check_keys(obj, "#", &allowed, &["image"])?;
    int_in(obj, "seed", 0, 4_294_967_294)?;
    int_in(obj, "grow_mask", 0, 20)?;
    let format = enum_in(obj, "output_format", &["png", "jpeg", "webp"])?;
    let img = image(&obj["image"], &STAB_EDIT_IN)?;
    let mask = sized_mask(obj, &img)?;
    Ok(Job::Erase { img, mask, format })
}

/// The optional `mask`, which must be the size of the image.
fn sized_mask(obj: &Obj, img: &DynamicImage) -> Result<Option<image::GrayImage>, String> {
    let Some(v) = obj.get("mask") else {
        return Ok(None);
    };
    let m = image(v, &STAB_EDIT_IN).map_err(|e| e.replace("input image", "mask"))?;
    if (m.width(), m.height()) != (img.width(), img.height()) {
        return Err(format!(
            "The mask ({}x{}) must be the size of the image ({}x{}).",
            m.width(),
            m.height(),
            img.width(),
            img.height()
        ));
    }
    Ok(Some(m.to_luma8()))
}

fn validate_inpaint(obj: &Obj) -> Result<Job, String> {
    let allowed = [
        "prompt",
        "image",
        "mask",
        "grow_mask",
        "negative_prompt",
        "seed",
        "style_preset",
        "output_format",
    ];
    check_keys(obj, "#", &allowed, &["prompt", "image"])?;
    text_in(obj, "prompt", 1, 10_000)?;
    text_in(obj, "negative_prompt", 0, 10_000)?;
    int_in(obj, "seed", 0, 4_294_967_294)?;
    int_in(obj, "grow_mask", 0, 20)?;
    if obj.contains_key("style_preset") {
        text_in(obj, "style_preset", 1, 64)?;
    }
    let format = enum_in(obj, "output_format", &["png", "jpeg", "webp"])?;
    let img = image(&obj["image"], &STAB_EDIT_IN)?;
    let mask = sized_mask(obj, &img)?;
    Ok(Job::Inpaint { img, mask, format })
}

/// Stable Outpaint: `image` and at least one of `left`/`right`/`up`/`down` (0–2000); optional
/// `prompt`, `creativity` 0.1–1.0, `seed`, `style_preset`, `output_format`.
fn validate_outpaint(obj: &Obj) -> Result<Job, String> {
    let allowed = [
        "image",
        "left",
        "right",
        "up",
        "down",
        "prompt",
        "creativity",
        "seed",
        "style_preset",
        "output_format",
    ];
    check_keys(obj, "#", &allowed, &["image"])?;
    let mut margins = [0u32; 4];
    for (i, key) in ["left", "right", "up", "down"].into_iter().enumerate() {
        margins[i] = int_in(obj, key, 0, 2000)?.unwrap_or(0) as u32;
    }
    if margins == [0; 4] {
        return Err("At least one of left, right, up or down must be greater than 0.".into());
    }
    text_in(obj, "prompt", 0, 10_000)?;
    num_in(obj, "creativity", 0.1, 1.0)?;
    int_in(obj, "seed", 0, 4_294_967_294)?;
    let format = enum_in(obj, "output_format", &["png", "jpeg", "webp"])?;
    let img = image(&obj["image"], &STAB_EDIT_IN)?;
    Ok(Job::Outpaint {
        img,
        margins,
        format,
    })
}

/// Search and Replace, Control Structure and Style Guide.
fn validate_guided(kind: Kind, obj: &Obj) -> Result<Job, String> {
    let common = [
        "prompt",
        "image",
        "negative_prompt",
        "seed",
        "output_format",
        "style_preset",
    ];
    let (extra, required): (&[&str], &[&str]) = match kind {
        Kind::StabSearchReplace => (
            &["search_prompt", "grow_mask"],
            &["prompt", "image", "search_prompt"],
        ),
        Kind::StabSearchRecolor => (
            &["select_prompt", "grow_mask"],
            &["prompt", "image", "select_prompt"],
        ),
        Kind::StabControlStructure | Kind::StabControlSketch => {
            (&["control_strength"], &["prompt", "image"])
        }
        _ => (&["fidelity", "aspect_ratio"], &["prompt", "image"]),
    };
    let allowed: Vec<&str> = common.iter().chain(extra).copied().collect();
    check_keys(obj, "#", &allowed, required)?;
    text_in(obj, "prompt", 1, 10_000)?;
    text_in(obj, "negative_prompt", 0, 10_000)?;
    int_in(obj, "seed", 0, 4_294_967_294)?;
    for key in ["search_prompt", "select_prompt"] {
        if obj.contains_key(key) {
            text_in(obj, key, 1, 10_000)?;
        }
    }
    int_in(obj, "grow_mask", 0, 20)?;
    num_in(obj, "control_strength", 0.0, 1.0)?;
    num_in(obj, "fidelity", 0.0, 1.0)?;
    if obj.contains_key("aspect_ratio") {
        enum_in(
            obj,
            "aspect_ratio",
            &[
                "16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21",
            ],
        )?;
    }
    if obj.contains_key("style_preset") {
        text_in(obj, "style_preset", 1, 64)?;
    }
    let format = enum_in(obj, "output_format", &["png", "jpeg", "webp"])?;
    let img = image(&obj["image"], &STAB_EDIT_IN)?;
    Ok(match kind {
        Kind::StabSearchReplace | Kind::StabSearchRecolor => Job::SearchReplace { img, format },
        _ => {
            let (w, h) = (img.width(), img.height());
            Job::Variation { img, w, h, n: 1 }
        }
    })
}

/// Stable Style Transfer: `init_image` and `style_image` required (both standard edit input);
/// optional `prompt`, `negative_prompt`, `seed`, `output_format`, `composition_fidelity` 0–1,
/// `style_strength` 0–1, `change_strength` 0.1–1.
fn validate_style_transfer(obj: &Obj) -> Result<Job, String> {
    let allowed = [
        "init_image",
        "style_image",
        "prompt",
        "negative_prompt",
        "seed",
        "output_format",
        "composition_fidelity",
        "style_strength",
        "change_strength",
    ];
    check_keys(obj, "#", &allowed, &["init_image", "style_image"])?;
    text_in(obj, "prompt", 0, 10_000)?;
    text_in(obj, "negative_prompt", 0, 10_000)?;
    int_in(obj, "seed", 0, 4_294_967_294)?;
    num_in(obj, "composition_fidelity", 0.0, 1.0)?;
    num_in(obj, "style_strength", 0.0, 1.0)?;
    num_in(obj, "change_strength", 0.1, 1.0)?;
    let format = enum_in(obj, "output_format", &["png", "jpeg", "webp"])?;
    let img = image(&obj["init_image"], &STAB_EDIT_IN)?;
    let style = image(&obj["style_image"], &STAB_EDIT_IN)
        .map_err(|e| e.replace("input image", "style image"))?;
    Ok(Job::StyleTransfer { img, style, format })
}

/// Aspect ratios of the text-to-image services and the size each returns (about 1 MP).
const T2I_SIZES: [(&str, u32, u32); 9] = [
    ("16:9", 1344, 768),
    ("1:1", 1024, 1024),
    ("21:9", 1536, 640),
    ("2:3", 832, 1216),
    ("3:2", 1216, 832),
    ("4:5", 896, 1088),
    ("5:4", 1088, 896),
    ("9:16", 768, 1344),
    ("9:21", 640, 1536),
];

/// Stable Image Core / Ultra and SD3.5 Large text to image: prompt required; SD3.5 also takes
/// `mode` (only `text-to-image` here: image-to-image needs `image` and `strength`); Core also
/// `style_preset`.
fn validate_generate(kind: Kind, obj: &Obj) -> Result<Job, String> {
    let mut allowed = vec![
        "prompt",
        "negative_prompt",
        "aspect_ratio",
        "seed",
        "output_format",
    ];
    match kind {
        Kind::Sd35Large => allowed.push("mode"),
        Kind::StabCore => allowed.push("style_preset"),
        _ => {}
    }
    check_keys(obj, "#", &allowed, &["prompt"])?;
    text_in(obj, "prompt", 1, 10_000)?;
    text_in(obj, "negative_prompt", 0, 10_000)?;
    int_in(obj, "seed", 0, 4_294_967_294)?;
    if obj.contains_key("mode") {
        enum_in(obj, "mode", &["text-to-image"])?;
    }
    if obj.contains_key("style_preset") {
        text_in(obj, "style_preset", 1, 64)?;
    }
    let names: Vec<&str> = T2I_SIZES.iter().map(|s| s.0).collect();
    let mut ratios = names.clone();
    ratios.rotate_left(1); // the default, 1:1, first
    let ratio = enum_in(obj, "aspect_ratio", &ratios)?;
    let (_, w, h) = T2I_SIZES
        .iter()
        .find(|s| s.0 == ratio)
        .copied()
        .expect("validated");
    let format = enum_in(obj, "output_format", &["png", "jpeg", "webp"])?;
    let prompt = obj["prompt"].as_str().unwrap_or_default().to_owned();
    Ok(Job::Generate {
        prompt,
        w,
        h,
        format,
    })
}

fn validate_stability(kind: Kind, obj: &Obj) -> Result<Job, String> {
    if kind.is_generator() {
        return validate_generate(kind, obj);
    }
    if matches!(
        kind,
        Kind::StabSearchReplace
            | Kind::StabSearchRecolor
            | Kind::StabControlStructure
            | Kind::StabControlSketch
            | Kind::StabStyleGuide
    ) {
        return validate_guided(kind, obj);
    }
    if kind == Kind::StabStyleTransfer {
        return validate_style_transfer(obj);
    }
    if kind == Kind::StabInpaint {
        return validate_inpaint(obj);
    }
    if kind == Kind::StabErase {
        return validate_erase(obj);
    }
    if kind == Kind::StabOutpaint {
        return validate_outpaint(obj);
    }
    let (allowed, required, rules): (&[&str], &[&str], &Rules) = match kind {
        Kind::StabRemoveBg => (&["image", "output_format"], &["image"], &STAB_EDIT_IN),
        Kind::StabFast => (&["image", "output_format"], &["image"], &STAB_FAST_IN),
        Kind::StabConservative => (
            &[
                "prompt",
                "image",
                "creativity",
                "negative_prompt",
                "seed",
                "output_format",
            ],
            &["prompt", "image"],
            &STAB_EDIT_IN,
        ),
        _ => (
            &[
                "prompt",
                "image",
                "creativity",
                "style_preset",
                "negative_prompt",
                "seed",
                "output_format",
            ],
            &["prompt", "image"],
            &STAB_CREATIVE_IN,
        ),
    };
    check_keys(obj, "#", allowed, required)?;
    text_in(obj, "prompt", 0, 10_000)?;
    text_in(obj, "negative_prompt", 0, 10_000)?;
    num_in(obj, "creativity", 0.1, 0.5)?;
    int_in(obj, "seed", 0, 4_294_967_294)?;
    if obj.contains_key("style_preset") {
        text_in(obj, "style_preset", 1, 64)?;
    }
    let format = enum_in(obj, "output_format", &["png", "jpeg", "webp"])?;
    let img = image(&obj["image"], rules)?;
    let (w, h) = (img.width(), img.height());
    Ok(match kind {
        Kind::StabRemoveBg => Job::RemoveBg { img, format },
        Kind::StabFast => Job::Upscale {
            img,
            w: w * 4,
            h: h * 4,
            format,
        },
        _ => {
            // Documented here (AWS gives no exact size): 4x per side, long side capped at 4096.
            let f = (4096.0 / f64::from(w.max(h))).clamp(1.0, 4.0);
            let (ow, oh) = (
                (f64::from(w) * f).round() as u32,
                (f64::from(h) * f).round() as u32,
            );
            Job::Upscale {
                img,
                w: ow,
                h: oh,
                format,
            }
        }
    })
}
