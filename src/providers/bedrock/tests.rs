//! Unit tests for the adapters: exact request bodies and response decoding (no network).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::{Rgba, RgbaImage};
use serde_json::{Value, json};

use super::*;
use crate::catalog::{Catalog, ModelEntry};

fn model(name: &str) -> ModelEntry {
    Catalog::builtin().resolve(name).unwrap().clone()
}

fn photo(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        let inside = x > w / 4 && x < 3 * w / 4 && y > h / 4 && y < 3 * h / 4;
        if inside {
            Rgba([200, 30, 30, 255])
        } else {
            Rgba([250, 250, 250, 255])
        }
    })
}

fn body(req: &EncodedRequest) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn png_b64(img: &RgbaImage) -> String {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
    B64.encode(buf.into_inner())
}

#[test]
fn nova_background_removal_body_is_exact() {
    let req = encode_request(
        &model("nova-canvas"),
        Op::RemoveBg,
        &photo(400, 300),
        &RemoteParams::default(),
    )
    .unwrap();
    assert_eq!(req.invoke_id, "amazon.nova-canvas-v1:0");
    let b = body(&req);
    assert_eq!(keys(&b), ["backgroundRemovalParams", "taskType"]);
    assert_eq!(b["taskType"], "BACKGROUND_REMOVAL");
    assert_eq!(keys(&b["backgroundRemovalParams"]), ["image"]);
    let png = B64
        .decode(b["backgroundRemovalParams"]["image"].as_str().unwrap())
        .unwrap();
    let sent = image::load_from_memory(&png).unwrap();
    assert_eq!(sent.color(), image::ColorType::Rgb8, "Nova gets 8-bit RGB");
}

#[test]
fn titan_variation_uses_a_listed_size_and_clamps_text() {
    let params = RemoteParams {
        prompt: Some("x".repeat(2000)),
        ..Default::default()
    };
    let req = encode_request(
        &model("titan-image-v2"),
        Op::FixLighting,
        &photo(700, 350),
        &params,
    )
    .unwrap();
    let b = body(&req);
    assert_eq!(
        keys(&b),
        ["imageGenerationConfig", "imageVariationParams", "taskType"]
    );
    let cfg = &b["imageGenerationConfig"];
    assert_eq!(
        (cfg["width"].as_u64(), cfg["height"].as_u64()),
        (Some(704), Some(384))
    );
    assert_eq!(cfg["numberOfImages"], 1);
    let vp = &b["imageVariationParams"];
    assert_eq!(vp["text"].as_str().unwrap().len(), 512);
    assert_eq!(vp["similarityStrength"], json!(0.9));
    assert_eq!(vp["images"].as_array().unwrap().len(), 1);
}

#[test]
fn stability_bodies_are_flat_snake_case() {
    let fast = encode_request(
        &model("stability-fast-upscale"),
        Op::Upscale,
        &photo(64, 64),
        &RemoteParams::default(),
    )
    .unwrap();
    assert_eq!(fast.invoke_id, "us.stability.stable-fast-upscale-v1:0");
    assert_eq!(keys(&body(&fast)), ["image", "output_format"]);
    let cons = encode_request(
        &model("stability-conservative-upscale"),
        Op::Upscale,
        &photo(64, 64),
        &RemoteParams {
            seed: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    let b = body(&cons);
    assert_eq!(
        keys(&b),
        ["creativity", "image", "output_format", "prompt", "seed"]
    );
    assert!(!b["prompt"].as_str().unwrap().is_empty());
}

#[test]
fn oversized_and_unsupported_inputs() {
    let req = encode_request(
        &model("titan-image-v2"),
        Op::RemoveBg,
        &photo(2000, 1000),
        &RemoteParams::default(),
    )
    .unwrap();
    assert_eq!(req.mapping.sent, (1408, 704));
    assert_eq!(req.mapping.original, (2000, 1000));
    let err = encode_request(
        &model("nova-canvas"),
        Op::Upscale,
        &photo(64, 64),
        &RemoteParams::default(),
    );
    assert!(matches!(err, Err(AdapterError::Unsupported { .. })));
    let err = encode_request(
        &model("stability-remove-bg"),
        Op::RemoveBg,
        &photo(300, 100),
        &RemoteParams::default(),
    );
    assert!(matches!(err, Err(AdapterError::Excluded { .. })));
}

#[test]
fn remove_bg_alpha_is_mapped_back_to_full_resolution() {
    let original = photo(800, 400);
    let mapping = Mapping {
        original: (800, 400),
        sent: (400, 200),
        expected_output: (400, 200),
        had_alpha: false,
        target: None,
        margins: None,
    };
    // The model's answer at half size: left half opaque, right half transparent.
    let answer = RgbaImage::from_fn(400, 200, |x, _| {
        Rgba([1, 2, 3, if x < 200 { 255 } else { 0 }])
    });
    let resp = json!({ "images": [png_b64(&answer)] }).to_string();
    let d = decode_response(
        &model("nova-canvas"),
        Op::RemoveBg,
        resp.as_bytes(),
        &original,
        &mapping,
    )
    .unwrap();
    assert_eq!(d.image.dimensions(), (800, 400));
    assert_eq!(d.images_billed, 1);
    // Original pixels kept (not the model's), alpha from the model.
    assert_eq!(d.image.get_pixel(100, 10).0, [250, 250, 250, 255]);
    assert_eq!(d.image.get_pixel(700, 10)[3], 0);
}

#[test]
fn content_filter_and_inference_signals() {
    let m = Mapping {
        original: (64, 64),
        sent: (64, 64),
        expected_output: (64, 64),
        had_alpha: false,
        target: None,
        margins: None,
    };
    let img = photo(64, 64);
    let nova = json!({ "images": [], "error": "All of the generated images have been blocked by our content filters." });
    let e = decode_response(
        &model("nova-canvas"),
        Op::RemoveBg,
        nova.to_string().as_bytes(),
        &img,
        &m,
    )
    .unwrap_err();
    assert_eq!(e.reason(), crate::reason::Reason::FallbackContentFiltered);
    let stab = json!({ "finish_reasons": ["Filter reason: output image"] });
    let e = decode_response(
        &model("stability-remove-bg"),
        Op::RemoveBg,
        stab.to_string().as_bytes(),
        &img,
        &m,
    )
    .unwrap_err();
    assert!(matches!(e, RemoteError::ContentFiltered { .. }));
    let inf = json!({ "seeds": [1], "finish_reasons": ["Inference error"], "images": [] });
    let e = decode_response(
        &model("stability-remove-bg"),
        Op::RemoveBg,
        inf.to_string().as_bytes(),
        &img,
        &m,
    )
    .unwrap_err();
    assert_eq!(e, RemoteError::InferenceError);
    let e = decode_response(&model("nova-canvas"), Op::RemoveBg, b"<html>", &img, &m).unwrap_err();
    assert_eq!(e.action(), RetryAction::FallBack);
}

#[test]
fn transparent_input_is_flattened_and_alpha_restored() {
    let mut original = photo(64, 64);
    original.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
    let req = encode_request(
        &model("stability-fast-upscale"),
        Op::Upscale,
        &original,
        &RemoteParams {
            target: Some((128, 128)),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(req.mapping.had_alpha);
    let answer = RgbaImage::from_pixel(256, 256, Rgba([9, 9, 9, 255]));
    let resp =
        json!({ "seeds": [0], "finish_reasons": [null], "images": [png_b64(&answer)] }).to_string();
    let d = decode_response(
        &model("stability-fast-upscale"),
        Op::Upscale,
        resp.as_bytes(),
        &original,
        &req.mapping,
    )
    .unwrap();
    assert_eq!(d.image.dimensions(), (128, 128));
    assert_eq!(d.image.get_pixel(0, 0)[3], 0);
    assert_eq!(d.image.get_pixel(64, 64)[3], 255);
}
