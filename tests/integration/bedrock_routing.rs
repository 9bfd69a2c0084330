//! Bedrock routing end to end: the real scheduler, router and AWS SDK client against the
//! in-process Bedrock double, checking what the double saw (calls, arrival times, billed images)
//! against the report rows. Most tests run the library in process so they can read the double's
//! counters; the last ones drive the real binary, pointed at the double through the standard
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` variable.

use std::collections::HashMap;
use std::time::Duration;

use tempfile::TempDir;

use crate::harness::{Retouch, report};
use crate::harness::{Test, product_photo};
use crate::support::bedrock_double::{BedrockDouble, Filter};
use retouch::catalog::Date;
use retouch::ledger::{Status, StepRecord};
use retouch::money::Usd;
use retouch::run::RunOptions;

const TITAN: &str = "amazon.titan-image-generator-v2:0";
const NOVA: &str = "amazon.nova-canvas-v1:0";
const STAB_BG: &str = "stability.stable-image-remove-background-v1:0";
const STAB_FAST: &str = "stability.stable-fast-upscale-v1:0";
const STAB_CONSERVATIVE: &str = "stability.stable-conservative-upscale-v1:0";

/// Before Titan v2's end of life (2026-06-30) and Nova Canvas's (2026-09-30).
fn before_eol() -> Date {
    Date::new(2026, 1, 15).unwrap()
}

fn usd(dollars: f64) -> Usd {
    Usd::from_dollars(dollars).unwrap()
}

/// A project folder (`pipelines/test.yaml`, `photos/`, `out/`) run in process against a double.
struct Project {
    dir: TempDir,
}

impl Project {
    /// Writes the manifest (steps and limits given as YAML fragments) and the images.
    fn new(body: &str, images: &[(&str, u32, u32)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "version: 1\nname: routing\ninputs: [\"../photos/**/*.png\"]\n\
             output: {{ dir: ../out, format: png }}\n{body}"
        );
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        std::fs::write(dir.path().join("pipelines/test.yaml"), yaml).unwrap();
        for &(rel, w, h) in images {
            let path = dir.path().join("photos").join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            product_photo(w, h).save(&path).unwrap();
        }
        Project { dir }
    }

    /// Runs the manifest in process (the library's entry point) with a client pointed at
    /// `double`, judging lifecycles on `today`, keeping no state and retrying fast. Returns the
    /// rows in input-then-step order.
    async fn run(&self, double: &BedrockDouble, today: Date) -> Vec<StepRecord> {
        let options = RunOptions {
            stateless: true,
            today: Some(today),
            backoff: Some((Duration::from_millis(5), Duration::from_millis(40))),
            run_id: Some("test-run".into()),
            ..RunOptions::default()
        };
        Retouch::at(self.dir.path())
            .bedrock(double)
            .execute("pipelines/test.yaml", options)
            .await
            .rows
    }
}

/// The row of `image` (file name under `photos/`) at step `step` (0-based).
fn row<'a>(rows: &'a [StepRecord], image: &str, step: usize) -> &'a StepRecord {
    rows.iter()
        .find(|r| r.image == format!("../photos/{image}") && r.step == step)
        .unwrap_or_else(|| panic!("no row for {image} step {step}: {rows:#?}"))
}

/// (model, reason, status) of a row, for compact comparisons.
fn route(r: &StepRecord) -> (&str, &str, Status) {
    (&r.model, r.reason.as_str(), r.status)
}

/// What the double billed: each successful call returns one billed image at the model's price.
fn billed(double: &BedrockDouble, prices: &[(&str, f64)]) -> Usd {
    prices
        .iter()
        .map(|&(model, price)| usd(price).times(double.successes(model) as u32))
        .sum()
}

fn total_cost(rows: &[StepRecord]) -> Usd {
    rows.iter().map(|r| r.cost).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cheapest_permitted_model_serves_every_step() {
    let double = BedrockDouble::start().await;
    let project = Project::new(
        r#"
steps:
  - op: remove-bg
    models: [nova-canvas, stability-remove-bg, titan-image-v2]
  - op: upscale
    models: [stability-conservative-upscale, stability-fast-upscale]
    factor: 2
limits: { concurrency: 4, rpm: { titan-image-v2: 600, stability-fast-upscale: 600 } }
"#,
        &[
            ("a.png", 320, 320),
            ("b.png", 400, 300),
            ("c.png", 300, 400),
        ],
    );
    let rows = project.run(&double, before_eol()).await;
    assert_eq!(rows.len(), 6);
    for img in ["a.png", "b.png", "c.png"] {
        let bg = row(&rows, img, 0);
        assert_eq!(route(bg), (TITAN, "cheapest", Status::Ok), "{bg:?}");
        assert_eq!((bg.cost, bg.attempts), (usd(0.008), 1));
        let up = row(&rows, img, 1);
        assert_eq!(route(up), (STAB_FAST, "cheapest", Status::Ok), "{up:?}");
        assert_eq!((up.cost, up.attempts), (usd(0.03), 1));
        let (w, h) = bg.output_size.unwrap();
        assert_eq!(
            up.output_size,
            Some((w * 2, h * 2)),
            "resized to the factor"
        );
    }
    assert_eq!(double.requests(TITAN), 3);
    assert_eq!(double.requests(STAB_FAST), 3);
    for unused in [NOVA, STAB_BG, STAB_CONSERVATIVE] {
        assert_eq!(double.requests(unused), 0, "{unused} was never called");
    }
    let billed = billed(&double, &[(TITAN, 0.008), (STAB_FAST, 0.03)]);
    assert_eq!(total_cost(&rows), billed);
    assert_eq!(billed, usd(0.114));
    let out = image::open(project.dir.path().join("out/b.png")).unwrap();
    assert_eq!((out.width(), out.height()), (800, 600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_a_model_cannot_take_goes_to_the_next_cheapest_that_can() {
    let double = BedrockDouble::start().await;
    // Stability made the cheapest, but it only takes aspect ratios 1:2.5 to 2.5:1 (Titan 1:4 to
    // 4:1): a 3:1 image goes to Titan, a 5:1 one to nobody.
    let project = Project::new(
        r#"
steps:
  - op: remove-bg
    models: [titan-image-v2, stability-remove-bg]
limits: { rpm: { titan-image-v2: 600, stability-remove-bg: 600 } }
prices: { stability-remove-bg: 0.005 }
"#,
        &[
            ("square.png", 300, 300),
            ("wide.png", 900, 300),
            ("banner.png", 1300, 256),
        ],
    );
    let rows = project.run(&double, before_eol()).await;
    assert_eq!(
        route(row(&rows, "square.png", 0)),
        (STAB_BG, "cheapest", Status::Ok)
    );
    assert_eq!(
        route(row(&rows, "wide.png", 0)),
        (TITAN, "cheapest", Status::Ok)
    );
    let banner = row(&rows, "banner.png", 0);
    assert_eq!(
        route(banner),
        ("local", "fallback-aspect-ratio", Status::Ok)
    );
    assert_eq!((banner.cost, banner.attempts), (Usd::ZERO, 1));
    assert_eq!((double.requests(STAB_BG), double.requests(TITAN)), (1, 1));
    let billed = billed(&double, &[(TITAN, 0.008), (STAB_BG, 0.005)]);
    assert_eq!(total_cost(&rows), billed);
    assert_eq!(billed, usd(0.013));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_past_end_of_life_are_never_called() {
    let yaml = r#"
steps:
  - op: remove-bg
    models: [titan-image-v2, nova-canvas]
limits: { rpm: { titan-image-v2: 600, nova-canvas: 600 } }
"#;
    let images = [("a.png", 400, 400), ("b.png", 320, 480)];
    // Titan's end of life has passed, Nova's has not.
    let double = BedrockDouble::start().await;
    let rows = Project::new(yaml, &images)
        .run(&double, Date::new(2026, 7, 1).unwrap())
        .await;
    assert!(
        rows.iter()
            .all(|r| route(r) == (NOVA, "cheapest", Status::Ok))
    );
    assert_eq!((double.requests(TITAN), double.requests(NOVA)), (0, 2));
    assert_eq!(total_cost(&rows), billed(&double, &[(NOVA, 0.04)]));

    // Both past their end of life: local, nothing called.
    let double = BedrockDouble::start().await;
    let rows = Project::new(yaml, &images)
        .run(&double, Date::new(2026, 11, 22).unwrap())
        .await;
    for r in &rows {
        assert_eq!(route(r), ("local", "fallback-end-of-life", Status::Ok));
        assert_eq!((r.cost, r.attempts), (Usd::ZERO, 1));
    }
    assert_eq!(double.requests(TITAN) + double.requests(NOVA), 0);

    // The catalog thinks Titan is alive but Bedrock has retired it: it is taken out of the run
    // after its probes, and Nova serves.
    let double = BedrockDouble::start().await;
    double.retire(TITAN);
    let images: Vec<_> = (0..8)
        .map(|i| (format!("{i}.png"), 320, 320))
        .collect::<Vec<_>>();
    let images: Vec<_> = images
        .iter()
        .map(|(n, w, h)| (n.as_str(), *w, *h))
        .collect();
    let rows = Project::new(yaml, &images).run(&double, before_eol()).await;
    assert!(double.requests(TITAN) <= 2, "{}", double.requests(TITAN));
    assert!(
        rows.iter()
            .all(|r| r.model == NOVA && r.status == Status::Ok)
    );
    // Images routed to Titan before it was taken out (its probes, and those waiting behind
    // them) say `next-cheapest`; later ones only had Nova left.
    let after_titan = rows
        .iter()
        .filter(|r| r.reason.as_str() == "next-cheapest")
        .count();
    assert!(after_titan >= double.requests(TITAN), "{rows:#?}");
    assert!(
        rows.iter()
            .all(|r| ["cheapest", "next-cheapest"].contains(&r.reason.as_str()))
    );
    let attempts: u32 = rows.iter().map(|r| r.attempts).sum();
    assert_eq!(
        attempts as usize,
        8 + double.requests(TITAN),
        "Titan's calls count"
    );
    assert_eq!(double.successes(NOVA), 8);
    assert_eq!(total_cost(&rows), usd(0.32));
}

fn numbered(n: usize, w: u32, h: u32) -> Vec<(String, u32, u32)> {
    (0..n).map(|i| (format!("{i:03}.png"), w, h)).collect()
}

fn as_refs(images: &[(String, u32, u32)]) -> Vec<(&str, u32, u32)> {
    images
        .iter()
        .map(|(n, w, h)| (n.as_str(), *w, *h))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_costs_at_most_two_calls_then_every_image_falls_back() {
    let double = BedrockDouble::start().await;
    double.deny_access(STAB_BG);
    let images = numbered(24, 64, 64);
    let project = Project::new(
        r#"
steps:
  - op: remove-bg
    models: [stability-remove-bg]
limits: { concurrency: 8, rpm: { stability-remove-bg: 6000 } }
"#,
        &as_refs(&images),
    );
    let rows = project.run(&double, before_eol()).await;
    let calls = double.requests(STAB_BG);
    assert!((1..=2).contains(&calls), "{calls} calls");
    assert_eq!(rows.len(), 24);
    for r in &rows {
        assert_eq!(route(r), ("local", "fallback-access-denied", Status::Ok));
        assert_eq!(r.cost, Usd::ZERO);
    }
    // Attempts count the denied calls plus the local run.
    let attempts: u32 = rows.iter().map(|r| r.attempts).sum();
    assert_eq!(attempts as usize, 24 + calls);
    assert_eq!(double.successes(STAB_BG), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_calls_are_retried_and_succeed() {
    let double = BedrockDouble::start().await;
    double.fail_next(STAB_BG, 2, 429, "ThrottlingException");
    double.fail_next(STAB_BG, 1, 503, "ServiceUnavailableException");
    let project = Project::new(
        r#"
steps:
  - op: remove-bg
    models: [stability-remove-bg]
limits: { concurrency: 1, attempts: 4, rpm: { stability-remove-bg: 6000 } }
"#,
        &[("a.png", 64, 64), ("b.png", 64, 64)],
    );
    let rows = project.run(&double, before_eol()).await;
    let a = row(&rows, "a.png", 0);
    assert_eq!(route(a), (STAB_BG, "only-permitted", Status::Ok));
    assert_eq!((a.attempts, a.cost), (4, usd(0.07)));
    let b = row(&rows, "b.png", 0);
    assert_eq!((b.attempts, b.cost), (1, usd(0.07)));
    assert_eq!(
        (double.requests(STAB_BG), double.successes(STAB_BG)),
        (5, 2)
    );
    assert_eq!(total_cost(&rows), billed(&double, &[(STAB_BG, 0.07)]));

    // Throttled on every try: after `attempts` calls the image falls back, nothing billed.
    let double = BedrockDouble::start().await;
    double.fail_next(STAB_BG, 3, 429, "ThrottlingException");
    let project = Project::new(
        r#"
steps:
  - op: remove-bg
    models: [stability-remove-bg]
limits: { concurrency: 1, attempts: 3, rpm: { stability-remove-bg: 6000 } }
"#,
        &[("a.png", 64, 64)],
    );
    let rows = project.run(&double, before_eol()).await;
    let a = row(&rows, "a.png", 0);
    assert_eq!(route(a), ("local", "fallback-throttled", Status::Ok));
    assert_eq!((a.attempts, a.cost), (3 + 1, Usd::ZERO));
    assert_eq!(double.requests(STAB_BG), 3);
}

/// The most arrivals in any closed window `[t, t + window]`.
fn most_in_window(stamps: &[std::time::Instant], window: Duration) -> usize {
    let mut most = 0;
    for (i, &t) in stamps.iter().enumerate() {
        let n = stamps[i..]
            .iter()
            .take_while(|&&s| s.duration_since(t) <= window)
            .count();
        most = most.max(n);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_images_never_exceed_the_configured_rate() {
    let double = BedrockDouble::start().await;
    double.set_latency(STAB_BG, Duration::from_millis(30));
    // A throttle early on: the retry goes through the limiter like every other call.
    double.fail_next(STAB_BG, 1, 429, "ThrottlingException");
    let rpm = 600;
    let images = numbered(25, 64, 64);
    let project = Project::new(
        &format!(
            "steps:\n  - op: remove-bg\n    models: [stability-remove-bg]\n\
             limits: {{ concurrency: 16, rpm: {{ stability-remove-bg: {rpm} }} }}\n"
        ),
        &as_refs(&images),
    );
    let rows = project.run(&double, before_eol()).await;
    assert!(
        rows.iter()
            .all(|r| r.model == STAB_BG && r.status == Status::Ok)
    );
    let mut arrivals = double.arrivals(STAB_BG);
    arrivals.sort();
    assert_eq!(arrivals.len(), 26);
    // With requests spaced at least 60 s / rpm apart, a window of T seconds holds at most
    // floor(T * rpm / 60) + 1 of them; a minute holds at most rpm.
    for ms in [500, 1_000, 2_000] {
        let window = Duration::from_millis(ms);
        let bound = (ms as usize * rpm / 60_000) + 1;
        let most = most_in_window(&arrivals, window);
        assert!(
            most <= bound,
            "{most} requests within {ms} ms (bound {bound})"
        );
    }
    assert!(double.max_in_window(STAB_BG, Duration::from_secs(60)) <= rpm);
    assert_eq!(total_cost(&rows), billed(&double, &[(STAB_BG, 0.07)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_never_exceeded_under_concurrency() {
    let double = BedrockDouble::start().await;
    double.set_latency(STAB_BG, Duration::from_millis(5));
    let images = numbered(500, 64, 64);
    let project = Project::new(
        r#"
steps:
  - op: remove-bg
    models: [stability-remove-bg]
limits: { concurrency: 32, rpm: { stability-remove-bg: 100000 } }
budget: { max_usd: 3.50 }
"#,
        &as_refs(&images),
    );
    let rows = project.run(&double, before_eol()).await;
    assert_eq!(rows.len(), 500);
    let cap = usd(3.50);
    let billed = billed(&double, &[(STAB_BG, 0.07)]);
    assert!(billed <= cap, "billed {billed}");
    assert_eq!(total_cost(&rows), billed);
    // Reservations are exact: the cap buys exactly 50 calls, and only those were made.
    assert_eq!(double.successes(STAB_BG), 50);
    assert_eq!(double.requests(STAB_BG), 50);
    let mut by_route: HashMap<(&str, &str), usize> = HashMap::new();
    for r in &rows {
        assert_eq!(r.status, Status::Ok);
        *by_route.entry((&r.model, r.reason.as_str())).or_default() += 1;
    }
    assert_eq!(by_route.len(), 2, "{by_route:?}");
    assert_eq!(by_route[&(STAB_BG, "only-permitted")], 50);
    assert_eq!(by_route[&("local", "fallback-budget")], 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_content_falls_back_without_trying_other_models() {
    let double = BedrockDouble::start().await;
    double.set_filter(NOVA, Some(Filter::Output));
    let project = Project::new(
        r#"
steps:
  - op: remove-bg
    models: [stability-remove-bg, nova-canvas]
limits: { rpm: { nova-canvas: 600, stability-remove-bg: 600 } }
"#,
        &[("a.png", 320, 320), ("b.png", 480, 320)],
    );
    let rows = project.run(&double, before_eol()).await;
    for r in &rows {
        assert_eq!(route(r), ("local", "fallback-content-filtered", Status::Ok));
        assert_eq!((r.cost, r.attempts), (Usd::ZERO, 2));
        assert!(r.error.is_empty(), "the step still succeeded: {r:?}");
    }
    assert_eq!(double.requests(NOVA), 2);
    assert_eq!(
        double.requests(STAB_BG),
        0,
        "a filtered image is not resent"
    );
    assert_eq!(billed(&double, &[(NOVA, 0.04)]), Usd::ZERO);
}

// ---- Through the binary ----

const STABILITY_PIPELINE: &str = r#"
version: 1
name: e2e-remote
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [stability-remove-bg]
limits: { rpm: { stability-remove-bg: 600 } }
"#;

fn stability_project() -> Test {
    Test::new()
        .manifest(STABILITY_PIPELINE)
        .image("photos/a.png", 64, 64)
        .image("photos/b.png", 96, 64)
        .image("photos/c.png", 64, 96)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_calls_bedrock_at_the_endpoint_from_the_environment() {
    let double = BedrockDouble::start().await;
    let test = stability_project();
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(&["run", "pipelines/test.yaml", "-q"])
        .await
        .success();
    assert_eq!(double.successes(STAB_BG), 3);
    let rows = report(&test.root().join("out/report.csv"));
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(
            r[1..],
            [STAB_BG, "only-permitted", "ok", "0.070000", "1"].map(String::from)
        );
    }
    let body = double.last_body(STAB_BG).unwrap();
    assert!(body["image"].is_string(), "{body}");
    assert!(test.root().join("out/b.png").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_remote_steps_fall_back_at_once() {
    let double = BedrockDouble::start().await;
    let test = stability_project();
    let out = Retouch::at(test.root())
        .bedrock(&double)
        .credentials(false)
        .run_async(&["run", "pipelines/test.yaml"])
        .await
        .success();
    assert!(out.stderr.contains("no AWS credentials"), "{}", out.stderr);
    assert_eq!(double.requests(STAB_BG), 0);
    let rows = report(&test.root().join("out/report.csv"));
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(
            r[1..],
            ["local", "fallback-no-credentials", "ok", "0.000000", "1"].map(String::from)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_every_row_and_calls_nothing() {
    let double = BedrockDouble::start().await;
    let test = stability_project();
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(&["run", "pipelines/test.yaml", "--dry-run", "-q"])
        .await
        .success();
    assert_eq!(double.requests(STAB_BG), 0);
    let rows = report(&test.root().join("out/report.csv"));
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(
            r[1..],
            [STAB_BG, "only-permitted", "planned", "0.070000", "0"].map(String::from)
        );
    }
    assert!(
        !test.root().join("out/a.png").exists(),
        "no outputs written"
    );
}

#[test]
fn the_catalog_pipeline_checks_without_credentials() {
    let manifest = include_str!("../../pipelines/catalog.yaml");
    let out = Test::new()
        .file("pipelines/catalog.yaml", manifest.as_bytes())
        .image("samples/shoes/1.jpg", 800, 600)
        .image("samples/bags/2.png", 600, 800)
        .image("samples/bags/2_thumb.jpg", 60, 80)
        .run(&["check", "pipelines/catalog.yaml"])
        .success();
    let stdout = &out.stdout;
    assert!(
        stdout.contains("inputs:   2 images (1 excluded"),
        "{stdout}"
    );
    let models = "models [titan-image-v2, nova-canvas]";
    assert!(stdout.contains(models), "{stdout}");
    assert!(
        stdout.contains("escalate below 0.80 to [stability-remove-bg]"),
        "{stdout}"
    );
    // Fast upscale is the cheapest upscaler whatever the date: 2 images, 2 calls at 30 rpm.
    let calls = format!("{STAB_FAST}: 2 calls at 30 rpm");
    assert!(stdout.contains(&calls), "{stdout}");
    assert!(stdout.contains("run capped at $25.000000"), "{stdout}");
}
