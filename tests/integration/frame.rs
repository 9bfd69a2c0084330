//! `frame` end to end: the Amazon preset on the bundled samples gives images that pass the
//! marketplace validator (pixel-exact white ring, fill, size, JPEG), the rows name broken rules,
//! `retouch check --preset` validates folders and reports, and a manifest whose keys would break
//! its preset is refused before any work.

use std::path::Path;

use retouch::marketplace::{self, Preset};

use crate::harness::Test;

const AMAZON: &str = r#"
version: 1
name: amazon
inputs: ["../photos/**/*.{jpg,png}"]
output: { dir: ../out, format: jpeg, quality: 90 }
steps:
  - op: remove-bg
    models: [local]
  - op: frame
    models: [local]
    preset: amazon-main
limits: { concurrency: 4 }
"#;

/// A test folder holding a copy of the bundled samples under `photos/`.
fn with_samples() -> Test {
    let mut t = Test::new().manifest(AMAZON);
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    for dir in std::fs::read_dir(&samples).unwrap() {
        let dir = dir.unwrap().path();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let rel = format!(
                "photos/{}/{}",
                dir.file_name().unwrap().to_str().unwrap(),
                file.file_name().unwrap().to_str().unwrap()
            );
            t = t.file(&rel, &std::fs::read(&file).unwrap());
        }
    }
    t
}

#[test]
fn amazon_frames_of_the_bundled_samples_pass_every_rule() {
    let out = with_samples()
        .run(&["run", "pipelines/test.yaml", "-q"])
        .success();
    let (_, rows) = out.csv("out/report.csv");
    let frames: Vec<_> = rows.iter().filter(|r| &r[3] == "frame").collect();
    assert!(frames.len() >= 10, "{} framed", frames.len());
    let rules = Preset::AmazonMain.rules();
    for r in &frames {
        assert_eq!((&r[4], &r[6]), ("local", "ok"), "{r:?}");
        assert_eq!((&r[12], &r[13]), ("2000", "2000"), "{r:?}");
        // The samples are small: framing enlarges them, which is said, but breaks no rule.
        assert!(
            r[17].split(';').all(|f| f == "enlarged" || f.is_empty()),
            "{r:?}"
        );
        let bytes = std::fs::read(out.root.join(&r[14])).unwrap();
        assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "a JPEG: {}", &r[14]);
        let decoded = retouch::codec::decode(&bytes, 100).unwrap();
        let img = &decoded.image;
        assert_eq!(img.dimensions(), (2000, 2000));
        let m = marketplace::check(img, &rules);
        assert_eq!(m.violations, vec![], "{}", &r[14]);
        assert!(
            m.fill >= 0.85 && m.fill <= 0.92,
            "fill {} of {}",
            m.fill,
            &r[14]
        );
        let file = marketplace::check_file(true, decoded.icc.as_deref(), &rules);
        assert_eq!(file, vec![], "{}", &r[14]);
        // Pixel-exact, checked here independently of the validator: the outer 2% of the frame
        // (twice the rule's ring) is 255,255,255 after JPEG decoding.
        let edge = 40;
        for (x, y, p) in img.enumerate_pixels() {
            if x < edge || y < edge || x >= 2000 - edge || y >= 2000 - edge {
                assert_eq!(p.0, [255, 255, 255, 255], "({x}, {y}) of {}", &r[14]);
            }
        }
    }

    // The validator on the command line agrees, on the report and on the folder.
    let t = crate::harness::Retouch::at(&out.root);
    let ok = t.run(&["check", "--preset", "amazon-main", "out/report.csv"]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout
            .contains(&format!("{0} of {0} images pass", frames.len())),
        "{}",
        ok.stdout
    );
    // The photos as shot break the rules, each named.
    let bad = t.run(&["check", "--preset", "amazon-main", "photos"]);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(bad.stdout.contains("bg-not-pure-white"), "{}", bad.stdout);
    assert!(
        bad.stdout.contains("long-side-below-1600"),
        "{}",
        bad.stdout
    );
    assert!(bad.stdout.contains("0 of"), "{}", bad.stdout);
    // A square tile wants 2048 px: the Amazon frames are named too small.
    let tile = t.run(&["check", "--preset", "square-tile", "out"]);
    assert_eq!(tile.code, 1);
    assert!(
        tile.stdout.contains("long-side-below-2048"),
        "{}",
        tile.stdout
    );
}

#[test]
fn frame_rows_name_the_rules_a_result_breaks() {
    // Asked to fill 100% of a square, the product reaches the frame's edge: the white ring the
    // frame's own rules ask for is gone, and the row says so.
    let manifest = r#"
version: 1
name: tight
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [local]
  - op: frame
    models: [local]
    aspect: "1:1"
    size: 600
    fill: 1.0
"#;
    let out = Test::new()
        .manifest(manifest)
        .image("photos/p.png", 200, 160)
        .run(&["run", "pipelines/test.yaml", "-q"])
        .success();
    let (_, rows) = out.csv("out/report.csv");
    let frame = rows.iter().find(|r| &r[3] == "frame").unwrap();
    assert_eq!((&frame[12], &frame[13]), ("600", "600"));
    assert!(frame[17].contains("bg-not-pure-white"), "{frame:?}");
    let score: f32 = frame[16].parse().unwrap();
    assert!(score <= 0.1, "a broken rule fails the result: {frame:?}");
}

#[test]
fn keys_that_break_the_preset_are_refused_before_any_work() {
    let bad = AMAZON.replace(
        "preset: amazon-main",
        "preset: amazon-main\n    fill: 0.8\n    size: 1200\n    backdrop: keep",
    );
    let out = with_samples()
        .manifest(&bad)
        .run(&["run", "pipelines/test.yaml"])
        .code(2);
    for needle in [
        "steps[1].fill",
        "steps[1].size",
        "steps[1].backdrop",
        "0.85",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert!(!out.root.join("out").exists());

    let unknown = AMAZON.replace("amazon-main", "amazon-mian");
    let out = with_samples()
        .manifest(&unknown)
        .run(&["check", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr.contains("amazon-main"),
        "suggests: {}",
        out.stderr
    );

    let nothing = AMAZON.replace("preset: amazon-main", "fill: 0.9");
    let out = with_samples()
        .manifest(&nothing)
        .run(&["check", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr
            .contains("needs `preset` or explicit aspect and size"),
        "{}",
        out.stderr
    );
    // Another op's parameter is named as such.
    let remote = AMAZON.replace(
        "preset: amazon-main",
        "preset: amazon-main\n    strength: 0.5",
    );
    let out = with_samples()
        .manifest(&remote)
        .run(&["check", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr.contains("only fix-lighting takes it"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_validator_reads_outputs_in_s3_by_prefix_by_key_and_through_a_report() {
    use crate::harness::Retouch;
    use crate::support::s3_server::S3Server;
    let server = S3Server::start();
    server.create_bucket("shop");
    let test = Test::new()
        .manifest(
            &AMAZON
                .replace("dir: ../out", "dir: \"s3://shop/amazon/\"")
                .replace("limits: { concurrency: 4 }", "limits: { concurrency: 2 }"),
        )
        .image("photos/a.png", 400, 300)
        .image("photos/b.jpg", 360, 360);
    let t = Retouch::at(test.root()).s3(&server);
    t.run(&["run", "pipelines/test.yaml", "-q"]).code(0);
    assert_eq!(
        server.keys("shop", "amazon/"),
        ["amazon/a.jpg", "amazon/b.jpg", "amazon/report.csv"]
    );
    // A raw photo beside them breaks the rules.
    let mut raw = std::io::Cursor::new(Vec::new());
    crate::harness::product_photo(300, 200)
        .write_to(&mut raw, image::ImageFormat::Png)
        .unwrap();
    server.put_all(
        "shop",
        vec![("raw/x.png".into(), raw.into_inner())],
        "image/png",
    );

    let prefix = t.run(&["check", "--preset", "amazon-main", "s3://shop/amazon/"]);
    assert_eq!(prefix.code, 0, "{}{}", prefix.stdout, prefix.stderr);
    assert!(
        prefix.stdout.contains("2 of 2 images pass"),
        "{}",
        prefix.stdout
    );
    let report = t.run(&[
        "check",
        "--preset",
        "amazon-main",
        "s3://shop/amazon/report.csv",
    ]);
    assert_eq!(report.code, 0, "{}{}", report.stdout, report.stderr);
    assert!(
        report.stdout.contains("2 of 2 images pass"),
        "{}",
        report.stdout
    );
    // The local copy of the report lists S3 outputs: those are read from S3 too.
    let local = t.run(&[
        "check",
        "--preset",
        "amazon-main",
        "pipelines/.retouch/amazon/report.csv",
    ]);
    assert_eq!(local.code, 0, "{}{}", local.stdout, local.stderr);
    assert!(
        local.stdout.contains("2 of 2 images pass"),
        "{}",
        local.stdout
    );
    let bad = t.run(&[
        "check",
        "--preset",
        "amazon-main",
        "s3://shop/raw/x.png",
        "s3://shop/amazon/a.jpg",
        "s3://shop/amazon/gone.jpg",
    ]);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stdout
            .contains("s3://shop/raw/x.png: bg-not-pure-white"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout.contains("s3://shop/amazon/gone.jpg: unreadable"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout
            .contains("1 of 3 images pass, 1 break a rule, 1 unreadable"),
        "{}",
        bad.stdout
    );
    let empty = t.run(&["check", "--preset", "amazon-main", "s3://shop/nothing/"]);
    assert_eq!(empty.code, 2, "{}{}", empty.stdout, empty.stderr);
    assert!(
        empty.stderr.contains("no images under this prefix"),
        "{}",
        empty.stderr
    );
}
