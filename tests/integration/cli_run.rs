//! `retouch run` and `retouch check` end to end through the binary.

use crate::harness::Test;

const HEADER: &str = "run_id,image,step,op,model,reason,status,cost_usd,latency_ms,attempts,in_w,in_h,out_w,out_h,output,error,qa,qa_flags";

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
    let out = three_step_test()
        .run(&["run", "pipelines/test.yaml", "-q"])
        .success();
    let (header, rows) = out.csv("out/report.csv");
    assert_eq!(header.join(","), HEADER);
    assert_eq!(rows.len(), 3 * 3, "images x steps rows");
    // Rows come in input order, then step order.
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r[1].to_string(), r[2].to_string()))
        .collect();
    assert_eq!(keys[0], ("../photos/a/1.jpg".into(), "1".into()));
    assert_eq!(keys[2], ("../photos/a/1.jpg".into(), "3".into()));
    assert_eq!(keys[8], ("../photos/c.png".into(), "3".into()));
    let run_ids: std::collections::HashSet<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(run_ids.len(), 1);
    for r in &rows {
        assert_eq!(
            (&r[4], &r[5], &r[6]),
            ("local", "only-permitted", "ok"),
            "{r:?}"
        );
        assert_eq!(&r[7], "0.000000");
        assert_eq!(&r[9], "1");
        // Every result is checked: a clean product on a plain backdrop passes every check.
        assert_eq!((&r[16], &r[17]), ("1.000", ""), "{r:?}");
    }
    // Outputs mirror the input tree (a/1 and b/1 do not collide), PNG, 2x, with alpha.
    for (rel, w, h) in [
        ("out/a/1.png", 240, 180),
        ("out/b/1.png", 200, 200),
        ("out/c.png", 128, 160),
    ] {
        let img = image::open(out.root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!((img.width(), img.height()), (w, h), "{rel}");
        assert!(img.color().has_alpha(), "{rel} keeps transparency");
    }
    let upscale_row = &rows[2];
    assert_eq!(
        (
            &upscale_row[10],
            &upscale_row[11],
            &upscale_row[12],
            &upscale_row[13]
        ),
        ("120", "90", "240", "180")
    );
    assert!(
        upscale_row[14].ends_with("out/a/1.png"),
        "{:?}",
        &upscale_row[14]
    );
}

#[test]
fn one_corrupt_file_fails_alone_with_exit_code_1() {
    let mut jpg = std::fs::read(
        three_step_test()
            .image("x.jpg", 50, 50)
            .root()
            .join("x.jpg"),
    )
    .unwrap();
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
    let expect =
        |img: &'static str, reason: &'static str| (0..3).map(move |_| (img, "failed", reason));
    let expected: Vec<_> = expect("../photos/broken.jpg", "truncated")
        .chain(expect("../photos/empty.png", "empty-file"))
        .chain(expect("../photos/text.jpg", "not-an-image"))
        .collect();
    assert_eq!(failed, expected);
    assert!(
        rows.iter()
            .filter(|r| &r[6] == "failed")
            .all(|r| !r[15].is_empty()),
        "failed rows carry an error"
    );
    for rel in ["out/a/1.png", "out/b/1.png", "out/c.png"] {
        assert!(out.root.join(rel).exists(), "{rel} still written");
    }
    assert!(!out.root.join("out/broken.png").exists());
}

#[test]
fn check_lists_inputs_and_routes_without_processing() {
    let out = three_step_test()
        .run(&["check", "pipelines/test.yaml"])
        .success();
    assert!(out.stdout.contains("inputs:   3 images"), "{}", out.stdout);
    for expected in [
        "1. remove-bg     models [local], fallback local",
        "-> local                         3 images (only-permitted)",
        "3. upscale",
        "estimated cost: $0.000000 to $0.000000",
        "expected duration: no remote calls",
    ] {
        assert!(out.stdout.contains(expected), "{expected}\n{}", out.stdout);
    }
    assert!(!out.root.join("out").exists(), "check writes nothing");
}

#[test]
fn no_matching_inputs_is_a_usage_error() {
    let out = Test::new()
        .manifest(THREE_STEPS)
        .run(&["run", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr.contains("no input images match"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("../photos/**/*.{jpg,png}"),
        "{}",
        out.stderr
    );
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

/// Every command reads the manifest through the same guard: a nesting bomb (which took the
/// catalog lookup's YAML parse two minutes) is refused at once, and a huge integer is a range
/// error next to the file's other problems.
#[test]
fn hostile_manifests_are_refused_with_a_position() {
    let bomb = format!("steps: {}", "[".repeat(200_000));
    let out = Test::new()
        .manifest(&bomb)
        .run(&["check", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr.contains(
            "error: the manifest is nested more than 32 levels deep\n  --> pipelines/test.yaml:1:39\n"
        ),
        "{}",
        out.stderr
    );
    let huge = THREE_STEPS.replace(
        "limits: { concurrency: 4 }",
        "limits: { concurrency: 99999999999999999999999 }\nbudget: { max_usd: .nan }",
    );
    let out = three_step_test()
        .manifest(&huge)
        .run(&["run", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr.contains(
            "limits.concurrency is 99999999999999999999999, but must be between 1 and 1024"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("`.nan` in budget.max_usd is not a finite number"),
        "{}",
        out.stderr
    );
    assert!(!out.root.join("out").exists());
}

#[test]
fn flags_override_report_path_and_concurrency() {
    let out = three_step_test()
        .run(&[
            "run",
            "pipelines/test.yaml",
            "-q",
            "--concurrency",
            "1",
            "--report",
            "elsewhere/r.csv",
        ])
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
    assert!(
        out.stdout.contains("images: 3 ok, 0 failed of 3"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("step 3 upscale"), "{}", out.stdout);
    assert!(out.stdout.contains("cost:   $0.000000"), "{}", out.stdout);
}

#[test]
fn odd_colour_types_and_orientation_all_work() {
    use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgba};
    let dir = tempfile::tempdir().unwrap();
    let save = |name: &str, img: DynamicImage| {
        let path = dir.path().join(name);
        img.save(&path).unwrap();
        std::fs::read(path).unwrap()
    };
    let grey16 = save(
        "g16.png",
        DynamicImage::ImageLuma16(ImageBuffer::from_fn(60, 40, |x, _| Luma([x as u16 * 1000]))),
    );
    let grey_alpha = save(
        "ga.png",
        DynamicImage::ImageLumaA8(ImageBuffer::from_fn(60, 40, |x, _| {
            LumaA([200, x as u8 * 4])
        })),
    );
    let rgba16 = save(
        "rgba16.png",
        DynamicImage::ImageRgba16(ImageBuffer::from_pixel(
            50,
            30,
            Rgba([60_000, 100, 100, 65_535]),
        )),
    );
    let mut cmyk = Vec::new();
    jpeg_encoder::Encoder::new(&mut cmyk, 90)
        .encode(
            &[0u8, 200, 200, 0].repeat(48 * 32),
            48,
            32,
            jpeg_encoder::ColorType::Cmyk,
        )
        .unwrap();
    let out = Test::new()
        .manifest(THREE_STEPS)
        .file("photos/g16.png", &grey16)
        .file("photos/ga.png", &grey_alpha)
        .file("photos/rgba16.png", &rgba16)
        .file("photos/cmyk.jpg", &cmyk)
        .file("photos/palette.png", include_bytes!("fixtures/palette.png"))
        .file(
            "photos/rotated.jpg",
            include_bytes!("fixtures/rotated-6.jpg"),
        )
        .run(&["run", "pipelines/test.yaml", "-q"])
        .success();
    let (_, rows) = out.csv("out/report.csv");
    assert_eq!(rows.len(), 6 * 3);
    assert!(rows.iter().all(|r| &r[6] == "ok"), "{rows:?}");
    // The rotated JPEG is stored 32x16 with orientation 6: upright it is 16x32, then 2x.
    let rotated = image::open(out.root.join("out/rotated.png")).unwrap();
    assert_eq!((rotated.width(), rotated.height()), (32, 64));
    let cmyk_out = image::open(out.root.join("out/cmyk.png")).unwrap();
    assert_eq!((cmyk_out.width(), cmyk_out.height()), (96, 64));
}

#[test]
fn ctrl_c_stops_new_images_and_leaves_a_valid_report() {
    let mut t = Test::new().manifest(&THREE_STEPS.replace("concurrency: 4", "concurrency: 1"));
    for i in 0..400 {
        t = t.image(&format!("photos/p{i:03}.jpg"), 160, 120);
    }
    let root = t.root().to_owned();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_retouch"))
        .args(["run", "pipelines/test.yaml", "-q"])
        .current_dir(&root)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some images are done, then interrupt.
    let report = root.join("out/report.csv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&report)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 10
    {
        assert!(
            std::time::Instant::now() < deadline,
            "run never produced rows"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rdr = csv::Reader::from_path(&report).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert!(
        rows.len() >= 9 && rows.len() < 400 * 3,
        "{} rows",
        rows.len()
    );
    assert_eq!(rows.len() % 3, 0, "whole images only");
    assert!(rows.iter().all(|r| &r[6] == "ok"));
    // Every image with rows has a complete output; no temporary files are left behind.
    for entry in std::fs::read_dir(root.join("out")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "left {name}");
    }
    for r in rows.iter().step_by(3) {
        let written = std::path::Path::new(&r[14]);
        let path = if written.is_absolute() {
            written.to_owned()
        } else {
            root.join(written)
        };
        image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let out = three_step_test()
        .run(&["run", "pipelines/test.yaml"])
        .success();
    assert!(
        !out.stderr.contains("images  "),
        "progress drawn into a pipe: {}",
        out.stderr
    );
    assert!(!out.stderr.contains('\u{1b}'), "escape codes in a pipe");
}

#[test]
fn runs_are_recorded_for_runs_and_report() {
    let out = three_step_test()
        .run(&["run", "pipelines/test.yaml", "-q"])
        .success();
    let (_, rows) = out.csv("out/report.csv");
    let run_id = rows[0][0].to_string();
    let runs = out
        .then()
        .run(&["runs", "--state", "pipelines/.retouch"])
        .success();
    assert!(runs.stdout.contains(&run_id), "{}", runs.stdout);
    assert!(
        runs.stdout.contains("pipelines/test.yaml"),
        "{}",
        runs.stdout
    );
    let report = runs
        .then()
        .run(&["report", &run_id, "--state", "pipelines/.retouch", "--json"])
        .success();
    let v: serde_json::Value = serde_json::from_str(&report.stdout).expect(&report.stdout);
    assert_eq!(v["run_id"], run_id.as_str());
    assert_eq!(v["images"], 3);
    assert_eq!(v["images_by_status"]["ok"], 3);
    // From the project root, without --state: the one `*/.retouch` is found.
    let runs = report.then().run(&["runs"]).success();
    assert!(runs.stdout.contains(&run_id), "{}", runs.stdout);
    let report = runs.then().run(&["report", &run_id, "--json"]).success();
    assert!(report.stdout.contains(&run_id), "{}", report.stdout);
}

#[test]
fn every_example_pipeline_passes_check_offline() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(repo.join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        // Run from the repository (the examples name ../samples), with no AWS anything.
        let out =
            crate::support::retouch::Retouch::at(repo).run(&["check", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}:\n{}", path.display(), out.stderr);
        assert!(out.stdout.contains("estimated cost"), "{}", out.stdout);
        checked += 1;
    }
    assert!(
        checked >= 5,
        "the examples: demo, catalog, amazon, lifestyle, generation"
    );
}
