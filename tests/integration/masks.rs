//! `inpaint` and `erase` with a mask file per image (`mask: ../masks/{path}.png`, white =
//! change): the local fill, Stability Erase Object and Stable Image Inpaint against the double.
//! Pixels outside the mask come back bit for bit whatever the model did to them; a missing mask
//! fails only its image; the mask's content is part of the cache key; manifests that mix a
//! described region with mask-taking models (or the reverse) are refused.

use image::{GrayImage, Luma, Rgb, RgbImage};
use tempfile::TempDir;

use crate::harness::{Test, product_photo};
use crate::support::bedrock_double::BedrockDouble;
use retouch::ledger::{Status, StepRecord};
use retouch::money::Usd;
use retouch::reason::Reason;

const ERASE: &str = "stability.stable-image-erase-object-v1:0";
const INPAINT: &str = "stability.stable-image-inpaint-v1:0";

/// The sticker's box: a red square on the backdrop, top left.
const STICKER: (u32, u32, u32, u32) = (12, 10, 36, 30);

fn photo_with_sticker() -> RgbImage {
    let mut img = product_photo(200, 160);
    let (x0, y0, x1, y1) = STICKER;
    for y in y0..y1 {
        for x in x0..x1 {
            img.put_pixel(x, y, Rgb([220, 20, 20]));
        }
    }
    img
}

/// White over the sticker, with a 4 px margin.
fn sticker_mask() -> GrayImage {
    let (x0, y0, x1, y1) = STICKER;
    GrayImage::from_fn(200, 160, |x, y| {
        let inside = (x0 - 4..x1 + 4).contains(&x) && (y0 - 4..y1 + 4).contains(&y);
        Luma([if inside { 255 } else { 0 }])
    })
}

fn project(steps: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["pipelines", "photos/sub", "masks/sub"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let manifest = format!(
        r#"version: 1
name: masks
inputs: ["../photos/**/*.png"]
output: {{ dir: ../out, format: png }}
steps:
{steps}
limits: {{ concurrency: 2, rpm: {{ stability-erase: 600, stability-inpaint: 600 }} }}
aws: {{ region: us-east-1 }}
"#
    );
    std::fs::write(dir.path().join("pipelines/test.yaml"), manifest).unwrap();
    for (i, rel) in ["a", "sub/b"].into_iter().enumerate() {
        // Different content (identical images would share one paid result).
        let mut photo = photo_with_sticker();
        photo.put_pixel(199, 159, Rgb([240, 240, 240 - i as u8]));
        photo
            .save(dir.path().join(format!("photos/{rel}.png")))
            .unwrap();
        sticker_mask()
            .save(dir.path().join(format!("masks/{rel}.png")))
            .unwrap();
    }
    dir
}

async fn run(dir: &TempDir, double: &BedrockDouble, run_id: &str) -> Vec<StepRecord> {
    crate::support::retouch::run_with_double(dir.path(), double, run_id).await
}

/// Every pixel the mask leaves alone is the input's, exactly; none inside is the sticker's red.
fn only_the_mask_changed(dir: &TempDir, rel: &str) {
    let input = image::open(dir.path().join(format!("photos/{rel}.png")))
        .unwrap()
        .to_rgb8();
    let out = image::open(dir.path().join(format!("out/{rel}.png")))
        .unwrap()
        .to_rgb8();
    let mask = sticker_mask();
    for (x, y, p) in out.enumerate_pixels() {
        if mask.get_pixel(x, y).0[0] == 0 {
            assert_eq!(
                p,
                input.get_pixel(x, y),
                "{rel} at {x},{y}: outside the mask"
            );
        } else {
            assert!(
                p.0[0] < 200 || p.0[1] > 100,
                "{rel} at {x},{y}: sticker left {p:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_fill_removes_the_masked_sticker_and_a_missing_mask_fails_only_its_image() {
    let double = BedrockDouble::start().await;
    let dir = project("  - op: erase\n    models: [local]\n    mask: \"../masks/{path}.png\"\n");
    // A third photo without a mask.
    photo_with_sticker()
        .save(dir.path().join("photos/c.png"))
        .unwrap();
    let rows = run(&dir, &double, "first").await;
    assert_eq!(rows.len(), 3);
    let row = |image: &str| rows.iter().find(|r| r.image.ends_with(image)).unwrap();
    for image in ["a.png", "sub/b.png"] {
        let r = row(image);
        assert_eq!((r.status, r.model.as_str()), (Status::Ok, "local"), "{r:?}");
        assert_eq!(r.cost, Usd::ZERO);
        // 1,008 of 32,000 pixels: a small fill, no flag.
        assert_eq!(r.qa.as_ref().map(|q| q.flags.len()), Some(0), "{r:?}");
    }
    only_the_mask_changed(&dir, "a");
    only_the_mask_changed(&dir, "sub/b");
    let c = row("c.png");
    assert_eq!(
        (c.status, c.reason),
        (Status::Failed, Reason::MaskUnreadable)
    );
    assert!(c.error.contains("masks/c.png"), "{}", c.error);
    // The mask is part of the key: a different mask for `a` redoes `a` only.
    let before = std::fs::read(dir.path().join("out/a.png")).unwrap();
    let moved = GrayImage::from_fn(200, 160, |x, y| {
        Luma([if x >= 150 && y >= 120 { 255 } else { 0 }])
    });
    moved.save(dir.path().join("masks/a.png")).unwrap();
    run(&dir, &double, "second").await;
    let after = std::fs::read(dir.path().join("out/a.png")).unwrap();
    assert_ne!(before, after, "a new mask, a new result");
    let b_again = image::open(dir.path().join("out/sub/b.png")).unwrap();
    assert_eq!(b_again.width(), 200);
    assert_eq!(double.requests(ERASE), 0, "local only: nothing was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mask_files_go_to_erase_object_and_inpaint_and_only_the_mask_changes() {
    let double = BedrockDouble::start().await;
    let dir = project(
        r#"  - op: erase
    models: [stability-erase]
    mask: "../masks/{path}.png"
    fallback: fail"#,
    );
    let rows = run(&dir, &double, "first").await;
    let price = Usd::from_dollars(0.07).unwrap();
    for r in &rows {
        assert_eq!((r.status, r.model.as_str()), (Status::Ok, ERASE), "{r:?}");
        assert_eq!(r.cost, price);
    }
    let body = double.last_body(ERASE).unwrap();
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["image", "mask", "output_format"]);
    // The double nudged every pixel outside the mask; the result keeps the input's there.
    only_the_mask_changed(&dir, "a");
    only_the_mask_changed(&dir, "sub/b");
    assert_eq!(double.successes(ERASE), 2);
    let again = run(&dir, &double, "again").await;
    assert!(again.iter().all(|r| r.cost == Usd::ZERO), "{again:#?}");
    assert_eq!(double.requests(ERASE), 2);

    // Inpaint with a mask file: Stable Image Inpaint paints the prompt inside it.
    let double = BedrockDouble::start().await;
    let dir = project(
        r#"  - op: inpaint
    models: [stability-inpaint]
    mask: "../masks/{path}.png"
    prompt: "a small green leaf"
    fallback: skip"#,
    );
    let rows = run(&dir, &double, "first").await;
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Ok && r.cost == price),
        "{rows:#?}"
    );
    let body = double.last_body(INPAINT).unwrap();
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["image", "mask", "output_format", "prompt"]);
    assert_eq!(body["prompt"], "a small green leaf");
    only_the_mask_changed(&dir, "a");
}

#[test]
fn a_region_the_models_cannot_take_is_a_manifest_error() {
    let check = |steps: &str, needles: &[&str]| {
        let yaml = format!(
            "version: 1\nname: m\ninputs: [\"../photos/*.png\"]\noutput: {{ dir: ../out }}\nsteps:\n{steps}"
        );
        let out = Test::new()
            .manifest(&yaml)
            .image("photos/a.png", 64, 64)
            .run(&["check", "pipelines/test.yaml"])
            .code(2);
        for needle in needles {
            assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
        }
    };
    check(
        "  - { op: erase, models: [stability-search-replace], mask: \"../m/{path}.png\", fallback: skip }\n",
        &[
            "stability-search-replace finds the region from a description",
            "stability-erase",
        ],
    );
    check(
        "  - { op: erase, models: [stability-erase], mask_prompt: the tag, fallback: skip }\n",
        &["stability-erase finds the region from a mask file"],
    );
    check(
        "  - { op: erase, models: [local], mask_prompt: the tag }\n",
        &["the local fill needs a mask file"],
    );
    check(
        "  - { op: inpaint, models: [stability-inpaint], prompt: x, mask: ../m/one.png, fallback: skip }\n",
        &["needs `{path}` or `{stem}`"],
    );
    check(
        "  - { op: erase, models: [local], mask: \"../m/{stem}.png\", mask_prompt: x }\n",
        &["sets both `mask_prompt` and `mask`"],
    );
}
