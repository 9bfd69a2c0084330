//! `replace-bg` end to end: locally onto a colour or a picture with a contact shadow, and
//! remotely through Stable Image Inpaint on the Bedrock double (the mask is our own backdrop,
//! the product goes back pixel for pixel), with the request validated field by field, content
//! filters falling back, the CSV's costs equal to what the double billed, and a rerun at $0.

use image::{Rgb, RgbImage};
use tempfile::TempDir;

use retouch::ledger::StepRecord;

use crate::harness::{Retouch, Test, product_photo};
use crate::support::bedrock_double::{BedrockDouble, Filter};
use retouch::ledger::Status;
use retouch::money::Usd;
use retouch::reason::Reason;

const INPAINT: &str = "stability.stable-image-inpaint-v1:0";
const PRICE: f64 = 0.07;

#[test]
fn local_replacement_keeps_the_product_on_the_new_colour_and_picture() {
    let manifest = r##"
version: 1
name: lifestyle
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [local]
  - op: replace-bg
    models: [local]
    background_image: ../backdrops/wall.png
    shadow: 0.8
"##;
    let wall = RgbImage::from_fn(64, 48, |x, _| {
        if x < 32 {
            Rgb([30, 160, 90])
        } else {
            Rgb([30, 90, 160])
        }
    });
    let mut png = Vec::new();
    wall.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let t = Test::new()
        .manifest(manifest)
        .image("photos/p.png", 240, 180)
        .file("backdrops/wall.png", &png);
    let photo = image::open(t.root().join("photos/p.png"))
        .unwrap()
        .to_rgba8();
    let out = t.run(&["run", "pipelines/test.yaml", "-q"]).success();
    let (_, rows) = out.csv("out/report.csv");
    let row = rows.iter().find(|r| &r[3] == "replace-bg").unwrap();
    assert_eq!(
        (&row[4], &row[6], &row[16]),
        ("local", "ok", "1.000"),
        "{row:?}"
    );
    let img = image::open(out.root.join("out/p.png")).unwrap().to_rgba8();
    assert_eq!(img.dimensions(), (240, 180));
    // The wall covers the frame (green left, blue right); the product's middle is as shot.
    assert_eq!(img.get_pixel(3, 3).0, [30, 160, 90, 255]);
    assert_eq!(img.get_pixel(236, 3).0, [30, 90, 160, 255]);
    assert_eq!(img.get_pixel(120, 90).0, photo.get_pixel(120, 90).0);

    // A changed picture is a changed step: the rerun redoes it (local cut-outs keep no pixels
    // in the cache, so the cut-out is replayed for it).
    let red = RgbImage::from_pixel(64, 48, Rgb([200, 20, 20]));
    red.save(out.root.join("backdrops/wall.png")).unwrap();
    let again = Retouch::at(&out.root).run(&["run", "pipelines/test.yaml", "-q"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let (_, rows) = out.csv("out/report.csv");
    let redone = rows.iter().find(|r| &r[3] == "replace-bg").unwrap();
    assert_eq!(&redone[5], "only-permitted", "{redone:?}");
    let img = image::open(out.root.join("out/p.png")).unwrap().to_rgba8();
    assert_eq!(img.get_pixel(3, 3).0, [200, 20, 20, 255]);
}

#[test]
fn a_step_that_may_run_locally_needs_a_background_and_a_remote_one_a_prompt() {
    let manifest = r##"
version: 1
name: lifestyle
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: replace-bg
    models: [stability-inpaint]
  - op: replace-bg
    models: [local]
    background: "#fff"
    background_image: x.png
"##;
    let out = Test::new()
        .manifest(manifest)
        .image("photos/p.png", 100, 80)
        .run(&["check", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr
            .contains("steps[0] (replace-bg) names remote models"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("sets both background and background_image"),
        "{}",
        out.stderr
    );
}

fn project(extra_step: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(dir.path().join("photos")).unwrap();
    let manifest = format!(
        r##"version: 1
name: lifestyle
inputs: ["../photos/*.png"]
output: {{ dir: ../out, format: png }}
steps:
  - op: replace-bg
    models: [stability-inpaint]
    prompt: "on a light oak table in a bright kitchen"
    negative_prompt: "text, watermark"
    background: "#F4F1EA"
    {extra_step}
limits: {{ concurrency: 2, rpm: {{ stability-inpaint: 600 }} }}
aws: {{ region: us-east-1 }}
"##
    );
    std::fs::write(dir.path().join("pipelines/test.yaml"), manifest).unwrap();
    for (i, (w, h)) in [(300, 240), (256, 256), (320, 200)].into_iter().enumerate() {
        product_photo(w, h)
            .save(dir.path().join(format!("photos/p{i}.png")))
            .unwrap();
    }
    dir
}

async fn run(dir: &TempDir, double: &BedrockDouble, run_id: &str) -> Vec<StepRecord> {
    crate::support::retouch::run_with_double(dir.path(), double, run_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inpainting_paints_the_backdrop_keeps_the_product_and_bills_exactly() {
    let double = BedrockDouble::start().await;
    let dir = project("");
    let rows = run(&dir, &double, "first").await;
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(
            (r.model.as_str(), r.reason, r.status),
            (INPAINT, Reason::OnlyPermitted, Status::Ok),
            "{r:?}"
        );
        assert_eq!(r.cost, Usd::from_dollars(PRICE).unwrap());
    }
    // The request, field by field (the double validated it strictly too).
    let body = double.last_body(INPAINT).expect("a request");
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "image",
            "mask",
            "negative_prompt",
            "output_format",
            "prompt"
        ]
    );
    assert_eq!(body["prompt"], "on a light oak table in a bright kitchen");
    assert_eq!(body["negative_prompt"], "text, watermark");
    assert_eq!(body["output_format"], "png");
    // The CSV's total equals what the double billed.
    let billed = double.successes(INPAINT);
    assert_eq!(billed, 3);
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, Usd::from_dollars(PRICE * billed as f64).unwrap());

    // The output: the double's scene (its gradient) around the product, the product as shot.
    let photo = image::open(dir.path().join("photos/p0.png"))
        .unwrap()
        .to_rgba8();
    let out = image::open(dir.path().join("out/p0.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.dimensions(), photo.dimensions());
    let corner = out.get_pixel(2, 2).0;
    assert_eq!(corner[0], 20, "the scene, not the old backdrop: {corner:?}");
    assert_eq!(out.get_pixel(150, 120).0, photo.get_pixel(150, 120).0);

    // A rerun pays nothing and calls nothing.
    let before = double.requests(INPAINT);
    let again = run(&dir, &double, "again").await;
    assert!(
        again
            .iter()
            .all(|r| r.reason == Reason::CacheHit && r.cost == Usd::ZERO)
    );
    assert_eq!(double.requests(INPAINT), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_scene_falls_back_to_the_local_colour_and_is_not_billed() {
    let double = BedrockDouble::start().await;
    double.set_filter(INPAINT, Some(Filter::Output));
    let dir = project("fallback: local");
    let rows = run(&dir, &double, "filtered").await;
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!((r.model.as_str(), r.status), ("local", Status::Ok), "{r:?}");
        assert_eq!(r.cost, Usd::ZERO, "a filtered answer bills nothing: {r:?}");
    }
    let out = image::open(dir.path().join("out/p0.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.get_pixel(2, 2).0, [0xF4, 0xF1, 0xEA, 255]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_replace_finds_the_backdrop_by_description_and_the_product_stays_ours() {
    const SEARCH: &str = "stability.stable-image-search-replace-v1:0";
    let double = BedrockDouble::start().await;
    let dir = project("");
    let path = dir.path().join("pipelines/test.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[stability-inpaint]", "[stability-search-replace]")
        .replace("stability-inpaint: 600", "stability-search-replace: 600");
    std::fs::write(&path, yaml).unwrap();
    let rows = run(&dir, &double, "first").await;
    assert!(
        rows.iter()
            .all(|r| r.model == SEARCH && r.status == Status::Ok),
        "{rows:#?}"
    );
    let body = double.last_body(SEARCH).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    // No mask: the service finds the backdrop itself from the catalog's description.
    assert_eq!(
        keys,
        [
            "image",
            "negative_prompt",
            "output_format",
            "prompt",
            "search_prompt"
        ]
    );
    assert!(
        body["search_prompt"]
            .as_str()
            .unwrap()
            .contains("background")
    );
    assert_eq!(body["prompt"], "on a light oak table in a bright kitchen");
    // The double painted the middle third yellow; the product there is put back exactly.
    let input = image::open(dir.path().join("photos/p1.png"))
        .unwrap()
        .to_rgba8();
    let out = image::open(dir.path().join("out/p1.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.get_pixel(128, 128), input.get_pixel(128, 128));
    assert_eq!(double.successes(SEARCH), 3);
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, Usd::from_dollars(PRICE).unwrap().times(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_canvas_outpainting_keeps_the_described_product_where_its_life_is_extended() {
    const NOVA: &str = "amazon.nova-canvas-v1:0";
    let double = BedrockDouble::start().await;
    let dir = project("");
    std::fs::write(
        dir.path().join("pipelines/extended.yaml"),
        "models:\n  - alias: nova-canvas\n    lifecycle: { status: legacy, end_of_life: \"2027-06-30\" }\n",
    )
    .unwrap();
    let path = dir.path().join("pipelines/test.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[stability-inpaint]", "[nova-canvas, stability-inpaint]");
    std::fs::write(&path, format!("{yaml}catalog: extended.yaml\n")).unwrap();
    let rows = run(&dir, &double, "first").await;
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(
            (r.model.as_str(), r.reason, r.status),
            (NOVA, Reason::Cheapest, Status::Ok),
            "{r:?}"
        );
        assert_eq!(r.cost, Usd::from_dollars(0.04).unwrap(), "Nova's 1 MP tier");
    }
    assert_eq!(double.requests(INPAINT), 0);
    // OUTPAINTING, field by field: the product described (no mask image), the scene from the
    // step's prompt, no width or height (the output is the input's size).
    let body = double.last_body(NOVA).unwrap();
    assert_eq!(body["taskType"], "OUTPAINTING");
    let params = body["outPaintingParams"].as_object().unwrap();
    let mut keys: Vec<&str> = params.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "image",
            "maskPrompt",
            "negativeText",
            "outPaintingMode",
            "text"
        ]
    );
    assert_eq!(params["text"], "on a light oak table in a bright kitchen");
    assert_eq!(params["negativeText"], "text, watermark");
    assert_eq!(params["outPaintingMode"], "PRECISE");
    assert!(params["maskPrompt"].as_str().unwrap().contains("product"));
    assert_eq!(
        body["imageGenerationConfig"],
        serde_json::json!({ "numberOfImages": 1 })
    );
    // The double repainted the middle; the product there is ours, exactly, at the input's size.
    let input = image::open(dir.path().join("photos/p1.png"))
        .unwrap()
        .to_rgba8();
    let out = image::open(dir.path().join("out/p1.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.dimensions(), input.dimensions());
    assert_eq!(out.get_pixel(128, 128), input.get_pixel(128, 128));
    // Billed exactly; without the catalog file Nova Canvas is past end of life and unused.
    assert_eq!(double.successes(NOVA), 3);
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, Usd::from_dollars(0.12).unwrap());
    std::fs::write(&path, yaml).unwrap();
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let rows = run(&dir, &double, "built-in").await;
    assert!(rows.iter().all(|r| r.model == INPAINT), "{rows:#?}");
    assert_eq!(double.requests(NOVA), 3);
}
