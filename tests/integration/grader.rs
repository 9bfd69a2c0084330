//! The paid grader end to end (`qa: { model: nova-lite }`): results are sent to a vision model
//! through the real SDK's `Converse` against the Bedrock double, which validates every request
//! strictly; its grade becomes the score; the tokens of every answer are billed exactly to the
//! micro-dollar in the rows; a budget holds while many images are graded at once.

use std::time::Duration;

use image::{Rgb, RgbImage};
use serde_json::json;
use tempfile::TempDir;

use crate::harness::{Retouch, product_photo};
use crate::support::bedrock_double::BedrockDouble;
use crate::support::bedrock_double::converse::validate;
use retouch::catalog::{Date, TokenPrices};
use retouch::ledger::StepRecord;
use retouch::money::Usd;
use retouch::run::RunOptions;

const NOVA_LITE: &str = "amazon.nova-lite-v1:0";
const PRICES: TokenPrices = TokenPrices {
    input_per_million: 0.06,
    output_per_million: 0.24,
};

fn project(extra: &str, good: usize, blank: usize) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(dir.path().join("photos")).unwrap();
    let yaml = format!(
        "version: 1\nname: graded\ninputs: [\"../photos/*.png\"]\n\
         output: {{ dir: ../out, format: png }}\n\
         steps:\n  - op: remove-bg\n    models: [local]\n    local_model: classical\n    \
         qa: {{ model: nova-lite }}\nlimits: {{ concurrency: 8 }}\n{extra}"
    );
    std::fs::write(dir.path().join("pipelines/test.yaml"), yaml).unwrap();
    for i in 0..good {
        let w = 200 + 8 * i as u32;
        product_photo(w, 160)
            .save(dir.path().join(format!("photos/good-{i:02}.png")))
            .unwrap();
    }
    for i in 0..blank {
        RgbImage::from_pixel(180, 150, Rgb([236, 236, 236]))
            .save(dir.path().join(format!("photos/blank-{i:02}.png")))
            .unwrap();
    }
    dir
}

async fn run(dir: &TempDir, double: &BedrockDouble) -> Vec<StepRecord> {
    let options = RunOptions {
        stateless: true,
        today: Some(Date::new(2026, 11, 1).unwrap()),
        backoff: Some((Duration::from_millis(5), Duration::from_millis(40))),
        run_id: Some("graded".into()),
        ..RunOptions::default()
    };
    Retouch::at(dir.path())
        .bedrock(double)
        .execute("pipelines/test.yaml", options)
        .await
        .rows
}

/// What the double billed, each answer priced and rounded up on its own as retouch does.
fn billed(double: &BedrockDouble) -> Usd {
    double
        .token_calls(NOVA_LITE)
        .into_iter()
        .map(|(i, o)| PRICES.cost(i, o))
        .sum()
}

fn grade(r: &StepRecord) -> Option<u16> {
    r.qa.as_ref().and_then(|q| q.grade)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_graded_and_every_token_is_billed() {
    let double = BedrockDouble::start().await;
    // The double fails once (retried), then one answer is prose, not a verdict.
    double.fail_next(NOVA_LITE, 1, 503, "ServiceUnavailableException");
    double.reply_next(NOVA_LITE, &["It looks fine to me."]);
    let dir = project("", 4, 2);
    let rows = run(&dir, &double).await;
    assert_eq!(rows.len(), 6);

    // Every result was sent once (plus the retried 503); the answers were all billed.
    assert_eq!(double.requests(NOVA_LITE), 7);
    assert_eq!(double.successes(NOVA_LITE), 6);
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert!(total > Usd::ZERO);
    assert_eq!(total, billed(&double), "{rows:#?}");

    // The prose answer left one result ungraded, but paid for.
    let ungraded: Vec<&StepRecord> = rows.iter().filter(|r| grade(r).is_none()).collect();
    assert_eq!(ungraded.len(), 1, "{rows:#?}");
    assert!(ungraded[0].cost > Usd::ZERO);
    // The rest carry the grade as their score: blank cut-outs fail, clean ones pass.
    for r in rows.iter().filter(|r| grade(r).is_some()) {
        let qa = r.qa.as_ref().unwrap();
        if r.image.contains("blank") {
            assert_eq!(qa.grade, Some(100), "{r:?}");
            assert!(qa.flags_text().starts_with("empty;graded=0.100"), "{r:?}");
            assert!((qa.score() - 0.1).abs() < 1e-6);
        } else {
            assert_eq!((qa.grade, qa.score()), (Some(900), 0.9), "{r:?}");
        }
        assert!(r.attempts >= 2, "the local op and the grading call: {r:?}");
    }

    // The request the real client sent passes the double's strict checks; broken ones do not.
    let sent = double.last_body(NOVA_LITE).unwrap();
    let asked = validate(&sent).expect("the client's request is valid");
    assert_eq!(asked.images.len(), 1);
    assert!(asked.images[0].0 <= 2 * 384 + 8 && asked.images[0].1 <= 384);
    assert_eq!(sent["inferenceConfig"]["maxTokens"], json!(200));
    let mut unknown = sent.clone();
    unknown["temperatur"] = json!(0.1);
    assert!(validate(&unknown).unwrap_err().contains("Unknown field"));
    let mut assistant_first = sent.clone();
    assistant_first["messages"][0]["role"] = json!("assistant");
    assert!(validate(&assistant_first).is_err());
    let mut bad_image = sent.clone();
    bad_image["messages"][0]["content"][0]["image"]["format"] = json!("jpeg");
    assert!(validate(&bad_image).unwrap_err().contains("does not match"));
    let mut no_messages = sent;
    no_messages["messages"] = json!([]);
    assert!(validate(&no_messages).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_holds_while_many_results_are_graded_at_once() {
    let double = BedrockDouble::start().await;
    double.set_latency(NOVA_LITE, Duration::from_millis(20));
    // $0.0002: room for a few gradings (each reserves its bound, about 80 micro-dollars, and
    // is billed about 20), not for sixteen.
    let dir = project("budget: { max_usd: 0.0002 }\n", 16, 0);
    let rows = run(&dir, &double).await;
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, billed(&double));
    assert!(total <= Usd(200), "{total} over the cap");
    let graded = rows.iter().filter(|r| grade(r).is_some()).count();
    assert!(graded >= 2, "some were graded: {rows:#?}");
    assert!(graded < 16, "the cap stopped the rest: {rows:#?}");
    // The ones not graded still have their cut-out and their free checks.
    assert!(
        rows.iter()
            .all(|r| r.qa.is_some() && r.output_size.is_some())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_usage_is_charged_its_reserved_bound_not_nothing() {
    // Bedrock bills every answer; one that leaves out `usage` (the SDK then reads its counts as
    // zero) must not pass for free: it is charged the most the call could have cost.
    let double = BedrockDouble::start().await;
    double.omit_usage_next(NOVA_LITE, 2);
    let dir = project("", 3, 0);
    let rows = run(&dir, &double).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(double.successes(NOVA_LITE), 3);
    let calls = double.token_calls(NOVA_LITE);
    assert!(calls.iter().all(|&(i, o)| i > 0 && o > 0), "{calls:?}");
    // Every answer was read (the verdict is in the text), so every result is graded ...
    assert!(rows.iter().all(|r| grade(r) == Some(900)), "{rows:#?}");
    // ... and every row paid at least what its answer was billed: two at their bound, above it.
    let cheapest = calls.iter().map(|&(i, o)| PRICES.cost(i, o)).min().unwrap();
    assert!(rows.iter().all(|r| r.cost >= cheapest), "{rows:#?}");
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert!(total > billed(&double), "{total} for {calls:?}");
    let bound = retouch::providers::grader::max_cost(PRICES);
    assert!(total <= bound.times(2) + billed(&double), "{total}");
    // Exactly one row was priced from its usage.
    let exact = rows
        .iter()
        .filter(|r| calls.iter().any(|&(i, o)| PRICES.cost(i, o) == r.cost))
        .count();
    assert_eq!(exact, 1, "{rows:#?} {calls:?}");
}

#[test]
fn only_models_that_can_grade_are_accepted() {
    let dir = project("", 1, 0);
    let path = dir.path().join("pipelines/test.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        yaml.replace("model: nova-lite", "model: nova-canvas"),
    )
    .unwrap();
    let ran = Retouch::at(dir.path()).run(&["check", "pipelines/test.yaml"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("steps[0].qa.model"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("nova-lite"),
        "lists the graders: {}",
        ran.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grader_is_called_in_its_own_region() {
    // Nova Lite is offered in us-east-1 only: a us-west-2 run grades there (same geography).
    let double = BedrockDouble::start().await;
    let dir = project("aws: { region: us-west-2 }\n", 2, 0);
    let rows = run(&dir, &double).await;
    assert!(rows.iter().all(|r| grade(r).is_some()), "{rows:#?}");
    assert_eq!(double.regions(NOVA_LITE), ["us-east-1", "us-east-1"]);
    // An EU run may not send images to the US: nothing is graded, the free checks stay.
    let double = BedrockDouble::start().await;
    let dir = project("aws: { region: eu-west-1 }\n", 1, 0);
    let rows = run(&dir, &double).await;
    assert!(
        rows.iter().all(|r| grade(r).is_none() && r.qa.is_some()),
        "{rows:#?}"
    );
    assert_eq!(double.requests(NOVA_LITE), 0);
}
