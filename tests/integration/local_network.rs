//! Local segmentation networks end to end: `retouch models install` (from a file and from a URL,
//! checksums enforced), what a run does with a network installed, with none, and with a damaged
//! one. Tests marked `real-weights` run the real U²-Net small network (`.ci/fetch-weights.sh`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use crate::harness::Test;
#[cfg(feature = "real-weights")]
use crate::harness::report as report_rows;

const U2NETP_BYTES: usize = 4_574_861;

fn remove_bg_manifest(local_model: &str) -> String {
    format!(
        r#"
version: 1
name: net
inputs: ["../photos/*.png"]
output: {{ dir: ../out, format: png }}
steps:
  - op: remove-bg
    models: [local]
{local_model}
limits: {{ concurrency: 2 }}
"#
    )
}

fn models_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Serves `body` to every GET on 127.0.0.1 (one thread, `Connection: close`), for `requests`
/// requests; returns the URL.
fn serve(body: Vec<u8>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}/u2netp.onnx")
}

#[test]
fn without_a_network_remove_bg_runs_the_classical_method_and_says_so_once() {
    let t = Test::new()
        .manifest(&remove_bg_manifest(""))
        .image("photos/a.png", 120, 90)
        .image("photos/b.png", 100, 100)
        .image("photos/c.png", 90, 80);
    let out = t.run(&["run", "pipelines/test.yaml"]).success();
    let notes = out
        .stderr
        .matches("runs locally with the classical method")
        .count();
    assert_eq!(notes, 1, "said once per run: {}", out.stderr);
    assert!(out.stderr.contains("retouch models install u2netp"));
    let (_, rows) = out.csv("out/report.csv");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|r| &r[4] == "local" && &r[6] == "ok"),
        "{rows:?}"
    );
}

#[test]
fn classical_on_request_says_nothing() {
    let t = Test::new()
        .manifest(&remove_bg_manifest("    local_model: classical"))
        .image("photos/a.png", 120, 90);
    let out = t.run(&["run", "pipelines/test.yaml"]).success();
    assert!(!out.stderr.contains("classical method"), "{}", out.stderr);
    let (_, rows) = out.csv("out/report.csv");
    assert_eq!(&rows[0][4], "local");
}

#[test]
fn a_named_network_that_is_not_installed_stops_the_run_before_any_work() {
    let t = Test::new()
        .manifest(&remove_bg_manifest("    local_model: u2netp"))
        .image("photos/a.png", 120, 90);
    let out = t.run(&["run", "pipelines/test.yaml"]).code(2);
    assert!(
        out.stderr
            .contains("u2netp is not installed; install it with `retouch models install u2netp`"),
        "{}",
        out.stderr
    );
    assert!(!out.root.join("out").exists(), "nothing was written");
    assert!(!out.root.join("pipelines/.retouch").exists(), "no state");
}

#[test]
fn an_unknown_network_name_is_a_manifest_error_listing_the_valid_ones() {
    let t = Test::new()
        .manifest(&remove_bg_manifest("    local_model: u2netx"))
        .image("photos/a.png", 120, 90);
    let out = t.run(&["check", "pipelines/test.yaml"]).code(2);
    assert!(
        out.stderr.contains("test.yaml:9") && out.stderr.contains("steps[0].local_model"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("u2netp"),
        "suggests the near name: {}",
        out.stderr
    );
}

/// Runs `manifest` on one photo with a damaged u2netp installed: the right size (so it counts as
/// installed), the wrong bytes.
fn run_with_a_damaged_network(manifest: &str) -> (Test, crate::harness::Ran) {
    let t = Test::new()
        .manifest(manifest)
        .image("photos/a.png", 120, 90);
    let models = t.root().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("u2netp.onnx"), vec![7u8; U2NETP_BYTES]).unwrap();
    let ran = t
        .retouch()
        .models(&models)
        .run(&["run", "pipelines/test.yaml"]);
    (t, ran)
}

#[test]
fn a_damaged_installed_network_stops_the_run_and_says_how_to_reinstall() {
    let (t, ran) = run_with_a_damaged_network(&remove_bg_manifest(""));
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("SHA-256") && ran.stderr.contains("309c8469"),
        "{}",
        ran.stderr
    );
    assert!(!t.root().join("out").exists());
}

/// A remote-only step only borrows the installed network for a second opinion: a damaged one
/// is a note, not a stopped run.
#[test]
fn a_damaged_network_only_used_for_second_opinions_is_a_note() {
    let (_, ran) = run_with_a_damaged_network(
        r#"
version: 1
name: net
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [stability-remove-bg]
    fallback: skip
"#,
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("could not be loaded") && ran.stderr.contains("no second opinion"),
        "{}",
        ran.stderr
    );
}

#[test]
fn install_refuses_bytes_that_are_not_the_network_and_writes_nothing() {
    let t = Test::new();
    let models = t.root().join("models");
    // Right size, wrong content: only the checksum can tell.
    let fake = t.root().join("fake.onnx");
    std::fs::write(&fake, vec![0u8; U2NETP_BYTES]).unwrap();
    let ran = t.retouch().models(&models).run(&[
        "models",
        "install",
        "u2netp",
        "--from",
        fake.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("SHA-256"), "{}", ran.stderr);
    assert!(models_in(&models).is_empty(), "{:?}", models_in(&models));

    // The same bytes over HTTP.
    let url = serve(vec![0u8; U2NETP_BYTES], 1);
    let ran = t
        .retouch()
        .models(&models)
        .run(&["models", "install", "u2netp", "--from", &url]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("SHA-256"), "{}", ran.stderr);
    assert!(models_in(&models).is_empty(), "{:?}", models_in(&models));

    // A body longer than the network is cut off, not buffered whole.
    let url = serve(vec![0u8; U2NETP_BYTES + 10], 1);
    let ran = t
        .retouch()
        .models(&models)
        .run(&["models", "install", "u2netp", "--from", &url]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("larger than"), "{}", ran.stderr);
    assert!(models_in(&models).is_empty());

    let ran = t
        .retouch()
        .models(&models)
        .run(&["models", "install", "u2netq"]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains("known: u2net, u2netp"),
        "{}",
        ran.stderr
    );
}

#[test]
fn models_lists_the_local_networks_and_whether_each_is_installed() {
    let t = Test::new();
    let ran = t.retouch().run(&["models", "--op", "remove-bg"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let line = |name: &str| {
        ran.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line: {}", ran.stdout))
            .to_owned()
    };
    assert!(line("u2netp").contains("4.6 MB") && line("u2netp").contains(" no "));
    assert!(line("u2net").contains("176.0 MB"));
    assert!(ran.stdout.contains("none installed"), "{}", ran.stdout);
}

#[cfg(feature = "real-weights")]
mod real {
    use super::*;
    use image::GrayImage;
    use retouch::testset::{Backdrop, hard_cases, metrics::iou};

    /// The real u2netp file (`.ci/fetch-weights.sh`, or `RETOUCH_TEST_U2NETP`).
    pub(super) fn u2netp() -> std::path::PathBuf {
        let path = std::env::var_os("RETOUCH_TEST_U2NETP")
            .map(Into::into)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-weights/u2netp.onnx")
            });
        assert!(
            path.is_file(),
            "{} is missing: run `bash .ci/fetch-weights.sh` (or set RETOUCH_TEST_U2NETP)",
            path.display()
        );
        path
    }

    fn alpha(path: &Path) -> GrayImage {
        let img = image::open(path).unwrap().to_rgba8();
        GrayImage::from_fn(img.width(), img.height(), |x, y| {
            image::Luma([img.get_pixel(x, y).0[3]])
        })
    }

    #[test]
    fn installed_from_a_file_or_a_url_a_run_uses_the_network_and_it_beats_the_classical_method() {
        let weights = u2netp();
        // Textured backdrops: where the classical method is weakest.
        let cases: Vec<_> = hard_cases(11, 24, 320, 400)
            .filter(|c| matches!(c.backdrop, Backdrop::Wood | Backdrop::Fabric) && !c.low_contrast)
            .take(3)
            .collect();
        assert_eq!(cases.len(), 3, "the hard set has textured cases");
        let t = Test::new().manifest(&remove_bg_manifest(""));
        std::fs::create_dir_all(t.root().join("photos")).unwrap();
        for c in &cases {
            c.image
                .save(t.root().join(format!("photos/{}.png", c.name)))
                .unwrap();
        }
        let models = t.root().join("models");

        let ran = t.retouch().models(&models).run(&[
            "models",
            "install",
            "u2netp",
            "--from",
            weights.to_str().unwrap(),
        ]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        assert_eq!(models_in(&models), ["u2netp.onnx"]);
        // Again over HTTP (the default path downloads the same way), replacing it whole.
        let url = serve(std::fs::read(&weights).unwrap(), 1);
        let ran = t
            .retouch()
            .models(&models)
            .run(&["models", "install", "u2netp", "--from", &url]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        assert_eq!(
            models_in(&models),
            ["u2netp.onnx"],
            "no temporary file left"
        );
        assert_eq!(
            std::fs::read(models.join("u2netp.onnx")).unwrap(),
            std::fs::read(&weights).unwrap()
        );
        let listed = t.retouch().models(&models).run(&["models"]);
        assert!(
            listed
                .stdout
                .lines()
                .any(|l| l.starts_with("u2netp ") && l.contains(" yes ")),
            "{}",
            listed.stdout
        );

        let check = t
            .retouch()
            .models(&models)
            .run(&["check", "pipelines/test.yaml"]);
        assert_eq!(check.code, 0, "{}", check.stderr);
        assert!(
            check.stdout.contains("-> local:u2netp"),
            "check names the network: {}",
            check.stdout
        );
        let run = |models: &Path, report: &str| {
            let ran =
                t.retouch()
                    .models(models)
                    .run(&["run", "pipelines/test.yaml", "--report", report]);
            assert_eq!(ran.code, 0, "{}", ran.stderr);
            let rows = report_rows(&t.root().join(report));
            let ious: Vec<f64> = cases
                .iter()
                .map(|c| {
                    iou(
                        &alpha(&t.root().join(format!("out/{}.png", c.name))),
                        &c.mask,
                    )
                })
                .collect();
            (ran, rows, ious)
        };
        let (ran, rows, net) = run(&models, "net.csv");
        assert!(!ran.stderr.contains("classical method"), "{}", ran.stderr);
        assert!(
            rows.iter().all(|r| r[1] == "local:u2netp" && r[3] == "ok"),
            "{rows:?}"
        );
        // A rerun reuses the network's results (its cache key names the network).
        let (_, rows, _) = run(&models, "again.csv");
        assert!(
            rows.iter()
                .all(|r| r[1] == "local:u2netp" && r[2] == "cache-hit"),
            "{rows:?}"
        );
        // The same images with no network installed: the classical method, a new cache key.
        let (ran, rows, classical) = run(&t.root().join("none"), "classical.csv");
        assert!(ran.stderr.contains("classical method"), "{}", ran.stderr);
        assert!(
            rows.iter()
                .all(|r| r[1] == "local" && r[2] == "only-permitted"),
            "{rows:?}"
        );
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            mean(&net) >= 0.85 && mean(&net) > mean(&classical) + 0.2,
            "network {net:?} vs classical {classical:?}"
        );
    }
}

/// With a network installed, a remote cut-out is held against the network's own: the double's
/// remove-bg answers cropped through the product are flagged `disagrees` (scoring below 0.8, so
/// `escalate:` and the report's worst-first list see them); its whole cut-outs are not; and with
/// no network installed nothing gives that second opinion.
#[cfg(feature = "real-weights")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_cut_out_is_held_against_the_installed_network() {
    use crate::harness::{Retouch, product_photo};
    use crate::support::bedrock_double::BedrockDouble;
    use retouch::qa::Flag;

    const STAB_BG: &str = "stability.stable-image-remove-background-v1:0";
    let project = || {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["pipelines", "photos"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(
            dir.path().join("pipelines/test.yaml"),
            r#"version: 1
name: reviewed
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [stability-remove-bg]
limits: { concurrency: 2 }
"#,
        )
        .unwrap();
        for (i, (w, h)) in [(300, 260), (280, 300)].into_iter().enumerate() {
            product_photo(w, h)
                .save(dir.path().join(format!("photos/shot-{i}.png")))
                .unwrap();
        }
        dir
    };
    let models = tempfile::tempdir().unwrap();
    let ran = Test::new().retouch().models(models.path()).run(&[
        "models",
        "install",
        "u2netp",
        "--from",
        real::u2netp().to_str().unwrap(),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let run = |crop: bool, models: std::path::PathBuf| async move {
        let double = BedrockDouble::start().await;
        if crop {
            double.crop_cut_outs(STAB_BG);
        }
        let dir = project();
        let options = retouch::run::RunOptions {
            today: Some(retouch::catalog::Date::new(2026, 11, 1).unwrap()),
            ..retouch::run::RunOptions::default()
        };
        let rows = Retouch::at(dir.path())
            .bedrock(&double)
            .models(&models)
            .execute("pipelines/test.yaml", options)
            .await
            .rows;
        assert_eq!(double.successes(STAB_BG), 2, "both photos were sent");
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.model == STAB_BG), "{rows:?}");
        rows.into_iter()
            .map(|r| r.qa.expect("measured"))
            .collect::<Vec<_>>()
    };
    let whole = run(false, models.path().to_owned()).await;
    assert!(
        whole.iter().all(|qa| !qa.flags.contains(&Flag::Disagrees)),
        "{whole:?}"
    );
    let cropped = run(true, models.path().to_owned()).await;
    assert!(
        cropped
            .iter()
            .all(|qa| qa.flags.contains(&Flag::Disagrees) && qa.score() < 0.8),
        "{cropped:?}"
    );
    let unreviewed = run(true, models.path().join("none")).await;
    assert!(
        unreviewed
            .iter()
            .all(|qa| !qa.flags.contains(&Flag::Disagrees)),
        "{unreviewed:?}"
    );
}

/// The ONNX Runtime engine (feature `onnxruntime`, library named by `RETOUCH_ONNXRUNTIME`, which
/// `.ci/fetch-onnxruntime.sh` fetches from PyPI): same maps as tract, used by a run.
#[cfg(all(feature = "real-weights", feature = "onnxruntime"))]
mod onnxruntime {
    use super::*;
    use retouch::onnx_engine::VAR as ONNXRUNTIME_VAR;
    use retouch::ops::saliency::SaliencyNet;
    use retouch::testset::hard_cases;

    #[test]
    fn onnx_runtime_gives_tract_s_maps_and_runs_the_pipeline() {
        assert!(
            std::env::var_os(ONNXRUNTIME_VAR).is_some(),
            "set {ONNXRUNTIME_VAR} to libonnxruntime (bash .ci/fetch-onnxruntime.sh prints it)"
        );
        let weights = std::fs::read(super::real::u2netp()).unwrap();
        let input =
            retouch::providers::local::net_input(retouch::catalog::local_model("u2netp").unwrap());
        let ort = retouch::onnx_engine::load(&weights, input).unwrap();
        let tract = SaliencyNet::with_tract(&weights, input).unwrap();
        assert_eq!((ort.engine(), tract.engine()), ("onnxruntime", "tract"));
        for case in hard_cases(3, 2, 240, 300) {
            let (a, b) = (
                ort.assess(&case.image).unwrap(),
                tract.assess(&case.image).unwrap(),
            );
            let diff: f64 = a
                .map
                .pixels()
                .zip(b.map.pixels())
                .map(|(p, q)| f64::from(p[0].abs_diff(q[0])))
                .sum::<f64>()
                / f64::from(a.map.width() * a.map.height());
            assert!(
                diff < 1.0,
                "{}: mean map difference {diff:.3} levels",
                case.name
            );
            let d = (a.confidence.confident - b.confidence.confident).abs();
            assert!(d < 0.01, "{}: confidence differs by {d}", case.name);
        }

        // A run with the network installed says which engine it uses and cuts out as usual.
        let t = Test::new()
            .manifest(&remove_bg_manifest("    local_model: u2netp"))
            .image("photos/a.png", 240, 200);
        let models = t.root().join("models");
        let ran = t.retouch().models(&models).run(&[
            "models",
            "install",
            "u2netp",
            "--from",
            super::real::u2netp().to_str().unwrap(),
        ]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        let listed = t.retouch().models(&models).run(&["models"]);
        assert!(
            listed.stdout.contains("networks run on onnxruntime"),
            "{}",
            listed.stdout
        );
        let ran = t
            .retouch()
            .models(&models)
            .run(&["run", "pipelines/test.yaml", "-q"]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        let report = std::fs::read_to_string(t.root().join("out/report.csv")).unwrap();
        assert!(report.contains("local:u2netp"), "{report}");
    }
}
