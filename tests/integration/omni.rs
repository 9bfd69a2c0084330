//! Nova 2 Omni (preview) through `Converse` against the Bedrock double: instruction edits
//! (fix-lighting, the one remote route that op has) with the image then the instruction in one
//! user message, text to image with no image, and a refusal billed by the tokens it used. The
//! instructions are catalog data; costs equal what the double billed; a rerun pays nothing.

use serde_json::Value;
use tempfile::TempDir;

use crate::harness::product_photo;
use crate::support::bedrock_double::{BedrockDouble, Filter};
use retouch::catalog::Op;
use retouch::ledger::{Status, StepRecord};
use retouch::money::Usd;
use retouch::reason::Reason;

const OMNI: &str = "amazon.nova-2-omni-v1:0";

fn project(inputs: &str, steps: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["pipelines", "photos"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let manifest = format!(
        r#"version: 1
name: omni
inputs: [{inputs}]
output: {{ dir: ../out, format: png }}
steps:
{steps}
limits: {{ concurrency: 2, rpm: {{ nova-2-omni: 600, stability-ultra: 600 }} }}
aws: {{ region: us-east-1 }}
"#
    );
    std::fs::write(dir.path().join("pipelines/test.yaml"), manifest).unwrap();
    for (i, (w, h)) in [(320, 240), (256, 256)].into_iter().enumerate() {
        product_photo(w, h)
            .save(dir.path().join(format!("photos/p{i}.png")))
            .unwrap();
    }
    std::fs::write(
        dir.path().join("pipelines/prompts.csv"),
        "id,prompt,aspect_ratio\nlamp,a brass desk lamp,16:9\n",
    )
    .unwrap();
    dir
}

async fn run(dir: &TempDir, double: &BedrockDouble, run_id: &str) -> Vec<StepRecord> {
    crate::support::retouch::run_with_double(dir.path(), double, run_id).await
}

fn content(body: &Value) -> &Vec<Value> {
    assert_eq!(body.as_object().unwrap().len(), 1, "only messages: {body}");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["role"], "user");
    messages[0]["content"].as_array().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_lighting_goes_to_omni_as_an_instruction_edit_and_bills_exactly() {
    let double = BedrockDouble::start().await;
    let dir = project(
        "\"../photos/*.png\"",
        "  - op: fix-lighting\n    models: [nova-2-omni]\n",
    );
    let rows = run(&dir, &double, "first").await;
    let price = Usd::from_dollars(0.08).unwrap();
    for r in &rows {
        assert_eq!((r.status, r.model.as_str()), (Status::Ok, OMNI), "{r:?}");
        assert_eq!(r.cost, price);
        assert_eq!(
            r.input_size, r.output_size,
            "mapped back to the input's size"
        );
    }
    let body = double.last_body(OMNI).unwrap();
    let blocks = content(&body);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["image"]["format"], "png");
    let instruction = blocks[1]["text"].as_str().unwrap();
    assert!(
        instruction.contains("correct the lighting"),
        "{instruction}"
    );
    assert!(instruction.contains("Change nothing else"), "{instruction}");
    // Through the `us.` profile, in the run's region.
    assert_eq!(double.regions(OMNI), ["us-east-1", "us-east-1"]);
    assert_eq!(double.successes(OMNI), 2);
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, price.times(2));
    let again = run(&dir, &double, "again").await;
    assert!(again.iter().all(|r| r.cost == Usd::ZERO), "{again:#?}");
    assert_eq!(double.requests(OMNI), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_asks_omni_in_words_and_a_refusal_is_billed_by_its_tokens() {
    let double = BedrockDouble::start().await;
    let dir = project(
        "prompts.csv",
        "  - op: generate\n    models: [stability-ultra, nova-2-omni]\n    fallback: skip\n",
    );
    let rows = run(&dir, &double, "first").await;
    let r = &rows[0];
    assert_eq!(
        (r.status, r.model.as_str()),
        (Status::Ok, OMNI),
        "cheaper than Ultra: {r:?}"
    );
    assert_eq!(r.output_size, Some((1344, 768)));
    let blocks = content(&double.last_body(OMNI).unwrap()).clone();
    assert_eq!(blocks.len(), 1, "no image: text to image");
    let instruction = blocks[0]["text"].as_str().unwrap();
    assert!(
        instruction.contains("aspect ratio 16:9") && instruction.contains("a brass desk lamp"),
        "{instruction}"
    );

    // A refusal: no image, the step falls back, and the tokens it used are what it cost.
    let double = BedrockDouble::start().await;
    double.set_filter(OMNI, Some(Filter::Output));
    let dir = project(
        "\"../photos/*.png\"",
        "  - op: fix-lighting\n    models: [nova-2-omni]\n    fallback: local\n",
    );
    let rows = run(&dir, &double, "first").await;
    let calls = double.token_calls(OMNI);
    assert_eq!(calls.len(), 2);
    let mut want = Usd::ZERO;
    for (input, output) in &calls {
        // 0.33 and 2.75 USD per million tokens, rounded up to the micro-dollar.
        let nanos = input * 330 + output * 2_750;
        want += Usd(nanos.div_ceil(1_000) as i64);
    }
    for r in &rows {
        assert_eq!(r.op, Op::FixLighting);
        assert_eq!((r.status, r.model.as_str()), (Status::Ok, "local"), "{r:?}");
        assert_eq!(r.reason, Reason::FallbackContentFiltered);
        assert!(r.cost > Usd::ZERO, "a refusal still used tokens: {r:?}");
    }
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, want);

    // A refusal without `usage` (the SDK reads its counts as zero) is charged the edit's price,
    // never nothing.
    let double = BedrockDouble::start().await;
    double.set_filter(OMNI, Some(Filter::Output));
    double.omit_usage_next(OMNI, 2);
    let dir = project(
        "\"../photos/*.png\"",
        "  - op: fix-lighting\n    models: [nova-2-omni]\n    fallback: local\n",
    );
    let rows = run(&dir, &double, "no-usage").await;
    assert_eq!(double.token_calls(OMNI).len(), 2);
    for r in &rows {
        assert_eq!(r.reason, Reason::FallbackContentFiltered, "{r:?}");
        assert_eq!(r.cost, Usd::from_dollars(0.08).unwrap(), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_bg_through_omni_keeps_our_product_pixel_for_pixel() {
    let double = BedrockDouble::start().await;
    let dir = project(
        "\"../photos/*.png\"",
        "  - op: replace-bg\n    models: [nova-2-omni]\n    prompt: \"a marble counter\"\n    fallback: skip\n",
    );
    let rows = run(&dir, &double, "first").await;
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Ok && r.model == OMNI),
        "{rows:#?}"
    );
    let blocks = content(&double.last_body(OMNI).unwrap()).clone();
    let instruction = blocks[1]["text"].as_str().unwrap();
    assert!(
        instruction.contains("replace the background with a marble counter"),
        "{instruction}"
    );
    let input = image::open(dir.path().join("photos/p0.png"))
        .unwrap()
        .to_rgba8();
    let out = image::open(dir.path().join("out/p0.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.dimensions(), input.dimensions());
    // The product (the middle) is ours, exactly; the backdrop (a corner) is the model's scene.
    assert_eq!(out.get_pixel(160, 120), input.get_pixel(160, 120));
    assert_ne!(out.get_pixel(2, 2), input.get_pixel(2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variation_through_omni_sends_the_prompt_in_its_instruction() {
    let double = BedrockDouble::start().await;
    let dir = project(
        "\"../photos/*.png\"",
        "  - op: variation\n    models: [nova-2-omni]\n    prompt: \"the same mug in matte black\"\n    fallback: skip\n",
    );
    let rows = run(&dir, &double, "first").await;
    for r in &rows {
        assert_eq!((r.status, r.model.as_str()), (Status::Ok, OMNI), "{r:?}");
        assert_eq!(r.input_size, r.output_size);
    }
    let blocks = content(&double.last_body(OMNI).unwrap()).clone();
    let instruction = blocks[1]["text"].as_str().unwrap();
    assert!(
        instruction.starts_with("Make a variation of this product photo")
            && instruction.ends_with("the same mug in matte black"),
        "{instruction}"
    );
}
