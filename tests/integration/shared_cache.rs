//! The step cache shared by every machine (`shared: { cache: s3://… }`): the real `retouch`
//! binary with separate state folders (as separate machines have), the Bedrock double and the
//! in-process S3 server (s3s-fs, which honours `If-None-Match: *` on PutObject with a 412). A
//! paid result is published once, create-only; any other machine reuses it and calls nothing; a
//! damaged blob is a miss, never a corrupt output; shards on separate machines rerun for free.

use crate::harness::{Retouch, Test, all_at_once, report};
use crate::support::bedrock_double::BedrockDouble;
use crate::support::s3_server::S3Server;

const REMOVE_BG: &str = "stability.stable-image-remove-background-v1:0";

const MANIFEST: &str = r#"version: 1
name: shared
inputs: ["../photos/**/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [stability-remove-bg]
    fallback: fail
  - op: upscale
    models: [local]
    factor: 1.5
shared: { cache: "s3://team-cache/retouch/" }
limits: { concurrency: 4, rpm: { stability-remove-bg: 6000 } }
aws: { region: us-east-1 }
"#;

/// `n` photos of different sizes.
fn photos(n: usize) -> Test {
    let mut t = Test::new().manifest(MANIFEST);
    for i in 0..n {
        t = t.image(&format!("photos/{i:03}.png"), 64 + i as u32, 80);
    }
    t
}

#[test]
fn a_machine_reuses_what_another_paid_for_and_a_damaged_blob_is_only_a_miss() {
    let server = S3Server::start();
    server.create_bucket("team-cache");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(BedrockDouble::start());
    let t = photos(6);
    let root = t.root().to_owned();
    let retouch = Retouch::at(&root).s3(&server).bedrock(&double);
    let on = |machine: &str, extra: &[&str]| {
        let state = format!("{machine}-state");
        let mut args = vec!["run", "pipelines/test.yaml", "-q", "--state", &state];
        args.extend_from_slice(extra);
        retouch.run(&args)
    };
    on("a", &[]).code(0);
    assert_eq!(double.successes(REMOVE_BG), 6);
    // A dry run on a fresh machine plans what machine a paid for as cache hits at $0.
    let requests = double.requests(REMOVE_BG);
    on("fresh", &["--dry-run"]).code(0);
    let planned = report(&root.join("out/report.csv"));
    assert_eq!(planned.len(), 12);
    assert!(
        planned
            .iter()
            .step_by(2)
            .all(|r| r[2] == "cache-hit" && r[4] == "0.000000"),
        "{planned:?}"
    );
    assert_eq!(double.requests(REMOVE_BG), requests);
    assert!(!root.join("fresh-state").join("state.db").exists());
    // Published: six entries and six blobs.
    let steps = server.keys("team-cache", "retouch/steps/");
    let blobs = server.keys("team-cache", "retouch/blobs/");
    assert_eq!((steps.len(), blobs.len()), (6, 6), "{steps:?} {blobs:?}");
    let entry: serde_json::Value =
        serde_json::from_slice(&server.get("team-cache", &steps[0]).0).unwrap();
    assert_eq!(entry["model"], REMOVE_BG);
    assert_eq!(entry["cost_micros"], 70_000);

    // Machine b (a state folder of its own) pays for nothing and calls nothing.
    let requests = double.requests(REMOVE_BG);
    on("b", &[]).code(0);
    assert_eq!(double.requests(REMOVE_BG), requests);
    let rows = report(&root.join("out/report.csv"));
    let remove: Vec<_> = rows.iter().step_by(2).collect();
    assert!(
        remove
            .iter()
            .all(|r| r[2] == "cache-hit" && r[4] == "0.000000"),
        "{remove:?}"
    );
    for i in 0..6 {
        let out = image::open(root.join(format!("out/{i:03}.png"))).unwrap();
        assert_eq!(out.width(), ((64 + i) as f32 * 1.5).round() as u32);
    }

    // --force pays again; the objects already there are kept (create-only: 412), not replaced.
    let before = server.get("team-cache", &steps[0]);
    on("c", &["--force"]).code(0);
    assert_eq!(double.successes(REMOVE_BG), 12);
    assert_eq!(server.keys("team-cache", "retouch/steps/").len(), 6);
    assert_eq!(server.get("team-cache", &steps[0]), before);

    // A damaged blob is a miss for that image only: it is paid again, never written corrupt.
    let victim = &blobs[0];
    server.put_all(
        "team-cache",
        vec![(victim.clone(), b"not a png".to_vec())],
        "image/png",
    );
    on("d", &[]).code(0);
    assert_eq!(double.successes(REMOVE_BG), 13);
    for i in 0..6 {
        image::open(root.join(format!("out/{i:03}.png"))).unwrap();
    }
    // ... and the result paid for again replaced it: the next machine calls nothing.
    on("e", &[]).code(0);
    assert_eq!(double.successes(REMOVE_BG), 13);
    drop(double);
}

#[test]
fn shards_on_separate_machines_rerun_for_free_through_the_shared_cache() {
    let server = S3Server::start();
    server.create_bucket("team-cache");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(BedrockDouble::start());
    let t = photos(24);
    let root = t.root().to_owned();
    let retouch = Retouch::at(&root).s3(&server).bedrock(&double);
    let all_shards = |attempt: &str| {
        let shards = (0..4)
            .map(|i| {
                let (shard, state) = (format!("{i}/4"), format!("{attempt}-machine-{i}"));
                retouch.command(
                    env!("CARGO_BIN_EXE_retouch"),
                    &[
                        "run",
                        "pipelines/test.yaml",
                        "-q",
                        "--shard",
                        &shard,
                        "--state",
                        &state,
                    ],
                )
            })
            .collect();
        assert_eq!(all_at_once(shards), vec![0; 4]);
    };
    all_shards("first");
    assert_eq!(double.successes(REMOVE_BG), 24, "each image billed once");
    let requests = double.requests(REMOVE_BG);
    // The same shards on fresh machines (no local state at all): nothing is called again.
    all_shards("second");
    assert_eq!(double.requests(REMOVE_BG), requests);
    let merged = retouch.run(&["report", "merge", "out"]).code(0);
    assert!(
        merged.stdout.contains("48 rows, 24 images, $0.000000"),
        "{}",
        merged.stdout
    );
    drop(double);
}

#[test]
fn a_shared_cache_must_be_an_s3_prefix_apart_from_the_outputs() {
    let bad = |shared: &str, output: &str| {
        let manifest = MANIFEST
            .replace("shared: { cache: \"s3://team-cache/retouch/\" }", shared)
            .replace("output: { dir: ../out, format: png }", output);
        Test::new()
            .manifest(&manifest)
            .image("photos/p.png", 64, 64)
            .run(&["check", "pipelines/test.yaml"])
            .code(2)
    };
    let out = bad("shared: { cache: ../cache }", "output: { dir: ../out }");
    assert!(
        out.stderr.contains("shared.cache must be an S3 prefix"),
        "{}",
        out.stderr
    );
    let out = bad(
        "shared: { cache: \"s3://shop-out/out/cache/\" }",
        "output: { dir: \"s3://shop-out/out/\" }",
    );
    assert!(
        out.stderr.contains("overlaps the output folder"),
        "{}",
        out.stderr
    );
    let out = bad(
        "shared: { cache: \"s3://shop-out/c/\", table: t }",
        "output: { dir: ../out }",
    );
    assert!(out.stderr.contains("table"), "{}", out.stderr);
}

#[test]
fn the_test_server_honours_if_none_match_as_s3_does() {
    let server = S3Server::start();
    server.create_bucket("team-cache");
    let t = Test::new();
    let retouch = Retouch::at(t.root()).s3(&server);
    let (first, second, kept) = server.block_on(async {
        let s3 = retouch.s3_client().await.unwrap();
        let put = |bytes: &'static [u8]| {
            s3.put_if_absent("team-cache", "k", bytes.to_vec(), "text/plain")
        };
        let first = put(b"one").await.unwrap();
        let second = put(b"two").await.unwrap();
        let kept = s3.get_optional("team-cache", "k", 10).await.unwrap();
        (first, second, kept)
    });
    assert!(first, "created");
    assert!(!second, "412: already there");
    assert_eq!(kept.as_deref(), Some(&b"one"[..]));
}
