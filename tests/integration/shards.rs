//! Shards: one catalogue split across `retouch run --shard INDEX/COUNT` processes started at
//! once (or told their shard by the engine's environment), each doing exactly the inputs it
//! owns and writing its report part; `retouch report merge` combining the parts and naming the
//! missing and unfinished shards; every image billed once at the Bedrock double.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::harness::{Retouch, Test, all_at_once, report, wait_for_rows};
use crate::support::bedrock_double::BedrockDouble;

const LOCAL: &str = r#"version: 1
name: sharded
inputs: ["../photos/**/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: upscale
    models: [local]
    factor: 1.5
limits: { concurrency: 2 }
"#;

/// `n` photos, each a different size (identical photos would be one paid step, rightly).
fn catalogue(n: usize, manifest: &str) -> Test {
    let mut t = Test::new().manifest(manifest);
    for i in 0..n {
        let w = 64 + (i % 40) as u32;
        let h = 64 + (i / 40) as u32;
        t = t.image(&format!("photos/{}/{i:03}.png", ["a", "b"][i % 2]), w, h);
    }
    t
}

fn part(root: &Path, i: u32, n: u32) -> std::path::PathBuf {
    root.join(format!("out/report.part-{i:05}-of-{n:05}.csv"))
}

#[test]
fn eight_processes_split_the_catalogue_once_and_their_parts_merge() {
    let t = catalogue(40, LOCAL);
    let root = t.root().to_owned();
    let rt = Retouch::at(&root);
    let cmds = (0..8)
        .map(|i| {
            let shard = format!("{i}/8");
            rt.command(
                env!("CARGO_BIN_EXE_retouch"),
                &["run", "pipelines/test.yaml", "--shard", &shard, "-q"],
            )
        })
        .collect();
    assert_eq!(all_at_once(cmds), vec![0; 8]);
    // Every input in exactly one part; each part's status says it finished.
    let mut owner: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..8 {
        let rows = report(&part(&root, i, 8));
        assert!(!rows.is_empty(), "shard {i} got no images (40 over 8)");
        for r in rows {
            assert_eq!(r[3], "ok", "{r:?}");
            assert!(owner.insert(r[0].clone(), i).is_none(), "{} twice", r[0]);
        }
        let status: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join(format!("out/report.part-{i:05}-of-00008.csv.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(status["finished"], true);
        assert_eq!(status["shard"], format!("{i}/8"));
    }
    assert_eq!(owner.len(), 40);
    for i in 0..40 {
        let out = root.join(format!("out/{}/{i:03}.png", ["a", "b"][i % 2]));
        assert!(out.is_file(), "{}", out.display());
    }
    // The same input always belongs to the same shard: the library's hash agrees with the runs.
    for (image, shard) in &owner {
        assert!(
            retouch::shard::Shard::new(*shard, 8).unwrap().owns(image),
            "{image}"
        );
    }

    // Merged: one report, every row, same columns.
    let merged = rt.run(&["report", "merge", "out"]).code(0);
    assert!(
        merged
            .stdout
            .contains("8 of 8 shards of report.csv: 40 rows, 40 images"),
        "{}",
        merged.stdout
    );
    let rows = report(&root.join("out/report.csv"));
    assert_eq!(rows.len(), 40);
    let header = std::fs::read_to_string(root.join("out/report.csv")).unwrap();
    assert!(header.starts_with(&retouch::report::COLUMNS.join(",")));
    // `retouch report` reviews the parts' folder as one run.
    let review = rt.run(&["report", "out"]).code(0);
    assert!(
        review.stdout.contains("complete: every shard finished"),
        "{}",
        review.stdout
    );

    // The engines' environment names the shard: Kubernetes (count from RETOUCH_SHARD_COUNT)
    // and AWS Batch; a rerun of a shard redoes nothing.
    let k8s = rt
        .command(
            env!("CARGO_BIN_EXE_retouch"),
            &["run", "pipelines/test.yaml"],
        )
        .env("JOB_COMPLETION_INDEX", "3")
        .env("RETOUCH_SHARD_COUNT", "8")
        .output()
        .unwrap();
    assert!(
        k8s.status.success(),
        "{}",
        String::from_utf8_lossy(&k8s.stderr)
    );
    let said = String::from_utf8_lossy(&k8s.stderr);
    assert!(said.contains("shard 3/8"), "{said}");
    let mut batch = rt.command(
        env!("CARGO_BIN_EXE_retouch"),
        &["run", "pipelines/test.yaml", "-q"],
    );
    batch
        .env("AWS_BATCH_JOB_ARRAY_INDEX", "5")
        .env("AWS_BATCH_JOB_ARRAY_SIZE", "8");
    assert!(batch.status().unwrap().success());
    for i in [3, 5] {
        let rows = report(&part(&root, i, 8));
        assert!(rows.iter().all(|r| r[2] == "cache-hit"), "{rows:?}");
        let owned = owner.values().filter(|s| **s == i).count();
        assert_eq!(rows.len(), owned);
    }

    // A missing part and a killed shard's part are named; what there is is merged; exit 1.
    std::fs::remove_file(part(&root, 2, 8)).unwrap();
    let status4 = root.join("out/report.part-00004-of-00008.csv.json");
    let text = std::fs::read_to_string(&status4)
        .unwrap()
        .replace("\"finished\": true", "\"finished\": false");
    std::fs::write(&status4, text).unwrap();
    let partial = rt
        .run(&["report", "merge", "out", "--output", "out/partial.csv"])
        .code(1);
    assert!(
        partial.stdout.contains("missing: shard 2"),
        "{}",
        partial.stdout
    );
    assert!(
        partial.stdout.contains("incomplete: shard 4: unfinished"),
        "{}",
        partial.stdout
    );
    let kept = owner.values().filter(|s| **s != 2).count();
    assert_eq!(report(&root.join("out/partial.csv")).len(), kept);
}

#[test]
fn a_shard_that_cannot_be_worked_out_stops_before_any_work() {
    let t = catalogue(4, LOCAL);
    let rt = Retouch::at(t.root());
    let out = rt
        .run(&["run", "pipelines/test.yaml", "--shard", "8/8"])
        .code(2);
    assert!(
        out.stderr.contains("not below the shard count"),
        "{}",
        out.stderr
    );
    let k8s = rt
        .command(
            env!("CARGO_BIN_EXE_retouch"),
            &["run", "pipelines/test.yaml"],
        )
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    assert_eq!(k8s.status.code(), Some(2));
    let said = String::from_utf8_lossy(&k8s.stderr);
    assert!(
        said.contains("JOB_COMPLETION_INDEX=1") && said.contains("--shard-count"),
        "{said}"
    );
    assert!(!t.root().join("out").exists(), "nothing was processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_shards_against_the_double_bill_every_image_once_and_a_rerun_calls_nothing() {
    const REMOVE_BG: &str = "stability.stable-image-remove-background-v1:0";
    let double = BedrockDouble::start().await;
    let manifest = r#"version: 1
name: sharded
inputs: ["../photos/**/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [stability-remove-bg]
    fallback: fail
limits: { concurrency: 4, rpm: { stability-remove-bg: 6000 } }
aws: { region: us-east-1 }
"#;
    let t = catalogue(48, manifest);
    let root = t.root().to_owned();
    let rt = Retouch::at(&root).bedrock(&double);
    let shards = |rt: Retouch| {
        let cmds = (0..8)
            .map(|i| {
                let shard = format!("{i}/8");
                rt.command(
                    env!("CARGO_BIN_EXE_retouch"),
                    &["run", "pipelines/test.yaml", "--shard", &shard, "-q"],
                )
            })
            .collect();
        all_at_once(cmds)
    };
    let codes = tokio::task::spawn_blocking({
        let rt = rt.clone();
        move || shards(rt)
    })
    .await
    .unwrap();
    assert_eq!(codes, vec![0; 8]);
    assert_eq!(double.successes(REMOVE_BG), 48, "each image billed once");
    let merged = rt.run_async(&["report", "merge", "out"]).await.code(0);
    assert!(
        merged.stdout.contains("48 rows, 48 images, $3.360000"),
        "{}",
        merged.stdout
    );
    // A rerun of every shard at once calls nothing.
    let requests = double.requests(REMOVE_BG);
    let codes = tokio::task::spawn_blocking(move || shards(rt))
        .await
        .unwrap();
    assert_eq!(codes, vec![0; 8]);
    assert_eq!(double.requests(REMOVE_BG), requests);
}

#[test]
fn a_stopped_or_killed_shard_is_named_and_its_rerun_completes_the_report() {
    let t = catalogue(500, &LOCAL.replace("concurrency: 2", "concurrency: 1"));
    let root = t.root().to_owned();
    let rt = Retouch::at(&root);
    let shard = |i: u32| format!("{i}/2");
    rt.run(&["run", "pipelines/test.yaml", "--shard", &shard(1), "-q"])
        .code(0);
    // SIGTERM (what Batch and Kubernetes send before stopping a container): the shard finishes
    // the images in flight, writes its part and says it was interrupted.
    let child = rt.spawn(&["run", "pipelines/test.yaml", "--shard", &shard(0), "-q"]);
    let part0 = part(&root, 0, 2);
    wait_for_rows(&part0, 10, std::time::Duration::from_secs(60));
    let signal = |sig: &str, pid: u32| {
        assert!(
            Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-TERM", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let merge = || rt.run(&["report", "merge", "out"]);
    let stopped = merge().code(1);
    assert!(
        stopped.stdout.contains("incomplete: shard 0: interrupted"),
        "{}",
        stopped.stdout
    );
    // kill -9: the part says the shard never finished. (Wait for the new run's own status
    // first: the part on disk still holds the stopped run's rows.)
    let child = rt.spawn(&["run", "pipelines/test.yaml", "--shard", &shard(0), "-q"]);
    let status0 = root.join("out/report.part-00000-of-00002.csv.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&status0).is_ok_and(|s| s.contains("\"finished\": false")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the rerun never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    wait_for_rows(&part0, 25, std::time::Duration::from_secs(60));
    signal("-KILL", child.id());
    child.wait_with_output().unwrap();
    let killed = merge().code(1);
    assert!(
        killed.stdout.contains("incomplete: shard 0: unfinished"),
        "{}",
        killed.stdout
    );
    // Rerun the shard named: the merged report is complete, every image once.
    rt.run(&["run", "pipelines/test.yaml", "--shard", &shard(0), "-q"])
        .code(0);
    let done = merge().code(0);
    assert!(
        done.stdout.contains("500 rows, 500 images"),
        "{}",
        done.stdout
    );
    let rows = report(&root.join("out/report.csv"));
    let images: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(images.len(), 500);
    assert!(rows.iter().all(|r| r[3] == "ok"));
    // Every output is whole (the kills left no half-written file behind).
    let mut rdr = csv::Reader::from_path(root.join("out/report.csv")).unwrap();
    for r in rdr.records() {
        let out = root.join(&r.unwrap()[14]);
        image::open(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_spends_only_its_share_of_the_run_cap() {
    const REMOVE_BG: &str = "stability.stable-image-remove-background-v1:0";
    let double = BedrockDouble::start().await;
    // 24 images at $0.07 ($1.68) under a $0.70 cap: 4 shards of $0.175 each afford 2 calls.
    let manifest = r#"version: 1
name: capped
inputs: ["../photos/**/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [stability-remove-bg]
    fallback: skip
budget: { max_usd: 0.70 }
limits: { concurrency: 2, rpm: { stability-remove-bg: 6000 } }
aws: { region: us-east-1 }
"#;
    let t = catalogue(24, manifest);
    let root = t.root().to_owned();
    let rt = Retouch::at(&root).bedrock(&double);
    let codes = tokio::task::spawn_blocking(move || {
        let cmds = (0..4)
            .map(|i| {
                let shard = format!("{i}/4");
                rt.command(
                    env!("CARGO_BIN_EXE_retouch"),
                    &["run", "pipelines/test.yaml", "--shard", &shard, "-q"],
                )
            })
            .collect();
        all_at_once(cmds)
    })
    .await
    .unwrap();
    assert!(codes.iter().all(|c| *c == 0 || *c == 1), "{codes:?}");
    let billed = double.successes(REMOVE_BG);
    assert!(
        billed > 0 && billed <= 8,
        "{billed} calls at $0.07 under 4 × $0.175"
    );
    // The parts agree with the double: what they report is what was billed, within the cap.
    let mut total = 0.0;
    for i in 0..4 {
        for r in report(&part(&root, i, 4)) {
            total += r[4].parse::<f64>().unwrap();
            if r[3] == "skipped" {
                assert_eq!(r[2], "fallback-budget", "{r:?}");
            }
        }
    }
    assert!((total - 0.07 * billed as f64).abs() < 1e-9, "{total}");
    assert!(total <= 0.70);
}
