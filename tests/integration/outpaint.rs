//! `outpaint` end to end: locally the fitted backdrop continues into the new margins (the photo
//! kept exactly), a textured backdrop's flat extension is flagged and escalated to Stable
//! Outpaint on the Bedrock double, whose request is validated field by field; costs equal the
//! double's billed tally and a rerun pays nothing.

use image::{Rgb, RgbImage};
use tempfile::TempDir;

use crate::harness::product_photo;
use crate::support::bedrock_double::BedrockDouble;
use retouch::ledger::{Status, StepRecord};
use retouch::money::Usd;
use retouch::reason::Reason;

const OUTPAINT: &str = "stability.stable-outpaint-v1:0";
const PRICE: f64 = 0.06;

/// Coarse wood-like stripes with a product in the middle: a backdrop no flat extension matches.
fn textured(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let inside = x > w / 3 && x < 2 * w / 3 && y > h / 3 && y < 2 * h / 3;
        if inside {
            Rgb([40, 60, 160])
        } else if (x / 7 + y / 11) % 2 == 0 {
            Rgb([150, 100, 60])
        } else {
            Rgb([200, 150, 100])
        }
    })
}

fn project(step: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(dir.path().join("photos")).unwrap();
    let manifest = format!(
        r#"version: 1
name: outpaint
inputs: ["../photos/*.png"]
output: {{ dir: ../out, format: png }}
steps:
  - op: outpaint
{step}
limits: {{ concurrency: 2, rpm: {{ stability-outpaint: 600 }} }}
aws: {{ region: us-east-1 }}
"#
    );
    std::fs::write(dir.path().join("pipelines/test.yaml"), manifest).unwrap();
    product_photo(300, 200)
        .save(dir.path().join("photos/plain.png"))
        .unwrap();
    textured(240, 200)
        .save(dir.path().join("photos/wood.png"))
        .unwrap();
    dir
}

async fn run(dir: &TempDir, double: &BedrockDouble, run_id: &str) -> Vec<StepRecord> {
    crate::support::retouch::run_with_double(dir.path(), double, run_id).await
}

fn open(dir: &TempDir, rel: &str) -> image::RgbaImage {
    image::open(dir.path().join(rel)).unwrap().to_rgba8()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_extension_continues_plain_backdrops_and_escalates_textured_ones() {
    let double = BedrockDouble::start().await;
    let dir = project(
        "    models: [local]\n    aspect: \"1:1\"\n    escalate: { below: 0.8, to: [stability-outpaint] }",
    );
    let rows = run(&dir, &double, "first").await;
    let of = |name: &str| -> Vec<&StepRecord> {
        rows.iter().filter(|r| r.image.ends_with(name)).collect()
    };
    // The plain sweep: extended locally, square, no flag, free.
    let plain = of("plain.png");
    assert_eq!(plain.len(), 1, "{plain:#?}");
    assert_eq!(
        (plain[0].model.as_str(), plain[0].status),
        ("local", Status::Ok)
    );
    assert_eq!(plain[0].output_size, Some((300, 300)));
    assert_eq!(plain[0].qa.as_ref().unwrap().score(), 1.0);
    let photo = image::open(dir.path().join("photos/plain.png"))
        .unwrap()
        .to_rgba8();
    let out = open(&dir, "out/plain.png");
    assert_eq!(out.dimensions(), (300, 300));
    for (x, y) in [(0, 0), (150, 100), (299, 199)] {
        assert_eq!(
            out.get_pixel(x, y + 50).0,
            photo.get_pixel(x, y).0,
            "kept exactly"
        );
    }
    // The backdrop continues: the new top row is within a few levels of the photo's top row.
    let (a, b) = (out.get_pixel(10, 0).0[0], photo.get_pixel(10, 0).0[0]);
    assert!(a.abs_diff(b) <= 4, "{a} vs {b}");

    // The textured one: the flat local extension is flagged and redone remotely.
    let wood = of("wood.png");
    assert_eq!(wood.len(), 2, "{wood:#?}");
    assert_eq!(
        (wood[0].model.as_str(), wood[0].reason),
        ("local", Reason::Escalated)
    );
    assert!(
        wood[0]
            .qa
            .as_ref()
            .unwrap()
            .flags_text()
            .contains("flat-extension"),
        "{:?}",
        wood[0].qa
    );
    assert_eq!(
        (wood[1].model.as_str(), wood[1].reason, wood[1].status),
        (OUTPAINT, Reason::EscalationPassed, Status::Ok)
    );
    assert_eq!(wood[1].cost, Usd::from_dollars(PRICE).unwrap());
    assert_eq!(wood[1].output_size, Some((240, 240)));
    // The request: only the sides that grow, the image, the format.
    let body = double.last_body(OUTPAINT).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["down", "image", "output_format", "up"]);
    assert_eq!(
        (body["up"].as_u64(), body["down"].as_u64()),
        (Some(20), Some(20))
    );
    // The double painted the margins; the photo is back in the middle, exactly.
    let out = open(&dir, "out/wood.png");
    assert_eq!(out.get_pixel(5, 2).0, [120, 40, 160, 255]);
    let photo = image::open(dir.path().join("photos/wood.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.get_pixel(100, 120).0, photo.get_pixel(100, 100).0);

    // Costs equal the billed tally; a rerun calls nothing and pays nothing.
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    let billed = double.successes(OUTPAINT);
    assert_eq!(total, Usd::from_dollars(PRICE * billed as f64).unwrap());
    let before = double.requests(OUTPAINT);
    let again = run(&dir, &double, "again").await;
    assert!(again.iter().all(|r| r.cost == Usd::ZERO), "{again:#?}");
    assert_eq!(double.requests(OUTPAINT), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_margins_are_sent_as_asked() {
    let double = BedrockDouble::start().await;
    let dir = project(
        "    models: [stability-outpaint]\n    left: 100\n    right: 60\n    prompt: \"white studio sweep\"",
    );
    let rows = run(&dir, &double, "first").await;
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(
            (r.model.as_str(), r.status),
            (OUTPAINT, Status::Ok),
            "{r:?}"
        );
    }
    let body = double.last_body(OUTPAINT).unwrap();
    assert_eq!(
        (body["left"].as_u64(), body["right"].as_u64()),
        (Some(100), Some(60))
    );
    assert_eq!(body["prompt"], "white studio sweep");
    assert!(body.get("up").is_none() && body.get("down").is_none());
    assert_eq!(open(&dir, "out/plain.png").dimensions(), (460, 200));
    assert_eq!(double.successes(OUTPAINT), 2);
}
