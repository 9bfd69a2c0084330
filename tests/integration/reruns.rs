//! Reruns never pay twice: the real binary against the Bedrock double, counting the calls the
//! double answered (each one billed) across runs that share a state folder.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::Test;
use crate::harness::{Retouch, report};
use crate::support::bedrock_double::BedrockDouble;

const STAB_BG: &str = "stability.stable-image-remove-background-v1:0";
const STAB_FAST: &str = "stability.stable-fast-upscale-v1:0";

/// Two remote steps: remove-bg ($0.07) then fast upscale ($0.03).
fn pipeline(background: &str, extra: &str) -> String {
    format!(
        r#"
version: 1
name: reruns
inputs: ["../photos/*.png"]
output: {{ dir: ../out, format: png }}
steps:
  - op: upscale
    models: [stability-fast-upscale]
    factor: 2
  - op: remove-bg
    models: [stability-remove-bg]
    background: "{background}"
limits: {{ rpm: {{ stability-remove-bg: 6000, stability-fast-upscale: 6000 }} }}
{extra}
"#
    )
}

fn project(images: usize) -> Test {
    let mut test = Test::new().manifest(&pipeline("#ffffff", ""));
    for i in 0..images {
        test = test.image(&format!("photos/p{i}.png"), 64 + 8 * i as u32, 64);
    }
    test
}

const RUN: &[&str] = &["run", "pipelines/test.yaml", "-q"];

fn calls(double: &BedrockDouble) -> (u64, u64) {
    (double.successes(STAB_FAST), double.successes(STAB_BG))
}

/// (model, reason, cost) of each row of the report.
fn routes(root: &Path) -> Vec<(String, String, String)> {
    report(&root.join("out/report.csv"))
        .into_iter()
        .map(|[_, model, reason, _, cost, _]| (model, reason, cost))
        .collect()
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_makes_no_calls_and_rewrites_nothing() {
    let double = BedrockDouble::start().await;
    let test = project(3);
    let root = test.root();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (3, 3));
    let first = std::fs::read(root.join("out/p1.png")).unwrap();
    let written = mtime(&root.join("out/p1.png"));

    let out = Retouch::at(root)
        .bedrock(&double)
        .run_async(&["run", "pipelines/test.yaml"])
        .await
        .success();
    assert_eq!(calls(&double), (3, 3), "the rerun called a model");
    for (model, reason, cost) in routes(root) {
        assert!(model == STAB_FAST || model == STAB_BG, "{model}");
        assert_eq!((reason.as_str(), cost.as_str()), ("cache-hit", "0.000000"));
    }
    assert!(
        out.stdout.contains("cache:  6 of 6 steps reused"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read(root.join("out/p1.png")).unwrap(), first);
    assert_eq!(mtime(&root.join("out/p1.png")), written, "output rewritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_at_the_last_step_recalls_only_that_step() {
    let double = BedrockDouble::start().await;
    let test = project(3);
    let root = test.root();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (3, 3));
    let test = test.manifest(&pipeline("#000000", ""));
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (3, 6), "only remove-bg runs again");
    let rows = routes(test.root());
    for pair in rows.chunks(2) {
        assert_eq!(pair[0].1, "cache-hit");
        assert_eq!(
            (pair[1].0.as_str(), pair[1].2.as_str()),
            (STAB_BG, "0.070000")
        );
    }
    // The output now has the new background: its corner is black.
    let out = image::open(test.root().join("out/p0.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0, 255]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_cached_steps_as_free_and_records_nothing() {
    const DRY: &[&str] = &["run", "pipelines/test.yaml", "-q", "--dry-run"];
    let double = BedrockDouble::start().await;
    let test = project(3);
    // Before any run: every step planned at its price, and no state folder is created.
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(DRY)
        .await
        .success();
    assert!(!test.root().join("pipelines/.retouch").exists());
    let planned = routes(test.root());
    assert!(
        planned
            .iter()
            .all(|r| r.1 == "only-permitted" && r.2 != "0.000000"),
        "{planned:?}"
    );
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (3, 3));
    // Unchanged: every step would be a free cache hit.
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(DRY)
        .await
        .success();
    let rows = routes(test.root());
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter().all(|r| r.1 == "cache-hit" && r.2 == "0.000000"),
        "{rows:?}"
    );
    // The last step changed: the first is still a hit, the second planned at its price.
    let test = test.manifest(&pipeline("#000000", ""));
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(DRY)
        .await
        .success();
    for pair in routes(test.root()).chunks(2) {
        assert_eq!(pair[0].1, "cache-hit");
        assert_eq!(
            (pair[1].0.as_str(), pair[1].1.as_str(), pair[1].2.as_str()),
            (STAB_BG, "only-permitted", "0.070000")
        );
    }
    assert_eq!(calls(&double), (3, 3), "a dry run calls nothing");
    // Only the real run is in the history (a header line and one run).
    let runs = crate::harness::Test { dir: test.dir }
        .run(&["runs", "--state", "pipelines/.retouch"])
        .success()
        .stdout;
    assert_eq!(runs.lines().count(), 2, "{runs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_input_recomputes_only_that_image() {
    let double = BedrockDouble::start().await;
    let test = project(3);
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    let test = test.image("photos/p1.png", 100, 70);
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (4, 4));
    let rows = report(&test.root().join("out/report.csv"));
    for r in &rows {
        let expected = if r[0].ends_with("p1.png") {
            "only-permitted"
        } else {
            "cache-hit"
        };
        assert_eq!(r[2], expected, "{r:?}");
    }
    let (w, h) = image::image_dimensions(test.root().join("out/p1.png")).unwrap();
    assert_eq!((w, h), (200, 140));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_outputs_are_restored_from_the_cache_without_calls() {
    let double = BedrockDouble::start().await;
    let test = project(3);
    let root = test.root();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    let original = std::fs::read(root.join("out/p2.png")).unwrap();
    std::fs::remove_file(root.join("out/p2.png")).unwrap();
    std::fs::write(root.join("out/p0.png"), b"scribbled over").unwrap();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (3, 3));
    assert_eq!(std::fs::read(root.join("out/p2.png")).unwrap(), original);
    let restored = image::open(root.join("out/p0.png")).expect("p0 restored as an image");
    assert_eq!(restored.width(), 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_runs_every_step_again() {
    let double = BedrockDouble::start().await;
    let test = project(2);
    let root = test.root();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(&["run", "pipelines/test.yaml", "-q", "--force"])
        .await
        .success();
    assert_eq!(calls(&double), (4, 4));
    assert!(
        routes(root)
            .iter()
            .all(|(_, reason, _)| reason != "cache-hit")
    );
    // …and what it recomputed is cached in turn.
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_run_then_rerun_pays_each_call_exactly_once() {
    let double = BedrockDouble::start().await;
    let images = 6;
    // One image at a time and calls spaced 400 ms apart by the rate limit: when the test sees a
    // result recorded, the next call is still waiting for its turn, not on the wire.
    let slow = pipeline("#ffffff", "")
        .replace(
            "6000, stability-fast-upscale: 6000",
            "150, stability-fast-upscale: 150",
        )
        .replace("limits: {", "limits: { concurrency: 1,");
    let mut test = Test::new().manifest(&slow);
    for i in 0..images {
        test = test.image(&format!("photos/p{i}.png"), 64 + 8 * i as u32, 64);
    }
    let root = test.root().to_owned();
    let state = root.join("pipelines/.retouch/state.db");

    let mut child = Retouch::at(&root).bedrock(&double).spawn(RUN);
    let recorded = || -> i64 {
        let Ok(db) = rusqlite::Connection::open_with_flags(
            &state,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return 0;
        };
        db.query_row("SELECT COUNT(*) FROM steps WHERE blob != ''", [], |r| {
            r.get(0)
        })
        .unwrap_or(0)
    };
    // Kill once two images are done: the third image's first call is then held back by the
    // rate limit (the second model is called right after the first, the first only every 400 ms).
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded() < 4 {
        assert!(
            Instant::now() < deadline,
            "the run never recorded 4 results"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (fast, bg) = calls(&double);
    assert!(
        fast + bg >= 4 && fast + bg < 2 * images as u64,
        "{fast} + {bg}"
    );

    let fast_rpm = slow.replace("concurrency: 1,", "");
    let test = test.manifest(&fast_rpm.replace("150", "6000"));
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(
        calls(&double),
        (images as u64, images as u64),
        "a completed call was paid for twice"
    );
    for i in 0..images {
        let out = test.root().join(format!("out/p{i}.png"));
        let img = image::open(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        assert_eq!(img.width(), 2 * (64 + 8 * i as u32));
    }
    // The killed run is in the history, unfinished, with what it managed (and, if it was
    // killed between recording a result and settling its call, that call as possibly billed).
    let runs = crate::harness::Test { dir: test.dir }
        .run(&["runs", "--state", "pipelines/.retouch"])
        .success();
    assert!(runs.stdout.contains("(unfinished"), "{}", runs.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_budget_holds_across_runs() {
    let double = BedrockDouble::start().await;
    // $0.10 per image (both steps); $0.50 a day buys five images in all.
    // One image at a time, so which images get the money is deterministic.
    let capped = pipeline("#ffffff", "budget: { daily_max_usd: 0.50 }")
        .replace("limits: {", "limits: { concurrency: 1,");
    let test = project(3).manifest(&capped);
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (3, 3));
    let test = test
        .image("photos/p3.png", 120, 64)
        .image("photos/p4.png", 128, 64)
        .image("photos/p5.png", 136, 64);
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (5, 5), "the day's cap was exceeded");
    let rows = report(&test.root().join("out/report.csv"));
    let budget: Vec<_> = rows.iter().filter(|r| r[2] == "fallback-budget").collect();
    assert_eq!(budget.len(), 2, "{rows:?}");
    assert!(budget.iter().all(|r| r[1] == "local" && r[4] == "0.000000"));
}

/// Runs `manifest("a")` and `manifest("b")` at the same time (each reads `photos-<name>/`,
/// writes `out-<name>/`), over `photos` images each; both must succeed. Returns both reports'
/// rows and how long the two took together.
async fn two_runs_at_once(
    double: &BedrockDouble,
    manifest: impl Fn(&str) -> String,
    photos: u32,
) -> (Vec<[String; 6]>, Duration) {
    let mut test = Test::new()
        .file("pipelines/a.yaml", manifest("a").as_bytes())
        .file("pipelines/b.yaml", manifest("b").as_bytes());
    for i in 0..photos {
        test = test
            .image(&format!("photos-a/p{i}.png"), 64 + 8 * i, 64)
            .image(&format!("photos-b/p{i}.png"), 64 + 8 * i, 72);
    }
    let root = test.root();
    let retouch = Retouch::at(root).bedrock(double);
    let started = Instant::now();
    let (a, b) = tokio::join!(
        retouch.run_async(&["run", "pipelines/a.yaml", "-q"]),
        retouch.run_async(&["run", "pipelines/b.yaml", "-q"]),
    );
    let took = started.elapsed();
    a.success();
    b.success();
    let rows = ["a", "b"]
        .iter()
        .flat_map(|n| report(&root.join(format!("out-{n}/report.csv"))))
        .collect();
    (rows, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_started_together_share_the_daily_budget() {
    let double = BedrockDouble::start().await;
    // Slow answers, so the two runs' calls are in flight at the same time.
    double.set_latency(STAB_FAST, Duration::from_millis(150));
    double.set_latency(STAB_BG, Duration::from_millis(150));
    // Each pipeline alone would spend $0.60; the day allows $0.50 for both together.
    let capped = |name: &str| {
        pipeline("#ffffff", "budget: { daily_max_usd: 0.50 }")
            .replace("name: reruns", &format!("name: {name}"))
            .replace("../photos/", &format!("../photos-{name}/"))
            .replace("dir: ../out", &format!("dir: ../out-{name}"))
            .replace("limits: {", "limits: { concurrency: 4,")
    };
    let (rows, _) = two_runs_at_once(&double, capped, 6).await;
    let (fast, bg) = calls(&double);
    let billed_micros = fast * 30_000 + bg * 70_000;
    assert!(
        billed_micros <= 500_000,
        "{fast} upscales and {bg} cut-outs billed together"
    );
    assert!(
        billed_micros >= 430_000,
        "the cap was not used: {billed_micros} micro-USD"
    );
    let reported: f64 = rows.iter().map(|r| r[4].parse::<f64>().unwrap()).sum();
    assert!(
        (reported * 1e6 - billed_micros as f64).abs() < 0.5,
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r[2] == "fallback-budget"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_shared_cap_is_spent_falls_back_without_waiting_for_rate_slots() {
    // Two runs share the day's $0.04; an upscale costs $0.03, so only one is made, and it is in
    // flight for a while. At 2 requests a minute every slot after the first takes 30 s: the run
    // whose hold was refused must not wait for a slot per image only to be refused again.
    let double = BedrockDouble::start().await;
    double.set_latency(STAB_FAST, Duration::from_millis(1500));
    let manifest = |name: &str| {
        format!(
            r#"
version: 1
name: {name}
inputs: ["../photos-{name}/*.png"]
output: {{ dir: ../out-{name}, format: png }}
steps:
  - op: upscale
    models: [stability-fast-upscale]
    factor: 2
limits: {{ concurrency: 1, rpm: {{ stability-fast-upscale: 2 }} }}
budget: {{ daily_max_usd: 0.04 }}
"#
        )
    };
    let (rows, took) = two_runs_at_once(&double, manifest, 4).await;
    assert_eq!(
        double.successes(STAB_FAST),
        1,
        "the day's cap buys one upscale"
    );
    assert_eq!(rows.len(), 8);
    let budget = rows.iter().filter(|r| r[2] == "fallback-budget").count();
    assert_eq!(budget, 7, "{rows:?}");
    // Waiting for a slot per refused image would take 30 s or more (three slots at 2 a minute).
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_price_change_since_the_last_run() {
    let double = BedrockDouble::start().await;
    let test = project(1);
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    let out = Retouch::at(test.root())
        .bedrock(&double)
        .run_async(&["check", "pipelines/test.yaml"])
        .await
        .success();
    assert!(
        out.stdout
            .contains("since the last run: same models, same prices"),
        "{}",
        out.stdout
    );
    let test = test.manifest(&pipeline(
        "#ffffff",
        "prices: { stability-remove-bg: 0.09 }",
    ));
    let out = Retouch::at(test.root())
        .bedrock(&double)
        .run_async(&["check", "pipelines/test.yaml"])
        .await
        .success();
    let line = format!("{STAB_BG}/remove-bg: price changed from $0.070000 to $0.090000");
    assert!(out.stdout.contains(&line), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_gc_forgets_old_results() {
    let double = BedrockDouble::start().await;
    let test = project(2);
    let root = test.root();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let gc = &[
        "cache",
        "gc",
        "--older-than",
        "0s",
        "--state",
        "pipelines/.retouch",
    ];
    let out = Retouch::at(root)
        .bedrock(&double)
        .run_async(gc)
        .await
        .success();
    assert!(
        out.stdout.contains("removed 4 cache entries and 4 files"),
        "{}",
        out.stdout
    );
    std::fs::remove_dir_all(root.join("out")).unwrap();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (4, 4), "gc'd results are recomputed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_of_a_run_lists_every_image() {
    let double = BedrockDouble::start().await;
    let test = project(4);
    let root = test.root();
    Retouch::at(root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    let out = Retouch::at(root)
        .bedrock(&double)
        .run_async(&["report", "out/report.csv", "--html", "out/report.html"])
        .await
        .success();
    assert!(out.stdout.contains("cost:   $0.400000"), "{}", out.stdout);
    let page = std::fs::read_to_string(root.join("out/report.html")).unwrap();
    assert_eq!(page.matches("<tr class=\"image\"").count(), 4);
    for i in 0..4 {
        assert!(page.contains(&format!("p{i}.png")), "p{i} missing");
    }
}

const LOCAL_PIPELINE: &str = r#"
version: 1
name: local-reruns
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [local]
  - op: upscale
    models: [local]
    factor: 2
"#;

#[test]
fn a_local_rerun_reuses_everything_and_a_change_replays_only_free_steps() {
    let out = Test::new()
        .manifest(LOCAL_PIPELINE)
        .image("photos/a.png", 120, 90)
        .image("photos/b.png", 90, 120)
        .run(RUN)
        .success();
    let written = mtime(&out.root.join("out/a.png"));
    let out = out.then().run(RUN).success();
    let (_, rows) = out.csv("out/report.csv");
    assert!(
        rows.iter()
            .all(|r| &r[5] == "cache-hit" && &r[4] == "local")
    );
    assert_eq!(mtime(&out.root.join("out/a.png")), written);

    // Local results are kept by size only: changing step 2 recomputes step 1 too (free), and
    // the rows say so instead of claiming a cache hit.
    let changed = LOCAL_PIPELINE.replace("factor: 2", "factor: 3");
    let out = out.then().manifest(&changed).run(RUN).success();
    let (_, rows) = out.csv("out/report.csv");
    assert!(rows.iter().all(|r| &r[5] != "cache-hit"), "{rows:?}");
    let (w, h) = image::image_dimensions(out.root.join("out/a.png")).unwrap();
    assert_eq!((w, h), (360, 270));
}

/// Seconds of latency the double adds, so calls of runs going at once overlap.
const SLOW: Duration = Duration::from_millis(250);

fn slow_double_models(double: &BedrockDouble) {
    double.set_latency(STAB_FAST, SLOW);
    double.set_latency(STAB_BG, SLOW);
}

/// What the double billed: $0.03 per upscale, $0.07 per cut-out, in micro-USD.
fn billed_micros(double: &BedrockDouble) -> i64 {
    let (fast, bg) = calls(double);
    fast as i64 * 30_000 + bg as i64 * 70_000
}

fn micros(cost: &str) -> i64 {
    (cost.parse::<f64>().unwrap() * 1e6).round() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_manifest_at_once_pay_each_step_once() {
    let double = BedrockDouble::start().await;
    slow_double_models(&double);
    let images = 6;
    let test = project(images)
        .manifest(&pipeline("#ffffff", "").replace("limits: {", "limits: { concurrency: 3,"));
    let root = test.root();
    let retouch = Retouch::at(root).bedrock(&double);
    let (a, b) = tokio::join!(
        retouch.run_async(RUN),
        retouch.run_async(&["run", "pipelines/test.yaml", "-q", "--report", "out/b.csv"]),
    );
    a.success();
    b.success();
    assert_eq!(
        calls(&double),
        (images as u64, images as u64),
        "a step was paid for by both runs"
    );
    // Every image and step is paid in exactly one of the two reports; the other reused it.
    let (ra, rb) = (
        report(&root.join("out/report.csv")),
        report(&root.join("out/b.csv")),
    );
    assert_eq!((ra.len(), rb.len()), (2 * images, 2 * images));
    let paid: i64 = ra.iter().chain(&rb).map(|r| micros(&r[4])).sum();
    assert_eq!(paid, billed_micros(&double), "{ra:?}\n{rb:?}");
    for (x, y) in ra.iter().zip(&rb) {
        let paid_once = (micros(&x[4]) > 0) != (micros(&y[4]) > 0);
        assert!(paid_once, "{x:?} / {y:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_images_in_one_run_pay_once() {
    let double = BedrockDouble::start().await;
    slow_double_models(&double);
    let test = project(1);
    let photo = std::fs::read(test.root().join("photos/p0.png")).unwrap();
    let test = test
        .file("photos/copy-1.png", &photo)
        .file("photos/copy-2.png", &photo);
    Retouch::at(test.root())
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
    assert_eq!(calls(&double), (1, 1), "one content, one payment");
    let rows = routes(test.root());
    assert_eq!(rows.len(), 6);
    let hits = rows.iter().filter(|r| r.1 == "cache-hit").count();
    assert_eq!(hits, 4, "{rows:?}");
    for name in ["p0", "copy-1", "copy-2"] {
        assert!(
            test.root().join(format!("out/{name}.png")).is_file(),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_may_not_write_the_report_a_live_run_writes() {
    let double = BedrockDouble::start().await;
    double.set_latency(STAB_FAST, Duration::from_millis(400));
    let test = project(4)
        .manifest(&pipeline("#ffffff", "").replace("limits: {", "limits: { concurrency: 1,"));
    let root = test.root().to_owned();
    let mut first = Retouch::at(&root).bedrock(&double).spawn(RUN);
    let live = root.join("pipelines/.retouch/live");
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = || {
        std::fs::read_dir(&live).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("report-"))
        })
    };
    while !started() {
        assert!(Instant::now() < deadline, "the first run never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = Retouch::at(&root).bedrock(&double).run_async(RUN).await;
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(
        second.stderr.contains("is writing the report") && second.stderr.contains("out/report.csv"),
        "{}",
        second.stderr
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(
        report(&root.join("out/report.csv")).len(),
        8,
        "first run's report intact"
    );
    // Once it is done, the report is free again.
    Retouch::at(&root)
        .bedrock(&double)
        .run_async(RUN)
        .await
        .success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runs_cost_shows_everything_it_was_billed_and_what_it_may_have_been() {
    let double = BedrockDouble::start().await;
    slow_double_models(&double);
    let test = project(6)
        .manifest(&pipeline("#ffffff", "").replace("limits: {", "limits: { concurrency: 3,"));
    let root = test.root().to_owned();
    let state = root.join("pipelines/.retouch/state.db");
    let mut child = Retouch::at(&root).bedrock(&double).spawn(RUN);
    let recorded = || -> i64 {
        let Ok(db) = rusqlite::Connection::open_with_flags(
            &state,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return 0;
        };
        db.query_row("SELECT COUNT(*) FROM steps WHERE blob != ''", [], |r| {
            r.get(0)
        })
        .unwrap_or(0)
    };
    // Kill while first steps are done and second steps are on the wire: their images have
    // been billed but have no rows yet.
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded() < 2 {
        assert!(Instant::now() < deadline, "nothing was recorded");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    tokio::time::sleep(SLOW * 2).await; // calls on the wire get their answers
    let billed = billed_micros(&double);
    assert!(billed > 0);

    let runs = crate::harness::Test { dir: test.dir }
        .run(&["runs", "--state", "pipelines/.retouch"])
        .success();
    let line = runs
        .stdout
        .lines()
        .find(|l| l.contains("(unfinished"))
        .unwrap_or_else(|| panic!("{}", runs.stdout));
    let cost = micros(line.split_whitespace().nth(6).unwrap());
    let possibly = line
        .split("up to $")
        .nth(1)
        .map_or(0, |rest| micros(rest.split_whitespace().next().unwrap()));
    assert!(
        cost <= billed && billed <= cost + possibly,
        "runs says ${cost} billed + up to ${possibly}; the double billed {billed}\n{line}"
    );
    // The rows alone say less: the difference is the images that never finished.
    let rows: i64 = {
        let db = rusqlite::Connection::open(&state).unwrap();
        db.query_row("SELECT COALESCE(SUM(cost_micros), 0) FROM rows", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert!(cost > rows, "cost {cost} rows {rows}");
    let run_id = line.split_whitespace().nth(2).unwrap().to_owned();
    let out = runs
        .then()
        .run(&["report", &run_id, "--state", "pipelines/.retouch"])
        .success();
    assert!(
        out.stdout
            .contains("billed for steps of images that never finished"),
        "{}",
        out.stdout
    );
}
