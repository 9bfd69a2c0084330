//! One rpm shared by 8 shards through DynamoDB: 8 `retouch run --shard i/8` processes (each
//! with a state folder of its own, as on 8 machines) against one model limited to 600 requests a
//! minute, with the Bedrock double (200 ms per call), the S3 test server and moto's DynamoDB on
//! 127.0.0.1.
//!
//!     bash .ci/fetch-moto.sh && cargo build --release && cargo bench --bench coordination
//!
//! Reports the largest number of requests the double saw in any 60 s window (must not pass 600),
//! the rate sustained over the run's middle 60 s (must be at least 90% of it, 540), the calls'
//! total, and DynamoDB requests per paid call as counted at the server. Exits 1 when a criterion
//! fails. `RETOUCH_BENCH_IMAGES` changes the image count (default 1,000: about 100 s).

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::bedrock_double::BedrockDouble;
use support::dynamodb::Dynamo;
use support::retouch::Retouch;
use support::s3_server::S3Server;

const MODEL: &str = "stability.stable-image-remove-background-v1:0";
const RPM: usize = 600;
const SHARDS: u32 = 8;

fn main() {
    let images: usize = std::env::var("RETOUCH_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let s3 = S3Server::start();
    s3.create_bucket("team-cache");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(BedrockDouble::start());
    double.set_latency(MODEL, Duration::from_millis(200));
    let dynamo = Dynamo::start();
    rt.block_on(dynamo.create_table("bench"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_catalogue(root, images);

    let rt = Retouch::at(root).bedrock(&double).s3(&s3).dynamodb(&dynamo);
    let started = Instant::now();
    let children: Vec<_> = (0..SHARDS)
        .map(|i| command(&rt, i).spawn().expect("start retouch"))
        .collect();
    let mut failed = false;
    for c in children {
        let out = c.wait_with_output().unwrap();
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            failed = true;
        }
    }
    let wall = started.elapsed();
    let arrivals = double.arrivals(MODEL);
    let most_60 = double.max_in_window(MODEL, Duration::from_secs(60));
    let sustained = middle_minute(&arrivals);
    let counts = dynamo.counts();
    let writes: u64 = ["PutItem", "UpdateItem", "DeleteItem"]
        .iter()
        .map(|op| counts.get(*op).copied().unwrap_or(0))
        .sum();
    let reads = counts.get("GetItem").copied().unwrap_or(0);
    let calls = double.successes(MODEL) as usize;
    println!("{SHARDS} shards, {images} images, one model at rpm {RPM}");
    println!("  wall time            {:.1} s", wall.as_secs_f64());
    println!("  calls billed         {calls}");
    println!("  most in any 60 s     {most_60} (limit {RPM})");
    println!(
        "  middle 60 s          {sustained} ({:.1}% of {RPM})",
        sustained as f64 * 100.0 / RPM as f64
    );
    println!(
        "  DynamoDB per call    {:.2} writes, {:.2} reads ({counts:?})",
        writes as f64 / calls.max(1) as f64,
        reads as f64 / calls.max(1) as f64
    );
    let ok = !failed && calls == images && most_60 <= RPM && sustained * 10 >= RPM * 9;
    if !ok {
        eprintln!("FAILED: every image once, at most {RPM} in 60 s, at least 90% sustained");
        std::process::exit(1);
    }
}

/// `n` photos of different sizes and the manifest.
fn write_catalogue(root: &Path, n: usize) {
    std::fs::create_dir_all(root.join("photos")).unwrap();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    for i in 0..n {
        let (w, h) = (48 + (i % 40) as u32, 48 + (i / 40) as u32);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            if x > w / 4 && x < 3 * w / 4 && y > h / 4 && y < 3 * h / 4 {
                image::Rgb([200, 40, 40])
            } else {
                image::Rgb([245, 245, 245])
            }
        });
        img.save(root.join(format!("photos/{i:04}.png"))).unwrap();
    }
    let manifest = format!(
        r#"version: 1
name: bench
inputs: ["../photos/*.png"]
output: {{ dir: ../out, format: png }}
steps:
  - op: remove-bg
    models: [stability-remove-bg]
    fallback: fail
shared: {{ cache: "s3://team-cache/bench/", dynamodb_table: bench }}
budget: {{ max_usd: 1000 }}
limits: {{ concurrency: 8, rpm: {{ stability-remove-bg: {RPM} }} }}
aws: {{ region: us-east-1 }}
"#
    );
    std::fs::write(root.join("pipelines/bench.yaml"), manifest).unwrap();
}

/// Shard `i` as `retouch run --shard i/8`, with a state folder of its own, pointed at the
/// doubles by the tests' own harness.
fn command(rt: &Retouch, i: u32) -> Command {
    let (shard, state) = (format!("{i}/{SHARDS}"), format!("machines/{i}"));
    let mut cmd = rt.command(
        env!("CARGO_BIN_EXE_retouch"),
        &[
            "run",
            "pipelines/bench.yaml",
            "-q",
            "--shard",
            &shard,
            "--run-group",
            "bench",
            "--state",
            &state,
        ],
    );
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// Arrivals in the 60 s centred on the run (the start-up and the tail left out).
fn middle_minute(t: &[Instant]) -> usize {
    let (Some(first), Some(last)) = (t.first(), t.last()) else {
        return 0;
    };
    let span = last.duration_since(*first);
    let Some(lead) = span.checked_sub(Duration::from_secs(60)) else {
        return t.len(); // shorter than a minute: everything
    };
    let from = *first + lead / 2;
    let to = from + Duration::from_secs(60);
    t.iter().filter(|x| **x >= from && **x < to).count()
}
