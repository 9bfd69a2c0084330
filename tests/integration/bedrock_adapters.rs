//! Bedrock adapters against the in-process double, through the real AWS SDK client.
//!
//! Every adapter round-trips (encode → strict validation → decode), and every failure the
//! double can produce is classified as the scheduler expects.

use retouch::reason::Reason;
use std::time::Duration;

use crate::support::bedrock_double::{BedrockDouble, Filter, sdk_config};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::{Rgba, RgbaImage};
use retouch::catalog::{Catalog, ModelEntry, Op};
use retouch::providers::bedrock::{
    BedrockClient, ConnectError, ConnectSettings, RemoteError, RemoteParams, RetryAction,
    decode_response, encode_request,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn model(name: &str) -> ModelEntry {
    Catalog::builtin().resolve(name).unwrap().clone()
}

/// A red product on a light grey backdrop.
fn product(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        let inside = x > w / 4 && x < 3 * w / 4 && y > h / 4 && y < 3 * h / 4;
        if inside {
            Rgba([200, 30, 30, 255])
        } else {
            Rgba([235, 235, 235, 255])
        }
    })
}

async fn setup() -> (BedrockDouble, BedrockClient) {
    let double = BedrockDouble::start().await;
    let client = BedrockClient::from_conf(double.sdk_config());
    (double, client)
}

/// Encode → invoke → decode.
async fn run(
    client: &BedrockClient,
    m: &ModelEntry,
    op: Op,
    img: &RgbaImage,
    params: &RemoteParams,
) -> Result<RgbaImage, RemoteError> {
    let req = encode_request(m, op, img, params).unwrap();
    let body = client.invoke(&req.invoke_id, req.body).await?;
    decode_response(m, op, &body, img, &req.mapping).map(|d| d.image)
}

async fn invoke_json(
    client: &BedrockClient,
    id: &str,
    body: &Value,
) -> Result<Vec<u8>, RemoteError> {
    client.invoke(id, serde_json::to_vec(body).unwrap()).await
}

/// Model alias, op, input size, upscale target, expected final size.
type Case = (&'static str, Op, (u32, u32), Option<(u32, u32)>, (u32, u32));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adapter_round_trips() {
    let (double, client) = setup().await;
    let cases: [Case; 10] = [
        ("nova-canvas", Op::RemoveBg, (400, 300), None, (400, 300)),
        ("nova-canvas", Op::FixLighting, (400, 300), None, (400, 300)),
        ("titan-image-v2", Op::RemoveBg, (300, 300), None, (300, 300)),
        (
            "titan-image-v2",
            Op::FixLighting,
            (300, 200),
            None,
            (300, 200),
        ),
        (
            "titan-image-v1",
            Op::FixLighting,
            (300, 300),
            None,
            (300, 300),
        ),
        (
            "stability-remove-bg",
            Op::RemoveBg,
            (200, 150),
            None,
            (200, 150),
        ),
        (
            "stability-fast-upscale",
            Op::Upscale,
            (64, 48),
            None,
            (256, 192),
        ),
        (
            "stability-fast-upscale",
            Op::Upscale,
            (64, 48),
            Some((200, 150)),
            (200, 150),
        ),
        (
            "stability-conservative-upscale",
            Op::Upscale,
            (80, 64),
            None,
            (320, 256),
        ),
        (
            "stability-creative-upscale",
            Op::Upscale,
            (64, 64),
            None,
            (256, 256),
        ),
    ];
    for (alias, op, (w, h), target, want) in cases {
        let m = model(alias);
        let params = RemoteParams {
            target,
            ..Default::default()
        };
        let out = run(&client, &m, op, &product(w, h), &params)
            .await
            .unwrap_or_else(|e| panic!("{alias} {op}: {e}"));
        assert_eq!(out.dimensions(), want, "{alias} {op}");
        if op == Op::RemoveBg {
            assert_eq!(out.get_pixel(1, 1)[3], 0, "{alias}: backdrop keyed out");
            assert_eq!(out.get_pixel(w / 2, h / 2)[3], 255, "{alias}: product kept");
        }
        assert!(double.successes(&m.invoke_id) >= 1, "{alias}");
    }
    // The variation request asked for the catalog's size (Titan: a listed size).
    let body = double
        .last_body("amazon.titan-image-generator-v2:0")
        .unwrap();
    assert_eq!(body["imageGenerationConfig"]["width"], 576);
    assert_eq!(body["imageGenerationConfig"]["height"], 384);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_validation_rejects_extra_fields_and_oversize_images() {
    let (double, client) = setup().await;
    let m = model("nova-canvas");
    let req = encode_request(
        &m,
        Op::RemoveBg,
        &product(400, 300),
        &RemoteParams::default(),
    )
    .unwrap();
    let good: Value = serde_json::from_slice(&req.body).unwrap();
    let mut extra = good.clone();
    extra["imageGenerationConfig"] = serde_json::json!({ "numberOfImages": 1 });
    let mut nested = good.clone();
    nested["backgroundRemovalParams"]["seed"] = 1.into();
    for bad in [extra, nested] {
        let err = invoke_json(&client, &m.invoke_id, &bad).await.unwrap_err();
        assert!(matches!(err, RemoteError::Validation { .. }), "{err:?}");
        assert_eq!(err.action(), RetryAction::FallBack);
    }
    // A 1600 px image is over Titan's 1408 px limit.
    let mut png = std::io::Cursor::new(Vec::new());
    product(1600, 800)
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let oversize = serde_json::json!({
        "taskType": "BACKGROUND_REMOVAL",
        "backgroundRemovalParams": { "image": B64.encode(png.into_inner()) },
    });
    let err = invoke_json(&client, "amazon.titan-image-generator-v2:0", &oversize)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RemoteError::Validation { message } if message.contains("1600x800")),
        "{err:?}"
    );
    assert_eq!(err.reason().as_str(), "fallback-validation");
    assert_eq!(double.successes("amazon.nova-canvas-v1:0"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_is_downscaled_and_alpha_mapped_back() {
    let (double, client) = setup().await;
    let m = model("titan-image-v2");
    let img = product(1800, 900);
    let req = encode_request(&m, Op::RemoveBg, &img, &RemoteParams::default()).unwrap();
    assert_eq!(req.mapping.sent, (1408, 704));
    let body = client.invoke(&req.invoke_id, req.body).await.unwrap();
    let sent = double.last_body(&m.id).unwrap();
    let sent_png = B64
        .decode(sent["backgroundRemovalParams"]["image"].as_str().unwrap())
        .unwrap();
    assert_eq!(image::load_from_memory(&sent_png).unwrap().width(), 1408);
    let out = decode_response(&m, Op::RemoveBg, &body, &img, &req.mapping)
        .unwrap()
        .image;
    assert_eq!(out.dimensions(), (1800, 900));
    // Full-resolution original pixels with the model's alpha scaled up.
    assert_eq!(out.get_pixel(900, 450).0, [200, 30, 30, 255]);
    assert_eq!(out.get_pixel(10, 10)[3], 0);
    assert_eq!(out.get_pixel(1790, 890)[3], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_classified() {
    let (double, client) = setup().await;
    let m = model("stability-fast-upscale");
    let img = product(64, 64);
    let p = RemoteParams::default();
    let faults = [
        (500, "InternalServerException", RetryAction::Retry),
        (503, "ServiceUnavailableException", RetryAction::Retry),
        (429, "ModelNotReadyException", RetryAction::Retry),
        (408, "ModelTimeoutException", RetryAction::Retry),
        (424, "ModelErrorException", RetryAction::FallBack),
        (
            400,
            "ServiceQuotaExceededException",
            RetryAction::OpenCircuit,
        ),
        (404, "ResourceNotFoundException", RetryAction::OpenCircuit),
    ];
    for (status, code, action) in faults {
        double.fail_next(&m.id, 1, status, code);
        let err = run(&client, &m, Op::Upscale, &img, &p).await.unwrap_err();
        assert_eq!(err.action(), action, "{code}: {err:?}");
    }
    // The faults were one-shot: the next call succeeds.
    assert!(run(&client, &m, Op::Upscale, &img, &p).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_window_throttles_with_429() {
    let (double, client) = setup().await;
    let m = model("stability-fast-upscale");
    double.set_rpm(&m.invoke_id, 2);
    let img = product(64, 64);
    let p = RemoteParams::default();
    assert!(run(&client, &m, Op::Upscale, &img, &p).await.is_ok());
    assert!(run(&client, &m, Op::Upscale, &img, &p).await.is_ok());
    let err = run(&client, &m, Op::Upscale, &img, &p).await.unwrap_err();
    assert_eq!(err, RemoteError::Throttled);
    assert_eq!(
        (err.action(), err.reason()),
        (RetryAction::Retry, Reason::FallbackThrottled)
    );
    assert_eq!(double.requests(&m.id), 3);
    assert_eq!(double.successes(&m.id), 2);
    assert_eq!(double.max_in_window(&m.id, Duration::from_secs(60)), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_and_retired_open_the_circuit() {
    let (double, client) = setup().await;
    let nova = model("nova-canvas");
    let img = product(400, 300);
    let p = RemoteParams::default();
    double.deny_access(&nova.id);
    let err = run(&client, &nova, Op::RemoveBg, &img, &p)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::AccessDenied { .. }), "{err:?}");
    assert_eq!(
        (err.action(), err.reason()),
        (RetryAction::OpenCircuit, Reason::FallbackAccessDenied)
    );

    let titan = model("titan-image-v2");
    double.retire(&titan.id);
    let err = run(&client, &titan, Op::RemoveBg, &product(300, 300), &p)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::InvalidModel { .. }), "{err:?}");
    assert_eq!(err.action(), RetryAction::OpenCircuit);

    // Unknown ids look retired; bare Stability ids need the inference profile.
    let err = client
        .invoke("amazon.nova-canvas-v9:0", b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::InvalidModel { .. }), "{err:?}");
    let err = client
        .invoke("stability.stable-fast-upscale-v1:0", b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RemoteError::Validation { message } if message.contains("inference profile")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_filter_signals_fall_back() {
    let (double, client) = setup().await;
    let p = RemoteParams::default();
    let cases = [
        ("nova-canvas", Op::RemoveBg, (400, 300), Filter::Output),
        ("nova-canvas", Op::FixLighting, (400, 300), Filter::Input),
        ("titan-image-v2", Op::RemoveBg, (300, 300), Filter::Output),
        (
            "stability-remove-bg",
            Op::RemoveBg,
            (200, 200),
            Filter::Output,
        ),
        (
            "stability-fast-upscale",
            Op::Upscale,
            (64, 64),
            Filter::Input,
        ),
    ];
    for (alias, op, (w, h), filter) in cases {
        let m = model(alias);
        double.set_filter(&m.id, Some(filter));
        let err = run(&client, &m, op, &product(w, h), &p).await.unwrap_err();
        assert!(
            matches!(err, RemoteError::ContentFiltered { .. }),
            "{alias}: {err:?}"
        );
        assert_eq!(
            (err.action(), err.reason()),
            (RetryAction::FallBack, Reason::FallbackContentFiltered)
        );
    }
    let m = model("stability-remove-bg");
    double.set_filter(&m.id, Some(Filter::InferenceError));
    let err = run(&client, &m, Op::RemoveBg, &product(200, 200), &p)
        .await
        .unwrap_err();
    assert_eq!(
        (err, RetryAction::Retry),
        (
            RemoteError::InferenceError,
            RemoteError::InferenceError.action()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_is_a_retryable_timeout() {
    let double = BedrockDouble::start().await;
    let m = model("stability-fast-upscale");
    double.set_latency(&m.id, Duration::from_secs(3));
    let conf = sdk_config(double.endpoint())
        .to_builder()
        .timeout_config(
            aws_sdk_bedrockruntime::config::timeout::TimeoutConfig::builder()
                .read_timeout(Duration::from_millis(200))
                .build(),
        )
        .build();
    let client = BedrockClient::from_conf(conf);
    let err = run(
        &client,
        &m,
        Op::Upscale,
        &product(64, 64),
        &RemoteParams::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.clone(), err.action()),
        (RemoteError::Timeout, RetryAction::Retry)
    );
}

/// A hand-written HTTP/1.1 request, to control the exact path and headers.
async fn raw_post(endpoint: &str, path: &str, content_type: &str, body: &str) -> String {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: AWS4-HMAC-SHA256 test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_and_percent_encoded_ids_and_content_type() {
    let double = BedrockDouble::start().await;
    let m = model("nova-canvas");
    let req = encode_request(
        &m,
        Op::RemoveBg,
        &product(400, 300),
        &RemoteParams::default(),
    )
    .unwrap();
    let body = String::from_utf8(req.body).unwrap();
    for path in [
        "/model/amazon.nova-canvas-v1:0/invoke",
        "/model/amazon.nova-canvas-v1%3A0/invoke",
    ] {
        let resp = raw_post(double.endpoint(), path, "application/json", &body).await;
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "{path}: {}",
            &resp[..60.min(resp.len())]
        );
    }
    let resp = raw_post(
        double.endpoint(),
        "/model/amazon.nova-canvas-v1%3A0/invoke",
        "application/octet-stream",
        &body,
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"));
    assert!(resp.to_ascii_lowercase().contains(
        "x-amzn-errortype: validationexception:http://internal.amazon.com/coral/com.amazon.bedrock/"
    ));
    assert_eq!(double.successes(&m.id), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_without_credentials_fails_fast() {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
    {
        return; // environment credentials would (rightly) satisfy the chain
    }
    let settings = ConnectSettings {
        region: Some("us-east-1".into()),
        profile: Some("retouch-test-profile-that-does-not-exist".into()),
        credentials_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let err = BedrockClient::connect(&settings).await.unwrap_err();
    assert!(matches!(err, ConnectError::NoCredentials { .. }), "{err:?}");
}
