//! Provenance of outputs: a JSON sidecar next to each output (`output.sidecar: true`) naming the
//! input, the pipeline, the run and every step (op, model, why, prompts, paid, score), and S3 user
//! metadata on S3 outputs, within S3's 2 KB limit.

use crate::harness::{Retouch, Test};
use crate::support::s3_server::S3Server;

#[test]
fn a_sidecar_says_what_each_output_is_made_of() {
    let manifest = r#"
version: 1
name: traced
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png, sidecar: true }
steps:
  - op: remove-bg
    models: [local]
  - op: upscale
    models: [local]
    factor: 2
"#;
    let out = Test::new()
        .manifest(manifest)
        .image("photos/p.png", 120, 90)
        .run(&["run", "pipelines/test.yaml", "-q"])
        .success();
    let (_, rows) = out.csv("out/report.csv");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.root.join("out/p.png.json")).unwrap()).unwrap();
    assert_eq!(json["pipeline"], "traced");
    assert_eq!(json["run_id"], rows[0][0].to_string().as_str());
    assert_eq!(json["input"], "../photos/p.png");
    assert_eq!(json["output"], rows[0][14].to_string().as_str());
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (&steps[0]["op"], &steps[0]["model"], &steps[0]["reason"]),
        (
            &"remove-bg".into(),
            &"local".into(),
            &"only-permitted".into()
        )
    );
    assert_eq!(steps[1]["op"], "upscale");
    assert_eq!(steps[1]["paid_this_run_usd"], "0.000000");
    assert_eq!(steps[1]["qa"], "1.000");
    // The state store keeps the same provenance, by output, with the run that wrote it.
    let store = retouch::ledger::Store::open(&out.root.join("pipelines/.retouch")).unwrap();
    let (run_id, kept) = store
        .provenance(&rows[0][14])
        .unwrap()
        .expect("provenance in the store");
    assert_eq!(run_id, rows[0][0]);
    let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(kept, json);
}

#[test]
fn the_state_store_keeps_provenance_without_a_sidecar() {
    let manifest = r#"
version: 1
name: traced
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: upscale
    models: [local]
    factor: 2
"#;
    let out = Test::new()
        .manifest(manifest)
        .image("photos/p.png", 60, 40)
        .run(&["run", "pipelines/test.yaml", "-q"])
        .success();
    assert!(!out.root.join("out/p.png.json").exists());
    let (_, rows) = out.csv("out/report.csv");
    let store = retouch::ledger::Store::open(&out.root.join("pipelines/.retouch")).unwrap();
    let (_, kept) = store.provenance(&rows[0][14]).unwrap().unwrap();
    let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(kept["input"], "../photos/p.png");
    assert_eq!(kept["steps"][0]["op"], "upscale");
}

#[test]
fn s3_outputs_carry_their_provenance_as_metadata() {
    let server = S3Server::start();
    server.create_bucket("results");
    let manifest = "version: 1\nname: s3trace\ninputs: [\"../photos/*.png\"]\n\
         output: { dir: \"s3://results/done/\", format: png, sidecar: true }\n\
         steps:\n  - op: upscale\n    models: [local]\n    factor: 2\n";
    let test = Test::new().manifest(manifest).image("photos/a.png", 40, 30);
    Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml", "-q"])
        .code(0);
    assert_eq!(
        server.keys("results", ""),
        ["done/a.png", "done/a.png.json", "done/report.csv"]
    );
    let meta = server.metadata("results", "done/a.png");
    assert_eq!(
        meta.get("retouch-pipeline").map(String::as_str),
        Some("s3trace")
    );
    assert_eq!(
        meta.get("retouch-steps").map(String::as_str),
        Some("upscale=local")
    );
    assert_eq!(
        meta.get("retouch-input").map(String::as_str),
        Some("../photos/a.png")
    );
    assert!(meta.contains_key("retouch-run"), "{meta:?}");
    let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(size <= 2048);
    let (json, ct) = server.get("results", "done/a.png.json");
    assert_eq!(ct, "application/json");
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["output"], "s3://results/done/a.png");
}
