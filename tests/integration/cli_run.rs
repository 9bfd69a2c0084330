//! `retouch run` and `retouch check` end to end through the binary.

use crate::harness::Test;

const HEADER: &str = "run_id,image,step,op,model,reason,status,cost_usd,latency_ms,attempts,in_w,in_h,out_w,out_h,output,error";

const THREE_STEPS: &str = r#"
version: 1
name: e2e
inputs: ["../photos/**/*.{jpg,png}"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [local]
  - op: fix-lighting
    models: [local]
    strength: 0.8
  - op: upscale
    models: [local]
    factor: 2
limits: { concurrency: 4 }
"#;

fn three_step_test() -> Test {
    Test::new()
        .manifest(THREE_STEPS)
        .image("photos/a/1.jpg", 120, 90)
        .image("photos/b/1.jpg", 100, 100)
        .image("photos/c.png", 64, 80)
}

#[test]
fn demo_like_pipeline_writes_outputs_and_report() {
    let out = three_step_test().run(&["run", "pipelines/test.yaml", "-q"]).success();
    let (header, rows) = out.csv("out/report.csv");
    assert_eq!(header.join(","), HEADER);
    assert_eq!(rows.len(), 3 * 3, "images x steps rows");
    // Rows come in input order, then step order.
    let keys: Vec<(String, String)> = rows.iter().map(|r| (r[1].to_string(), r[2].to_string())).collect();
    assert_eq!(keys[0], ("../photos/a/1.jpg".into(), "1".into()));
    assert_eq!(keys[2], ("../photos/a/1.jpg".into(), "3".into()));
    assert_eq!(keys[8], ("../photos/c.png".into(), "3".into()));
    let run_ids: std::collections::HashSet<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(run_ids.len(), 1);
    for r in &rows {
        assert_eq!((&r[4], &r[5], &r[6]), ("local", "only-permitted", "ok"), "{r:?}");
        assert_eq!(&r[7], "0.000000");
        assert_eq!(&r[9], "1");
    }
    // Outputs mirror the input tree (a/1 and b/1 do not collide), PNG, 2x, with alpha.
    for (rel, w, h) in [("out/a/1.png", 240, 180), ("out/b/1.png", 200, 200), ("out/c.png", 128, 160)] {
        let img = image::open(out.root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!((img.width(), img.height()), (w, h), "{rel}");
        assert!(img.color().has_alpha(), "{rel} keeps transparency");
    }
    let upscale_row = &rows[2];
    assert_eq!((&upscale_row[10], &upscale_row[11], &upscale_row[12], &upscale_row[13]), ("120", "90", "240", "180"));
    assert!(upscale_row[14].ends_with("out/a/1.png"), "{:?}", &upscale_row[14]);
}

#[test]
fn one_corrupt_file_fails_alone_with_exit_code_1() {
    let mut jpg = std::fs::read(three_step_test().image("x.jpg", 50, 50).root().join("x.jpg")).unwrap();
    jpg.truncate(jpg.len() / 2);
    let out = three_step_test()
        .file("photos/broken.jpg", &jpg)
        .file("photos/empty.png", b"")
        .file("photos/text.jpg", b"this is not an image")
        .run(&["run", "pipelines/test.yaml", "-q"])
        .code(1);
    let (_, rows) = out.csv("out/report.csv");
    assert_eq!(rows.len(), 6 * 3);
    let failed: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| &r[6] != "ok")
        .map(|r| (&r[1], &r[6], &r[5]))
        .collect();
    let expect = |img: &'static str, reason: &'static str| (0..3).map(move |_| (img, "failed", reason));
    let expected: Vec<_> = expect("../photos/broken.jpg", "truncated")
        .chain(expect("../photos/empty.png", "empty-file"))
        .chain(expect("../photos/text.jpg", "not-an-image"))
        .collect();
    assert_eq!(failed, expected);
    assert!(rows.iter().filter(|r| &r[6] == "failed").all(|r| !r[15].is_empty()), "failed rows carry an error");
    for rel in ["out/a/1.png", "out/b/1.png", "out/c.png"] {
        assert!(out.root.join(rel).exists(), "{rel} still written");
    }
    assert!(!out.root.join("out/broken.png").exists());
}

#[test]
fn check_lists_inputs_and_routes_without_processing() {
    let out = three_step_test().run(&["check", "pipelines/test.yaml"]).success();
    assert!(out.stdout.contains("inputs:   3 images"), "{}", out.stdout);
    assert!(out.stdout.contains("1. remove-bg     models [local] -> local (only-permitted)"), "{}", out.stdout);
    assert!(out.stdout.contains("3. upscale"), "{}", out.stdout);
    assert!(!out.root.join("out").exists(), "check writes nothing");
}

#[test]
fn no_matching_inputs_is_a_usage_error() {
    let out = Test::new().manifest(THREE_STEPS).run(&["run", "pipelines/test.yaml"]).code(2);
    assert!(out.stderr.contains("no input images match"), "{}", out.stderr);
    assert!(out.stderr.contains("../photos/**/*.{jpg,png}"), "{}", out.stderr);
}

#[test]
fn invalid_manifest_exits_2_before_reading_images() {
    let out = three_step_test()
        .manifest(&THREE_STEPS.replace("factor: 2", "factor: 20"))
        .run(&["run", "pipelines/test.yaml"])
        .code(2);
    assert!(out.stderr.contains("steps[2].factor"), "{}", out.stderr);
    assert!(!out.root.join("out").exists());
}

#[test]
fn flags_override_report_path_and_concurrency() {
    let out = three_step_test()
        .run(&["run", "pipelines/test.yaml", "-q", "--concurrency", "1", "--report", "elsewhere/r.csv"])
        .success();
    let (_, rows) = out.csv("elsewhere/r.csv");
    assert_eq!(rows.len(), 9);
    let usage = three_step_test().run(&["run", "pipelines/test.yaml", "--concurrency", "0"]);
    assert_eq!(usage.code, 2);
}

#[test]
fn jpeg_output_and_summary() {
    let out = three_step_test()
        .manifest(&THREE_STEPS.replace("format: png", "format: jpeg, quality: 80"))
        .run(&["run", "pipelines/test.yaml"])
        .success();
    let img = image::open(out.root.join("out/a/1.jpg")).unwrap();
    assert_eq!((img.width(), img.height()), (240, 180));
    assert!(out.stdout.contains("images: 3 ok, 0 failed of 3"), "{}", out.stdout);
    assert!(out.stdout.contains("step 3 upscale"), "{}", out.stdout);
    assert!(out.stdout.contains("cost:   $0.000000"), "{}", out.stdout);
}
