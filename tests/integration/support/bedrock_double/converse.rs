//! `POST /model/{modelId}/converse` for the Bedrock double: strict validation of the restJson1
//! request (written from the reference fact sheet, not from the client), a verdict as the
//! reply's text, and `usage` token counts that follow from what was sent.
//!
//! Only vision-capable text models answer; image models get the ValidationException Bedrock
//! gives for them. Token counts: one per 600 pixels of every image, one per 4 characters of
//! text (system and user), and one per 4 characters of the reply.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

/// The models the double answers through Converse (ids after any `us.` prefix).
pub(crate) fn is_converse_model(id: &str) -> bool {
    matches!(
        id.strip_prefix("us.").unwrap_or(id),
        "amazon.nova-lite-v1:0" | "amazon.nova-2-lite-v1:0"
    )
}

/// Nova 2 Omni: answers Converse with an image (an instruction edit, or text to image).
pub(crate) fn is_image_out_model(id: &str) -> bool {
    id.strip_prefix("us.").unwrap_or(id) == "amazon.nova-2-omni-v1:0"
}

/// What a valid request asked.
#[derive(Debug)]
pub(crate) struct Question {
    pub input_tokens: u64,
    pub max_tokens: u64,
    /// Each image's (width, height).
    pub images: Vec<(u32, u32)>,
}

/// An instruction edit (or generation) for Nova 2 Omni: one user message, at most one image,
/// then exactly one instruction; no system prompt or inference settings (the double refuses
/// what retouch never sends, so a change in what is sent shows).
pub(crate) struct Edit {
    pub image: Option<image::DynamicImage>,
    pub instruction: String,
    pub input_tokens: u64,
}

/// Validates an Omni request strictly (on top of [`validate`]).
pub(crate) fn validate_edit(body: &Value) -> Result<Edit, String> {
    let question = validate(body)?;
    let obj = body.as_object().expect("validated");
    known(obj, &["messages"], "request (Nova 2 Omni edit)")?;
    let messages = obj["messages"].as_array().expect("validated");
    if messages.len() != 1 {
        return Err("Nova 2 Omni edits take one user message".into());
    }
    let content = messages[0]["content"].as_array().expect("validated");
    let (images, texts): (Vec<&Value>, Vec<&Value>) =
        content.iter().partition(|b| b.get("image").is_some());
    if images.len() > 1 || texts.len() != 1 || content.last() != texts.first().copied() {
        return Err("Nova 2 Omni edits take at most one image, then one instruction".into());
    }
    let image = match images.first() {
        Some(b) => {
            let b64 = b["image"]["source"]["bytes"].as_str().unwrap_or_default();
            let bytes = B64.decode(b64).map_err(|_| "bad image bytes".to_string())?;
            Some(image::load_from_memory(&bytes).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let instruction = texts[0]["text"].as_str().unwrap_or_default().to_owned();
    Ok(Edit {
        image,
        instruction,
        input_tokens: question.input_tokens,
    })
}

/// The 200 answer to an edit: `png` as the assistant's image (or, filtered, a refusal with
/// stop reason `content_filtered`), with usage: image output counted as 1,200 tokens.
pub(super) fn image_answer(edit: &Edit, png: Option<&[u8]>) -> (Value, u64, u64) {
    let input = edit.input_tokens;
    let (content, stop, output) = match png {
        Some(png) => (
            json!([{ "image": { "format": "png", "source": { "bytes": B64.encode(png) } } }]),
            "end_turn",
            1_200,
        ),
        None => (
            json!([{ "text": "I can't help with that request." }]),
            "content_filtered",
            9,
        ),
    };
    let body = json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": stop,
        "usage": { "inputTokens": input, "outputTokens": output, "totalTokens": input + output },
        "metrics": { "latencyMs": 5 }
    });
    (body, input, output)
}

const TOP_LEVEL: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "performanceConfig",
];
const MAX_IMAGES: usize = 20;
const MAX_IMAGE_BYTES: usize = 3_750_000;
const MAX_SIDE: u32 = 8000;

fn known(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("Unknown field {at}.{k}")),
        None => Ok(()),
    }
}

/// Validates a Converse body; a violation is a ValidationException message.
pub(crate) fn validate(body: &Value) -> Result<Question, String> {
    let obj = body
        .as_object()
        .ok_or("The request body must be a JSON object")?;
    known(obj, TOP_LEVEL, "request")?;
    let mut text_chars = 0usize;
    let mut images = Vec::new();
    if let Some(system) = obj.get("system") {
        for block in system.as_array().ok_or("system must be a list")? {
            let b = block.as_object().ok_or("system blocks must be objects")?;
            known(b, &["text"], "system[]")?;
            let t = b
                .get("text")
                .and_then(Value::as_str)
                .ok_or("system[].text is required")?;
            if t.is_empty() {
                return Err("system[].text must not be empty".into());
            }
            text_chars += t.chars().count();
        }
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages is required and must be a list")?;
    if messages.is_empty() {
        return Err("messages must not be empty".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let m = m.as_object().ok_or("messages[] must be objects")?;
        known(m, &["role", "content"], &format!("messages[{i}]"))?;
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or("messages[].role is required")?;
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if role != expected {
            return Err(format!(
                "A conversation must start with a user message and alternate roles; messages[{i}] is {role}"
            ));
        }
        let content = m
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or("messages[].content must be a non-empty list")?;
        for block in content {
            let b = block.as_object().ok_or("content blocks must be objects")?;
            if b.len() != 1 {
                return Err("Each content block must have exactly one member".into());
            }
            if let Some(t) = b.get("text") {
                let t = t.as_str().ok_or("content[].text must be a string")?;
                if t.is_empty() {
                    return Err("content[].text must not be empty".into());
                }
                text_chars += t.chars().count();
            } else if let Some(img) = b.get("image") {
                if role != "user" {
                    return Err("Images are only allowed in user messages".into());
                }
                images.push(image(img)?);
            } else {
                let k = b.keys().next().cloned().unwrap_or_default();
                return Err(format!("Unsupported content block {k}"));
            }
        }
    }
    if messages.len() % 2 == 0 {
        return Err("The last message must be from the user".into());
    }
    if images.len() > MAX_IMAGES {
        return Err(format!("Too many images: at most {MAX_IMAGES} per request"));
    }
    let mut max_tokens = 5000;
    if let Some(cfg) = obj.get("inferenceConfig") {
        let cfg = cfg.as_object().ok_or("inferenceConfig must be an object")?;
        known(
            cfg,
            &["maxTokens", "temperature", "topP", "stopSequences"],
            "inferenceConfig",
        )?;
        if let Some(n) = cfg.get("maxTokens") {
            max_tokens = n
                .as_u64()
                .filter(|n| (1..=5000).contains(n))
                .ok_or("inferenceConfig.maxTokens must be an integer from 1 to 5000")?;
        }
        for key in ["temperature", "topP"] {
            if let Some(v) = cfg.get(key) {
                v.as_f64()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or(format!(
                        "inferenceConfig.{key} must be a number from 0 to 1"
                    ))?;
            }
        }
    }
    let pixels: u64 = images.iter().map(|&(w, h)| u64::from(w * h)).sum();
    Ok(Question {
        input_tokens: pixels.div_ceil(600) + (text_chars as u64).div_ceil(4),
        max_tokens,
        images,
    })
}

fn image(v: &Value) -> Result<(u32, u32), String> {
    let img = v.as_object().ok_or("image must be an object")?;
    known(img, &["format", "source"], "image")?;
    let format = img
        .get("format")
        .and_then(Value::as_str)
        .ok_or("image.format is required")?;
    if !["png", "jpeg", "gif", "webp"].contains(&format) {
        return Err(format!("Unsupported image format {format}"));
    }
    let source = img
        .get("source")
        .and_then(Value::as_object)
        .ok_or("image.source is required")?;
    known(source, &["bytes", "s3Location"], "image.source")?;
    let b64 = source
        .get("bytes")
        .and_then(Value::as_str)
        .ok_or("image.source.bytes is required")?;
    let bytes = B64
        .decode(b64)
        .map_err(|_| "image.source.bytes is not valid base64".to_string())?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(format!("Image exceeds {MAX_IMAGE_BYTES} bytes"));
    }
    let decoded = image::load_from_memory(&bytes)
        .map_err(|_| "The provided image could not be decoded".to_string())?;
    let sniffed = image::guess_format(&bytes).map_err(|_| "Unknown image bytes".to_string())?;
    let matches = matches!(
        (format, sniffed),
        ("png", image::ImageFormat::Png)
            | ("jpeg", image::ImageFormat::Jpeg)
            | ("gif", image::ImageFormat::Gif)
            | ("webp", image::ImageFormat::WebP)
    );
    if !matches {
        return Err(format!(
            "image.format {format} does not match the image bytes"
        ));
    }
    if decoded.width() > MAX_SIDE || decoded.height() > MAX_SIDE {
        return Err(format!("Image sides must be at most {MAX_SIDE} px"));
    }
    Ok((decoded.width(), decoded.height()))
}

/// The 200 answer: `text` as the assistant's reply, with usage.
pub(super) fn answer(question: &Question, text: &str) -> (Value, u64, u64) {
    let output = (text.chars().count() as u64)
        .div_ceil(4)
        .min(question.max_tokens);
    let input = question.input_tokens;
    let body = json!({
        "output": { "message": { "role": "assistant", "content": [ { "text": text } ] } },
        "stopReason": "end_turn",
        "usage": { "inputTokens": input, "outputTokens": output, "totalTokens": input + output },
        "metrics": { "latencyMs": 3 }
    });
    (body, input, output)
}
