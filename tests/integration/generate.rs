//! `generate` against the Bedrock double: a prompts file (CSV, YAML, JSONL) in `inputs`, one
//! image per row named by its id, made by the cheapest permitted text-to-image service (bare
//! ids, called in us-west-2 from a us-east-1 run: a client per region), then the later steps
//! on the generated image. Request bodies are validated field by field; costs equal what the
//! double billed; a rerun pays nothing and a changed prompt pays for itself only; a filtered
//! prompt writes nothing; bad prompts files and misplaced generate steps are refused before any
//! work, naming file, line and column.

use serde_json::Value;
use tempfile::TempDir;

use crate::harness::Test;
use crate::support::bedrock_double::{BedrockDouble, Filter};
use retouch::catalog::Op;
use retouch::ledger::{Status, StepRecord};
use retouch::money::Usd;
use retouch::reason::Reason;

const CORE: &str = "stability.stable-image-core-v1:1";
const ULTRA: &str = "stability.stable-image-ultra-v1:1";
const SD35: &str = "stability.sd3-5-large-v1:0";

const PROMPTS: &str = "id,prompt,negative_prompt,seed,aspect_ratio
mug-white,\"a white ceramic mug, studio light\",,7,16:9
shoes/red,a red running shoe,\"blurry, text\",,
lamp,a brass desk lamp,,,4:5
";

fn project(steps: &str, sidecar: bool) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/prompts.csv"), PROMPTS).unwrap();
    let manifest = format!(
        r#"version: 1
name: catalogue
inputs: [prompts.csv]
output: {{ dir: ../out, format: png, sidecar: {sidecar} }}
steps:
{steps}
limits: {{ concurrency: 2, rpm: {{ stability-core: 600, stability-ultra: 600, sd3.5-large: 600 }} }}
aws: {{ region: us-east-1 }}
"#
    );
    std::fs::write(dir.path().join("pipelines/test.yaml"), manifest).unwrap();
    dir
}

async fn run(dir: &TempDir, double: &BedrockDouble, run_id: &str) -> Vec<StepRecord> {
    crate::support::retouch::run_with_double(dir.path(), double, run_id).await
}

fn keys(body: &Value) -> Vec<String> {
    let mut k: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn body_for<'a>(bodies: &'a [Value], prompt: &str) -> &'a Value {
    bodies
        .iter()
        .find(|b| b["prompt"] == prompt)
        .unwrap_or_else(|| panic!("no request for {prompt}: {bodies:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_makes_one_image_per_row_in_us_west_2_and_later_steps_apply() {
    let double = BedrockDouble::start().await;
    let dir = project(
        r#"  - op: generate
    models: [stability-ultra, sd3.5-large, stability-core]
    negative_prompt: "watermark"
    fallback: skip
  - op: upscale
    models: [local]
    factor: 1.5"#,
        true,
    );
    let rows = run(&dir, &double, "first").await;
    assert_eq!(rows.len(), 6, "{rows:#?}");
    let core = Usd::from_dollars(0.04).unwrap();
    let generated: Vec<&StepRecord> = rows.iter().filter(|r| r.op == Op::Generate).collect();
    for r in &generated {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.model, CORE, "the cheapest permitted wins");
        assert_eq!(r.reason, Reason::Cheapest);
        assert_eq!(r.cost, core);
        assert_eq!(r.input_size, None, "a prompt has no pixels");
    }
    let by_id = |id: &str| {
        rows.iter()
            .find(|r| r.op == Op::Generate && r.image.ends_with(&format!("#{id}")))
            .unwrap_or_else(|| panic!("no row for {id}: {rows:#?}"))
    };
    assert_eq!(by_id("mug-white").output_size, Some((1344, 768)), "16:9");
    assert_eq!(by_id("lamp").output_size, Some((896, 1088)), "4:5");
    assert_eq!(by_id("shoes/red").output_size, Some((1024, 1024)), "1:1");
    assert_eq!(by_id("lamp").image, "prompts.csv#lamp");
    // Called by bare id in us-west-2, the only region the service is in, from a us-east-1 run.
    assert_eq!(double.regions(CORE), vec!["us-west-2"; 3]);
    assert_eq!(double.requests(ULTRA) + double.requests(SD35), 0);
    // Bodies: only documented fields; the row's seed and ratio, else a derived seed and 1:1;
    // the row's negative prompt, else the step's.
    let bodies = double.bodies(CORE);
    let mug = body_for(&bodies, "a white ceramic mug, studio light");
    assert_eq!(
        keys(mug),
        [
            "aspect_ratio",
            "negative_prompt",
            "output_format",
            "prompt",
            "seed"
        ]
    );
    assert_eq!(mug["seed"], 7);
    assert_eq!(mug["aspect_ratio"], "16:9");
    assert_eq!(mug["negative_prompt"], "watermark");
    let shoe = body_for(&bodies, "a red running shoe");
    assert_eq!(shoe["negative_prompt"], "blurry, text");
    assert_eq!(shoe["aspect_ratio"], "1:1");
    let shoe_seed = shoe["seed"].as_u64().expect("a seed is always sent");
    // Outputs are named by id (subfolders included) and the later step ran on them.
    let out = image::open(dir.path().join("out/mug-white.png")).unwrap();
    assert_eq!((out.width(), out.height()), (2016, 1152));
    assert!(dir.path().join("out/shoes/red.png").is_file());
    // The sidecar says what was asked: prompt, seed, ratio.
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/shoes/red.png.json")).unwrap())
            .unwrap();
    let first = &sidecar["steps"][0];
    assert_eq!(first["op"], "generate");
    assert_eq!(first["prompt"], "a red running shoe");
    assert_eq!(first["seed"], shoe_seed);
    assert_eq!(first["aspect_ratio"], "1:1");
    // Costs equal the billed tally; a rerun pays nothing and calls nothing.
    assert_eq!(double.successes(CORE), 3);
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, core.times(3));
    let again = run(&dir, &double, "again").await;
    assert!(again.iter().all(|r| r.cost == Usd::ZERO), "{again:#?}");
    assert_eq!(double.requests(CORE), 3);
    // A changed prompt pays for itself only; the others stay cached.
    let edited = PROMPTS.replace("a brass desk lamp", "\"a brass desk lamp, green shade\"");
    std::fs::write(dir.path().join("pipelines/prompts.csv"), edited).unwrap();
    let third = run(&dir, &double, "third").await;
    let paid: Vec<_> = third.iter().filter(|r| r.cost > Usd::ZERO).collect();
    assert_eq!(paid.len(), 1, "{third:#?}");
    assert_eq!(paid[0].image, "prompts.csv#lamp");
    assert_eq!(double.successes(CORE), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_prompt_is_skipped_unbilled_and_writes_nothing() {
    let double = BedrockDouble::start().await;
    double.set_filter(CORE, Some(Filter::Output));
    let dir = project(
        r#"  - op: generate
    models: [stability-core]
    fallback: skip
  - op: upscale
    models: [local]
    factor: 2"#,
        false,
    );
    let rows = run(&dir, &double, "first").await;
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert_eq!(r.status, Status::Skipped, "{r:?}");
        assert_eq!(r.cost, Usd::ZERO, "{r:?}");
        assert!(r.output.is_empty(), "{r:?}");
        let want = if r.op == Op::Generate {
            Reason::FallbackContentFiltered
        } else {
            Reason::NothingGenerated
        };
        assert_eq!(r.reason, want, "{r:?}");
    }
    assert!(!dir.path().join("out").join("lamp.png").exists());
    assert_eq!(double.successes(CORE), 0);
}

#[test]
fn the_yaml_and_jsonl_forms_are_read_and_errors_name_file_line_and_column() {
    let steps = "steps:\n  - { op: generate, models: [stability-core], fallback: skip }\n";
    let manifest = |inputs: &str| {
        format!("version: 1\nname: gen\ninputs: [{inputs}]\noutput: {{ dir: ../out }}\n{steps}")
    };
    // YAML and JSONL list the same rows; with no credentials every row is skipped, unbilled.
    let out = Test::new()
        .manifest(&manifest("p.yaml, more.jsonl"))
        .file(
            "pipelines/p.yaml",
            b"- { id: a, prompt: a mug }\n- { id: b, prompt: a cup, aspect_ratio: \"3:2\" }\n",
        )
        .file(
            "pipelines/more.jsonl",
            b"{\"id\": \"c\", \"prompt\": \"a bowl\", \"seed\": 3}\n",
        )
        .run(&["run", "pipelines/test.yaml"])
        .success();
    let (_, rows) = out.csv("out/report.csv");
    let images: Vec<&str> = rows.iter().map(|r| &r[1]).collect();
    assert_eq!(images, ["more.jsonl#c", "p.yaml#a", "p.yaml#b"]);
    assert!(
        rows.iter()
            .all(|r| &r[5] == "fallback-no-credentials" && &r[6] == "skipped"),
        "{rows:?}"
    );
    // A bad cell stops the run before any work, naming file, line and column.
    let out = Test::new()
        .manifest(&manifest("p.csv"))
        .file(
            "pipelines/p.csv",
            b"id,prompt,seed\na,a mug,1\nb,a cup,-4\n",
        )
        .run(&["run", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr.contains("p.csv: line 3, column seed")
            && out.stderr.contains("0\u{2013}4294967294"),
        "{}",
        out.stderr
    );
    assert!(
        !out.root.join("out/report.csv").exists(),
        "no work was done"
    );
    // Duplicate ids across files would overwrite each other's outputs.
    let out = Test::new()
        .manifest(&manifest("p.csv, q.jsonl"))
        .file("pipelines/p.csv", b"id,prompt\na,a mug\n")
        .file(
            "pipelines/q.jsonl",
            b"{\"id\": \"a\", \"prompt\": \"a cup\"}\n",
        )
        .run(&["run", "pipelines/test.yaml"])
        .code(2);
    assert!(
        out.stderr.contains("prompt id `a` is in both"),
        "{}",
        out.stderr
    );
}

#[test]
fn misplaced_generate_steps_and_prompts_files_are_manifest_errors() {
    let check = |yaml: &str, needles: &[&str]| {
        let out = Test::new()
            .manifest(yaml)
            .file("pipelines/p.csv", b"id,prompt\na,a mug\n")
            .image("photos/a.png", 64, 64)
            .run(&["check", "pipelines/test.yaml"])
            .code(2);
        for needle in needles {
            assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
        }
    };
    let head = "version: 1\nname: gen\noutput: { dir: ../out }\n";
    check(
        &format!(
            "{head}inputs: [../photos/*.png]\nsteps:\n  - {{ op: upscale, models: [local], factor: 2 }}\n  - {{ op: generate, models: [stability-core], fallback: skip }}\n"
        ),
        &["steps[1].op", "can only be steps[0]"],
    );
    check(
        &format!(
            "{head}inputs: [p.csv]\nsteps:\n  - {{ op: upscale, models: [local], factor: 2 }}\n"
        ),
        &["inputs[0]", "is a prompts file", "op: generate"],
    );
    check(
        &format!(
            "{head}inputs: [../photos/*.png]\nsteps:\n  - {{ op: generate, models: [stability-core], fallback: skip }}\n"
        ),
        &["inputs[0]", "is not a prompts file"],
    );
    check(
        &format!(
            "{head}inputs: [p.csv]\nsteps:\n  - {{ op: generate, models: [stability-core], prompt: a mug, fallback: skip }}\n"
        ),
        &["takes its prompts from the prompts file", "test.yaml:6:"],
    );
    check(
        &format!("{head}inputs: [p.csv]\nsteps:\n  - {{ op: generate, models: [local] }}\n"),
        &["generate has no local implementation"],
    );
}

#[test]
fn a_prompts_file_in_s3_is_read_like_a_local_one() {
    use crate::harness::Retouch;
    use crate::support::s3_server::S3Server;
    let server = S3Server::start();
    server.create_bucket("briefs");
    let csv = PROMPTS.as_bytes().to_vec();
    server.put_all(
        "briefs",
        vec![("spring/prompts.csv".into(), csv)],
        "text/csv",
    );
    // The binary runs as its own process; the double serves it from a runtime of its own.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(BedrockDouble::start());
    let test = Test::new().manifest(
        "version: 1\nname: s3gen\ninputs: [\"s3://briefs/spring/prompts.csv\"]\n\
         output: { dir: ../out }\nsteps:\n  - { op: generate, models: [stability-core], fallback: skip }\n\
         limits: { rpm: { stability-core: 600 } }\n",
    );
    let out = Retouch::at(test.root()).s3(&server).bedrock(&double).run(&[
        "run",
        "pipelines/test.yaml",
        "-q",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut report = csv::Reader::from_path(test.root().join("out/report.csv")).unwrap();
    let images: Vec<String> = report.records().map(|r| r.unwrap()[1].to_owned()).collect();
    assert_eq!(
        images,
        [
            "s3://briefs/spring/prompts.csv#lamp",
            "s3://briefs/spring/prompts.csv#mug-white",
            "s3://briefs/spring/prompts.csv#shoes/red",
        ]
    );
    assert!(test.root().join("out/shoes/red.png").is_file());
    assert_eq!(double.successes(CORE), 3);
    drop(double);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd35_and_ultra_serve_when_cheaper_generators_are_refused_with_their_own_fields() {
    let steps = r#"  - op: generate
    models: [stability-core, sd3.5-large, stability-ultra]
    fallback: skip"#;
    // Core refused (no model access): SD3.5 Large, next cheapest, with `mode`.
    let double = BedrockDouble::start().await;
    double.deny_access(CORE);
    let dir = project(steps, false);
    let rows = run(&dir, &double, "first").await;
    let sd35 = Usd::from_dollars(0.08).unwrap();
    for r in &rows {
        assert_eq!((r.status, r.model.as_str()), (Status::Ok, SD35), "{r:?}");
        assert_eq!(r.cost, sd35);
    }
    assert!(
        double.requests(CORE) <= 2,
        "the refusal opens Core's circuit"
    );
    let bodies = double.bodies(SD35);
    let body = body_for(&bodies, "a brass desk lamp");
    assert_eq!(
        keys(body),
        ["aspect_ratio", "mode", "output_format", "prompt", "seed"]
    );
    assert_eq!(body["mode"], "text-to-image");
    assert_eq!(
        double
            .regions(SD35)
            .iter()
            .filter(|r| *r != "us-west-2")
            .count(),
        0
    );
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, sd35.times(double.successes(SD35) as u32));
    // Core and SD3.5 refused: Ultra, without `mode`.
    let double = BedrockDouble::start().await;
    double.deny_access(CORE);
    double.deny_access(SD35);
    let dir = project(steps, false);
    let rows = run(&dir, &double, "first").await;
    let ultra = Usd::from_dollars(0.14).unwrap();
    for r in &rows {
        assert_eq!((r.status, r.model.as_str()), (Status::Ok, ULTRA), "{r:?}");
        assert_eq!(r.cost, ultra);
    }
    let bodies = double.bodies(ULTRA);
    let body = body_for(&bodies, "a brass desk lamp");
    assert_eq!(
        keys(body),
        ["aspect_ratio", "output_format", "prompt", "seed"]
    );
    assert_eq!(double.successes(ULTRA), 3);
}

const TITAN: &str = "amazon.titan-image-generator-v2:0";
const NOVA: &str = "amazon.nova-canvas-v1:0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_canvas_and_titan_generate_only_when_a_catalog_file_extends_their_life() {
    let double = BedrockDouble::start().await;
    let long = format!("a walnut desk organiser, {}", "studio light, ".repeat(40));
    let fresh = || {
        let dir = project(
            r#"  - op: generate
    models: [titan-image-v2, nova-canvas, stability-core]
    negative_prompt: "watermark"
    fallback: skip"#,
            false,
        );
        std::fs::write(
            dir.path().join("pipelines/prompts.csv"),
            format!(
                "id,prompt,seed,aspect_ratio\nmug,a white mug,7,16:9\norganiser,\"{long}\",,\n"
            ),
        )
        .unwrap();
        dir
    };
    let dir = fresh();
    // The built-in catalog has both past end of life (the run's day is 2026-11-01): the
    // Stability service makes every image.
    let rows = run(&dir, &double, "built-in").await;
    assert!(
        rows.iter()
            .all(|r| r.model == CORE && r.status == Status::Ok),
        "{rows:#?}"
    );
    assert_eq!(double.requests(TITAN) + double.requests(NOVA), 0);

    // An account whose catalog file extends their life (a new project: the first one's
    // results would be reused, not paid again): Titan ($0.01) is the cheapest; the long prompt
    // is over Titan's 512 characters, so Nova Canvas (1,024) makes that one.
    let dir = fresh();
    std::fs::write(
        dir.path().join("pipelines/extended.yaml"),
        r#"models:
  - alias: titan-image-v2
    lifecycle: { status: legacy, end_of_life: "2027-06-30" }
  - alias: nova-canvas
    lifecycle: { status: legacy, end_of_life: "2027-06-30" }
"#,
    )
    .unwrap();
    let manifest = dir.path().join("pipelines/test.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{yaml}catalog: extended.yaml\n")).unwrap();
    let rows = run(&dir, &double, "extended").await;
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.image.ends_with(&format!("#{id}")))
            .unwrap_or_else(|| panic!("no row for {id}: {rows:#?}"))
    };
    let mug = row("mug");
    assert_eq!(
        (mug.model.as_str(), mug.cost, mug.status),
        (TITAN, Usd::from_dollars(0.01).unwrap(), Status::Ok)
    );
    assert_eq!(
        mug.output_size,
        Some((1152, 640)),
        "Titan's closest to 16:9"
    );
    let organiser = row("organiser");
    assert_eq!(
        (organiser.model.as_str(), organiser.cost, organiser.reason),
        (NOVA, Usd::from_dollars(0.04).unwrap(), Reason::NextCheapest),
        "{organiser:?}"
    );
    assert_eq!(organiser.output_size, Some((1024, 1024)));
    // TEXT_IMAGE bodies, field by field (the double validated them strictly too).
    let titan = double.last_body(TITAN).unwrap();
    assert_eq!(
        keys(&titan),
        ["imageGenerationConfig", "taskType", "textToImageParams"]
    );
    assert_eq!(titan["taskType"], "TEXT_IMAGE");
    assert_eq!(
        titan["textToImageParams"],
        serde_json::json!({ "text": "a white mug", "negativeText": "watermark" })
    );
    assert_eq!(
        titan["imageGenerationConfig"],
        serde_json::json!({ "numberOfImages": 1, "width": 1152, "height": 640, "seed": 7 })
    );
    assert_eq!(
        double.requests(TITAN),
        1,
        "the long prompt was never sent to Titan"
    );
    let nova = double.last_body(NOVA).unwrap();
    assert_eq!(nova["textToImageParams"]["text"], long.trim());
    assert_eq!(nova["imageGenerationConfig"]["width"], 1024);
    let seed = nova["imageGenerationConfig"]["seed"].as_u64().unwrap();
    assert!(seed <= 2_147_483_646, "within Nova's range: {seed}");
    // Billed exactly; a rerun pays nothing.
    assert_eq!((double.successes(TITAN), double.successes(NOVA)), (1, 1));
    let total: Usd = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, Usd::from_dollars(0.05).unwrap());
    let again = run(&dir, &double, "again").await;
    assert!(again.iter().all(|r| r.cost == Usd::ZERO), "{again:#?}");
}
