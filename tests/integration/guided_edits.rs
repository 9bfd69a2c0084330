//! The remote-only edits against the Bedrock double: `inpaint` and `erase` by description
//! (Stability Search and Replace: `search_prompt` from the step's `mask_prompt`) and `variation`
//! (Stability Control Structure or Style Guide, `similarity` as their strength field). Requests
//! are validated field by field; the CSV's costs equal what the double billed; a rerun pays
//! nothing; a model that cannot serve leaves the image as it is (`fallback: skip`); a manifest
//! asking these ops to run locally is refused.

use tempfile::TempDir;

use crate::harness::{Test, product_photo};
use crate::support::bedrock_double::{BedrockDouble, Filter};
use retouch::catalog::Op;
use retouch::ledger::{Status, StepRecord};
use retouch::money::Usd;

const SEARCH: &str = "stability.stable-image-search-replace-v1:0";
const STRUCTURE: &str = "stability.stable-image-control-structure-v1:0";
const STYLE: &str = "stability.stable-image-style-guide-v1:0";

fn project(steps: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(dir.path().join("photos")).unwrap();
    let manifest = format!(
        r#"version: 1
name: guided
inputs: ["../photos/*.png"]
output: {{ dir: ../out, format: png }}
steps:
{steps}
limits: {{ concurrency: 2, rpm: {{ stability-search-replace: 600, stability-control-structure: 600, stability-style-guide: 600 }} }}
aws: {{ region: us-east-1 }}
"#
    );
    std::fs::write(dir.path().join("pipelines/test.yaml"), manifest).unwrap();
    for (i, (w, h)) in [(300, 240), (256, 256)].into_iter().enumerate() {
        product_photo(w, h)
            .save(dir.path().join(format!("photos/p{i}.png")))
            .unwrap();
    }
    dir
}

async fn run(dir: &TempDir, double: &BedrockDouble, run_id: &str) -> Vec<StepRecord> {
    crate::support::retouch::run_with_double(dir.path(), double, run_id).await
}

fn keys(body: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inpaint_erase_and_variation_call_their_services_and_bill_exactly() {
    let double = BedrockDouble::start().await;
    let dir = project(
        r#"  - op: erase
    models: [stability-search-replace]
    mask_prompt: "the price sticker"
    fallback: skip
  - op: inpaint
    models: [stability-search-replace]
    mask_prompt: "the lid"
    prompt: "a brushed steel lid"
    fallback: skip
  - op: variation
    models: [stability-control-structure, stability-style-guide]
    prompt: "the same product in matte black"
    similarity: 0.8
    fallback: skip"#,
    );
    let rows = run(&dir, &double, "first").await;
    assert_eq!(rows.len(), 6);
    let price = Usd::from_dollars(0.07).unwrap();
    for r in &rows {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.cost, price, "{r:?}");
        let want = if r.op == Op::Variation {
            STRUCTURE
        } else {
            SEARCH
        };
        assert_eq!(r.model, want, "equal prices: the first listed wins");
    }
    // The last search-and-replace body was the inpaint step's: every field as documented.
    let body = double.last_body(SEARCH).unwrap();
    assert_eq!(
        keys(&body),
        ["image", "output_format", "prompt", "search_prompt"]
    );
    assert_eq!(body["search_prompt"], "the lid");
    assert_eq!(body["prompt"], "a brushed steel lid");
    let body = double.last_body(STRUCTURE).unwrap();
    assert_eq!(
        keys(&body),
        ["control_strength", "image", "output_format", "prompt"]
    );
    assert_eq!(body["control_strength"], 0.8);
    // The result is the double's, at the input's size.
    let out = image::open(dir.path().join("out/p0.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.dimensions(), (300, 240));
    // Costs equal the billed tally; a rerun calls nothing.
    let billed = double.successes(SEARCH) + double.successes(STRUCTURE);
    assert_eq!(billed, 6);
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, price.times(billed as u32));
    let again = run(&dir, &double, "again").await;
    assert!(again.iter().all(|r| r.cost == Usd::ZERO), "{again:#?}");
    assert_eq!(double.successes(SEARCH) + double.successes(STRUCTURE), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn style_guide_takes_fidelity_and_a_filtered_erase_leaves_the_image() {
    let double = BedrockDouble::start().await;
    double.set_filter(SEARCH, Some(Filter::Output));
    let dir = project(
        r#"  - op: erase
    models: [stability-search-replace]
    mask_prompt: "the logo"
    fallback: skip
  - op: variation
    models: [stability-style-guide]
    prompt: "studio shot, warm light"
    fallback: fail"#,
    );
    let rows = run(&dir, &double, "first").await;
    let erase: Vec<_> = rows.iter().filter(|r| r.op == Op::Erase).collect();
    assert!(
        erase
            .iter()
            .all(|r| r.status == Status::Skipped && r.cost == Usd::ZERO),
        "{erase:#?}"
    );
    let body = double.last_body(STYLE).unwrap();
    assert_eq!(
        keys(&body),
        ["fidelity", "image", "output_format", "prompt"]
    );
    assert_eq!(body["fidelity"], 0.5, "the catalog's default");
    let variations: Vec<_> = rows.iter().filter(|r| r.op == Op::Variation).collect();
    assert_eq!(variations.len(), 2);
    assert!(
        variations.iter().all(|r| r.status == Status::Ok),
        "{variations:#?}"
    );
}

#[test]
fn remote_only_ops_refuse_to_run_locally() {
    let manifest = r#"
version: 1
name: guided
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: erase
    models: [local]
    mask_prompt: "the tag"
  - op: variation
    models: [stability-control-structure]
    prompt: "x"
  - op: inpaint
    models: [stability-search-replace]
    fallback: skip
    prompt: "y"
"#;
    let out = Test::new()
        .manifest(manifest)
        .image("photos/p.png", 100, 80)
        .run(&["check", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr
            .contains("may run locally, but the local fill needs a mask file, not `mask_prompt`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("steps[1] (variation) has no local implementation to fall back to"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("steps[2] (inpaint) needs `mask_prompt`"),
        "{}",
        out.stderr
    );
}

const RECOLOR: &str = "stability.stable-image-search-recolor-v1:0";
const SKETCH: &str = "stability.stable-image-control-sketch-v1:0";
const TRANSFER: &str = "stability.stable-style-transfer-v1:0";

/// A flat picture of one colour, saved as PNG at `rel` under `dir`.
fn flat(dir: &TempDir, rel: &str, (w, h): (u32, u32), rgb: [u8; 3]) {
    let path = dir.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

fn mean(img: &image::RgbaImage) -> [f64; 3] {
    let n = f64::from(img.width() * img.height());
    let mut m = [0.0; 3];
    for p in img.pixels() {
        for c in 0..3 {
            m[c] += f64::from(p[c]) / n;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recolor_sketch_and_style_transfer_send_their_own_fields_and_bill_exactly() {
    let double = BedrockDouble::start().await;
    let dir = project(
        r#"  - op: inpaint
    models: [stability-search-recolor]
    mask_prompt: "the lid"
    prompt: "glossy cherry red"
    fallback: skip
  - op: variation
    models: [stability-control-sketch]
    prompt: "the same product drawn as a clean studio render"
    similarity: 0.6
    fallback: skip
  - op: variation
    models: [stability-style-transfer]
    prompt: "in the brand's look"
    style_image: ../styles/look.png
    similarity: 0.85
    fallback: skip"#,
    );
    flat(&dir, "styles/look.png", (200, 150), [255, 0, 0]);
    let rows = run(&dir, &double, "first").await;
    assert_eq!(rows.len(), 6, "{rows:#?}");
    for r in &rows {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let (model, usd) = match (r.op, r.step) {
            (Op::Inpaint, _) => (RECOLOR, 0.07),
            (_, 1) => (SKETCH, 0.07),
            _ => (TRANSFER, 0.08),
        };
        assert_eq!(
            (r.model.as_str(), r.cost),
            (model, Usd::from_dollars(usd).unwrap())
        );
    }
    // Search and Recolor: the description goes in `select_prompt`, the colour in `prompt`.
    let body = double.last_body(RECOLOR).unwrap();
    assert_eq!(
        keys(&body),
        ["image", "output_format", "prompt", "select_prompt"]
    );
    assert_eq!(body["select_prompt"], "the lid");
    assert_eq!(body["prompt"], "glossy cherry red");
    // Control Sketch: similarity as control_strength.
    let body = double.last_body(SKETCH).unwrap();
    assert_eq!(
        keys(&body),
        ["control_strength", "image", "output_format", "prompt"]
    );
    assert_eq!(body["control_strength"], 0.6);
    // Style Transfer: the photo as init_image, the step's picture as style_image, similarity
    // as composition_fidelity.
    let body = double.last_body(TRANSFER).unwrap();
    assert_eq!(
        keys(&body),
        [
            "composition_fidelity",
            "init_image",
            "output_format",
            "prompt",
            "style_image"
        ]
    );
    assert_eq!(body["composition_fidelity"], 0.85);
    use base64::Engine;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(body["style_image"].as_str().unwrap())
        .unwrap();
    let style = image::load_from_memory(&sent).unwrap().to_rgba8();
    assert_eq!(style.dimensions(), (200, 150));
    assert_eq!(style.get_pixel(10, 10).0, [255, 0, 0, 255]);
    // The double tints toward the style's colour: the result took the look.
    let out = image::open(dir.path().join("out/p1.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.dimensions(), (256, 256));
    let m = mean(&out);
    assert!(m[0] > m[1] + 60.0, "red look: {m:?}");
    // Costs equal the billed tally.
    let billed = |m| double.successes(m);
    assert_eq!(
        (billed(RECOLOR), billed(SKETCH), billed(TRANSFER)),
        (2, 2, 2)
    );
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, Usd::from_dollars(0.44).unwrap());
    // A rerun pays nothing; a new style picture pays for the style step only.
    let again = run(&dir, &double, "again").await;
    assert!(again.iter().all(|r| r.cost == Usd::ZERO), "{again:#?}");
    flat(&dir, "styles/look.png", (200, 150), [0, 0, 255]);
    let restyled = run(&dir, &double, "restyled").await;
    let paid: Vec<_> = restyled.iter().filter(|r| r.cost > Usd::ZERO).collect();
    assert_eq!(paid.len(), 2, "{restyled:#?}");
    assert!(paid.iter().all(|r| r.model == TRANSFER));
    assert_eq!(
        (billed(RECOLOR), billed(SKETCH), billed(TRANSFER)),
        (2, 2, 4)
    );
    let out = image::open(dir.path().join("out/p1.png"))
        .unwrap()
        .to_rgba8();
    let m = mean(&out);
    assert!(m[2] > m[0] + 60.0, "now the blue look: {m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_style_transfer_bills_nothing_and_a_failing_recolor_is_retried() {
    let double = BedrockDouble::start().await;
    double.set_filter(TRANSFER, Some(Filter::Output));
    double.fail_next(RECOLOR, 1, 503, "ServiceUnavailableException");
    let dir = project(
        r#"  - op: inpaint
    models: [stability-search-recolor]
    mask_prompt: "the strap"
    prompt: "navy blue"
    fallback: fail
  - op: variation
    models: [stability-style-transfer]
    prompt: "in the brand's look"
    style_image: ../styles/look.png
    fallback: skip"#,
    );
    flat(&dir, "styles/look.png", (128, 128), [20, 120, 40]);
    let rows = run(&dir, &double, "first").await;
    let recolor: Vec<_> = rows.iter().filter(|r| r.op == Op::Inpaint).collect();
    assert!(
        recolor.iter().all(|r| r.status == Status::Ok),
        "{recolor:#?}"
    );
    assert_eq!(
        recolor.iter().map(|r| r.attempts).sum::<u32>(),
        3,
        "one image needed a second attempt: {recolor:#?}"
    );
    let styled: Vec<_> = rows.iter().filter(|r| r.op == Op::Variation).collect();
    assert!(
        styled
            .iter()
            .all(|r| r.status == Status::Skipped && r.cost == Usd::ZERO),
        "{styled:#?}"
    );
    assert_eq!(double.successes(TRANSFER), 0);
    let body = double.last_body(TRANSFER).unwrap();
    assert_eq!(body["composition_fidelity"], 0.9, "the catalog's default");
}

#[test]
fn style_image_goes_with_the_models_that_take_one_and_must_be_readable() {
    let manifest = |models: &str, style: &str| {
        format!(
            r#"
version: 1
name: styled
inputs: ["../photos/*.png"]
output: {{ dir: ../out, format: png }}
steps:
  - op: variation
    models: [{models}]
    prompt: "x"
    fallback: skip
    {style}
"#
        )
    };
    let check = |yaml: String| {
        Test::new()
            .manifest(&yaml)
            .image("photos/p.png", 100, 80)
            .image("out/p.png", 100, 80)
            .run(&["check", "pipelines/test.yaml"])
    };
    let out = check(manifest("stability-style-transfer", "")).code(2);
    assert!(
        out.stderr
            .contains("steps[0]: stability-style-transfer needs `style_image`"),
        "{}",
        out.stderr
    );
    let out = check(manifest(
        "stability-control-structure",
        "style_image: ../photos/p.png",
    ))
    .code(2);
    assert!(
        out.stderr.contains(
            "stability-control-structure takes no style picture and would ignore `style_image`"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("stability-style-transfer"),
        "{}",
        out.stderr
    );
    let out = check(manifest(
        "stability-style-transfer",
        "style_image: ../styles/missing.png",
    ))
    .code(2);
    assert!(
        out.stderr
            .contains("step 1 (variation): cannot use style_image"),
        "{}",
        out.stderr
    );
    // A run that would write its output over the style picture does not start.
    let out = check(manifest(
        "stability-style-transfer",
        "style_image: ../out/p.png",
    ))
    .code(2);
    assert!(
        out.stderr.contains("the style_image of step 1"),
        "{}",
        out.stderr
    );
}
