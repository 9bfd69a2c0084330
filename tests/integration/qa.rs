//! The `qa` and `qa_flags` columns end to end: broken cut-outs are flagged, clean ones pass, and
//! a rerun's cache hits carry the checks their results got when they were made.

use image::{Rgb, RgbImage};

use crate::harness::Test;

const REMOVE_BG: &str = r#"
version: 1
name: qa
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [local]
  - op: upscale
    models: [local]
    factor: 2
"#;

fn save(t: Test, rel: &str, img: &RgbImage) -> Test {
    let path = t.root().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
    t
}

#[test]
fn an_empty_cut_out_is_flagged_a_clean_one_passes_and_reruns_keep_the_checks() {
    // Nothing but backdrop: remove-bg keeps nothing.
    let blank = RgbImage::from_pixel(160, 120, Rgb([236, 236, 236]));
    // Dozens of dark dots scattered over the backdrop: a cut-out in many pieces.
    let confetti = RgbImage::from_fn(160, 120, |x, y| {
        if x % 20 < 5 && y % 20 < 5 && x > 8 && y > 8 && x < 150 && y < 110 {
            Rgb([30, 30, 30])
        } else {
            Rgb([236, 236, 236])
        }
    });
    let t = Test::new()
        .manifest(REMOVE_BG)
        .image("photos/good.png", 160, 120);
    let t = save(t, "photos/blank.png", &blank);
    let t = save(t, "photos/confetti.png", &confetti);
    let out = t.run(&["run", "pipelines/test.yaml", "-q"]).success();
    let (_, rows) = out.csv("out/report.csv");
    let qa = |image: &str, step: &str| {
        let r = rows
            .iter()
            .find(|r| r[1].ends_with(image) && &r[2] == step)
            .unwrap_or_else(|| panic!("no row for {image} step {step}"));
        (r[16].to_string(), r[17].to_string())
    };
    assert_eq!(qa("blank.png", "1"), ("0.100".into(), "empty".into()));
    assert_eq!(qa("confetti.png", "1").1, "fragmented");
    assert_eq!(qa("good.png", "1"), ("1.000".into(), String::new()));
    assert_eq!(
        qa("good.png", "2"),
        ("1.000".into(), String::new()),
        "right size"
    );

    // The rerun reuses every step; each row keeps what its result's checks found.
    let ran = crate::harness::Retouch::at(&out.root).run(&[
        "run",
        "pipelines/test.yaml",
        "-q",
        "--report",
        "again.csv",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let mut rdr = csv::Reader::from_path(out.root.join("again.csv")).unwrap();
    let again: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    for r in &again {
        assert_eq!(&r[5], "cache-hit", "{r:?}");
        let first = rows.iter().find(|f| f[1] == r[1] && f[2] == r[2]).unwrap();
        assert_eq!((&r[16], &r[17]), (&first[16], &first[17]), "{r:?}");
    }
}
