//! Quality-gated routing end to end (`escalate:`): local cut-outs the checks score low are redone
//! by a remote model through the Bedrock double and the rest are not; every attempt is a row; the
//! report's costs equal what the double billed; a rerun pays nothing again; a budget holds while
//! escalating; `check` estimates what escalation may cost.

use image::{DynamicImage, Rgb, RgbImage};
use tempfile::TempDir;

use crate::harness::{Retouch, product_photo};
use crate::support::bedrock_double::BedrockDouble;
use retouch::ledger::{Status, StepRecord};
use retouch::money::Usd;
use retouch::reason::Reason;

const STAB_BG: &str = "stability.stable-image-remove-background-v1:0";
const PRICE: f64 = 0.04;

/// Hard cases (textured backdrops) the classical local method cuts out badly and the double's
/// remote remove-bg cleanly: (seed, index) in `testset::hard_cases(seed, _, 256, 320)`.
const BAD: [usize; 3] = [3, 25, 37];

fn usd(dollars: f64) -> Usd {
    Usd::from_dollars(dollars).unwrap()
}

fn manifest(extra: &str) -> String {
    format!(
        r#"version: 1
name: escalation
inputs: ["../photos/*.png"]
output: {{ dir: ../out, format: png }}
steps:
  - op: remove-bg
    models: [local]
    local_model: classical
    escalate: {{ below: 0.8, to: [stability-remove-bg] }}
limits: {{ concurrency: 4, rpm: {{ stability-remove-bg: 600 }} }}
prices: {{ stability-remove-bg: {PRICE} }}
{extra}"#
    )
}

/// A project with three bad cases, three clean product shots and a blank frame (nothing to cut
/// out: every result of it is empty, local or remote).
fn project(extra: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(dir.path().join("photos")).unwrap();
    std::fs::write(dir.path().join("pipelines/test.yaml"), manifest(extra)).unwrap();
    let cases: Vec<_> = retouch::testset::hard_cases(1, 40, 256, 320).collect();
    for i in BAD {
        let rgb = DynamicImage::ImageRgba8(cases[i].image.clone()).to_rgb8();
        rgb.save(dir.path().join(format!("photos/bad-{i}.png")))
            .unwrap();
    }
    for (i, (w, h)) in [(300, 260), (280, 280), (320, 240)].into_iter().enumerate() {
        product_photo(w, h)
            .save(dir.path().join(format!("photos/good-{i}.png")))
            .unwrap();
    }
    RgbImage::from_pixel(256, 256, Rgb([236, 236, 236]))
        .save(dir.path().join("photos/blank.png"))
        .unwrap();
    dir
}

async fn run(dir: &TempDir, double: &BedrockDouble, run_id: &str) -> Vec<StepRecord> {
    crate::support::retouch::run_with_double(dir.path(), double, run_id).await
}

/// The rows of `image` (file name under `photos/`), in order.
fn rows_of<'a>(rows: &'a [StepRecord], image: &str) -> Vec<&'a StepRecord> {
    rows.iter()
        .filter(|r| r.image == format!("../photos/{image}"))
        .collect()
}

fn score(r: &StepRecord) -> f32 {
    r.qa.as_ref().expect("measured").score()
}

fn summary(r: &StepRecord) -> (&str, Reason, Status) {
    (&r.model, r.reason, r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_scoring_local_results_are_redone_remotely_and_the_rest_are_not() {
    let double = BedrockDouble::start().await;
    let dir = project("");
    let rows = run(&dir, &double, "first").await;

    for i in BAD {
        let image = format!("bad-{i}.png");
        let rows = rows_of(&rows, &image);
        assert_eq!(
            rows.len(),
            2,
            "{image}: the local attempt and the redo: {rows:#?}"
        );
        let (local, remote) = (rows[0], rows[1]);
        assert_eq!(
            summary(local),
            ("local", Reason::Escalated, Status::Superseded)
        );
        assert!(score(local) < 0.8, "{local:?}");
        assert_eq!((local.cost, local.attempts), (Usd::ZERO, 1));
        assert_eq!(
            summary(remote),
            (STAB_BG, Reason::EscalationPassed, Status::Ok)
        );
        assert!(score(remote) >= 0.8, "{remote:?}");
        assert_eq!((remote.cost, remote.attempts), (usd(PRICE), 1));
        assert!(remote.output.ends_with(&format!("out/bad-{i}.png")));
    }
    for i in 0..3 {
        let image = format!("good-{i}.png");
        let rows = rows_of(&rows, &image);
        assert_eq!(rows.len(), 1, "{image} passed at once: {rows:#?}");
        assert_eq!(
            summary(rows[0]),
            ("local", Reason::OnlyPermitted, Status::Ok)
        );
        assert!(score(rows[0]) >= 0.8);
    }
    // Nothing to cut out: the redo is no better, so the first (free) result is kept, flagged by
    // its reason, and the paid redo is a superseded row with its cost.
    let blank = rows_of(&rows, "blank.png");
    assert_eq!(blank.len(), 2, "{blank:#?}");
    assert_eq!(
        summary(blank[0]),
        (STAB_BG, Reason::Escalated, Status::Superseded)
    );
    assert_eq!(blank[0].cost, usd(PRICE));
    assert_eq!(
        summary(blank[1]),
        ("local", Reason::EscalationBest, Status::Ok)
    );
    assert_eq!(score(blank[1]), score(blank[0]));

    // Only the low scorers were sent, once each, and the report's costs are what was billed.
    assert_eq!(double.requests(STAB_BG), 4);
    assert_eq!(double.successes(STAB_BG), 4);
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, usd(PRICE).times(4));
    // The output of a redone image is the remote cut-out; a good one's the local one.
    let out = image::open(dir.path().join("out/bad-25.png"))
        .unwrap()
        .to_rgba8();
    assert!(out.pixels().any(|p| p[3] == 0) && out.pixels().any(|p| p[3] == 255));

    // The rerun climbs the same ladder on cached results: nothing is called or billed again.
    let again = run(&dir, &double, "second").await;
    assert_eq!(double.requests(STAB_BG), 4, "no call on the rerun");
    assert_eq!(again.len(), rows.len());
    assert!(again.iter().all(|r| r.cost == Usd::ZERO), "{again:#?}");
    for i in BAD {
        let rows = rows_of(&again, &format!("bad-{i}.png"));
        assert_eq!(
            summary(rows[0]),
            ("local", Reason::Escalated, Status::Superseded)
        );
        assert_eq!(summary(rows[1]), (STAB_BG, Reason::CacheHit, Status::Ok));
    }
    let blank = rows_of(&again, "blank.png");
    assert_eq!(
        (blank[0].status, blank[1].status),
        (Status::Superseded, Status::Ok)
    );

    // The CSV holds every attempt, superseded ones included, and its costs sum to the bill.
    let mut rdr = csv::Reader::from_path(dir.path().join("out/report.csv")).unwrap();
    let csv: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(csv.len(), again.len());
    assert_eq!(csv.iter().filter(|r| &r[6] == "superseded").count(), 4);

    // `retouch report` reads it back: superseded attempts leave every image ok, count as redone,
    // and are not among the results kept that scored low.
    let first = Retouch::at(dir.path()).run(&["report", "out/report.csv", "--json"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let json: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(json["images_by_status"]["ok"], 7, "{json}");
    assert_eq!(json["quality"]["redone"], 4, "{json}");
    assert_eq!(json["quality"]["measured"], 7, "{json}");
    let text = Retouch::at(dir.path()).run(&["report", "out/report.csv"]);
    assert!(
        text.stdout
            .contains("4 results scored below their step's escalate mark and were redone"),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_holds_while_escalating() {
    let double = BedrockDouble::start().await;
    // Enough for two redos of the four low scorers.
    let dir = project("budget: { max_usd: 0.09 }\n");
    let rows = run(&dir, &double, "capped").await;
    let billed = usd(PRICE).times(double.successes(STAB_BG) as u32);
    assert_eq!(double.successes(STAB_BG), 2, "{rows:#?}");
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, billed);
    assert!(total <= usd(0.09));
    // The two that could not be redone keep their local result and say why in a row.
    let refused: Vec<&StepRecord> = rows
        .iter()
        .filter(|r| r.reason == Reason::FallbackBudget)
        .collect();
    assert_eq!(refused.len(), 2, "{rows:#?}");
    for r in refused {
        assert_eq!(
            (r.status, r.cost, r.model.as_str()),
            (Status::Superseded, Usd::ZERO, STAB_BG)
        );
        let kept = rows
            .iter()
            .find(|k| k.image == r.image && k.status == Status::Ok)
            .unwrap();
        assert_eq!(
            (kept.model.as_str(), kept.reason),
            ("local", Reason::EscalationBest)
        );
    }
}

#[test]
fn check_estimates_the_cost_of_escalating() {
    let dir = project("");
    let ran = Retouch::at(dir.path()).run(&["check", "pipelines/test.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // Seven images, each possibly redone at $0.04; no earlier run to learn a pass rate from.
    assert!(
        ran.stdout
            .contains("escalate below 0.80 to [stability-remove-bg]: up to $0.280000"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("so every result is assumed redone"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("to $0.280000"), "{}", ran.stdout);
}

#[test]
fn escalation_lists_are_checked_before_any_work() {
    let dir = project("");
    let yaml = manifest("").replace(
        "to: [stability-remove-bg]",
        "to: [local, stability-creative-upscale]",
    );
    std::fs::write(dir.path().join("pipelines/test.yaml"), yaml).unwrap();
    let ran = Retouch::at(dir.path()).run(&["run", "pipelines/test.yaml"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("steps[0].escalate.to"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("cannot do remove-bg"),
        "the model must be able to do the op: {}",
        ran.stderr
    );
    assert!(!dir.path().join("out").exists(), "nothing was written");

    let yaml = manifest("").replace("below: 0.8", "below: 1.5");
    std::fs::write(dir.path().join("pipelines/test.yaml"), yaml).unwrap();
    let ran = Retouch::at(dir.path()).run(&["run", "pipelines/test.yaml"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("steps[0].escalate.below"),
        "{}",
        ran.stderr
    );
}
