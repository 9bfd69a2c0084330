//! Rerun of an unchanged catalogue: 5,000 distinct local JPEGs through a remote remove-bg step
//! (the Bedrock double) and a local 2× upscale, run once to fill the cache, then run again.
//!
//!     cargo bench --bench rerun
//!
//! The release binary runs as a child process, pointed at the double (in this process) through
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`. Reports both wall times, images/s of the rerun and the
//! calls the double saw on each run, and exits 1 unless the rerun made zero calls, reused every
//! step and reached 1,000 images/s. `RETOUCH_BENCH_IMAGES` changes the image count.

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::bedrock_double::BedrockDouble;

const MODEL: &str = "stability.stable-image-remove-background-v1:0";
const SIDE: u32 = 256;

fn main() {
    let images: usize = std::env::var("RETOUCH_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write_project(root, images);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let double = BedrockDouble::start().await;
        double.set_rpm(MODEL, 60_000);
        let first = timed_run(root, &double).await;
        let first_calls = double.successes(MODEL);
        let again = timed_run(root, &double).await;
        let rerun_calls = double.successes(MODEL) - first_calls;
        let rows = report_reasons(&root.join("out/report.csv"));
        let hits = rows.iter().filter(|r| *r == "cache-hit").count();
        let rate = images as f64 / again.as_secs_f64();
        println!(
            "rerun: {images} distinct {SIDE}x{SIDE} JPEGs, remove-bg (remote, double) + upscale 2x (local), {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "  first run   {:8.2} s  {:7.0} images/s  {first_calls} calls",
            first.as_secs_f64(),
            images as f64 / first.as_secs_f64()
        );
        println!(
            "  rerun       {:8.2} s  {:7.0} images/s  {rerun_calls} calls, {hits} of {} rows cache-hit",
            again.as_secs_f64(),
            rate,
            rows.len()
        );
        let mut failures = Vec::new();
        if first_calls != images as u64 {
            failures.push("the first run did not call the model once per image");
        }
        if rerun_calls != 0 {
            failures.push("the rerun called a model");
        }
        if hits != rows.len() || rows.len() != 2 * images {
            failures.push("the rerun did not reuse every step");
        }
        if rate < 1_000.0 {
            failures.push("the rerun was slower than 1,000 images/s");
        }
        if !failures.is_empty() {
            eprintln!("FAILED: {}", failures.join("; "));
            std::process::exit(1);
        }
    });
}

async fn timed_run(root: &Path, double: &BedrockDouble) -> Duration {
    let started = Instant::now();
    let out = support::retouch::Retouch::at(root)
        .bedrock(double)
        .run_async(&["run", "pipelines/bench.yaml", "-q"])
        .await;
    let elapsed = started.elapsed();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    elapsed
}

/// `pipelines/bench.yaml` and `images` distinct JPEGs under `photos/`.
fn write_project(root: &Path, images: usize) {
    let manifest = r#"version: 1
name: bench-rerun
inputs: ["../photos/*.jpg"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [stability-remove-bg]
  - op: upscale
    models: [local]
    factor: 2
limits: { concurrency: 32, rpm: { stability-remove-bg: 60000 } }
"#;
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("photos")).unwrap();
    std::fs::write(root.join("pipelines/bench.yaml"), manifest).unwrap();
    for i in 0..images {
        // A product box whose position and colour depend on `i`: every file is distinct.
        let (ox, oy) = (40 + (i % 97) as u32, 40 + (i / 97 % 89) as u32);
        let shade = (i % 200) as u8;
        let photo = image::RgbImage::from_fn(SIDE, SIDE, |x, y| {
            if (ox..ox + 120).contains(&x) && (oy..oy + 120).contains(&y) {
                image::Rgb([180, 40 + shade / 4, shade])
            } else {
                image::Rgb([236, 236, 232])
            }
        });
        photo
            .save(root.join(format!("photos/{i:05}.jpg")))
            .expect("write photo");
    }
}

/// The reason column of every row.
fn report_reasons(path: &Path) -> Vec<String> {
    let mut rdr = csv::Reader::from_path(path).expect("report exists");
    rdr.records().map(|r| r.unwrap()[5].to_string()).collect()
}
