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
