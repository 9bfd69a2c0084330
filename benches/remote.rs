//! Remote throughput: 2,000 images through one remote step against the Bedrock double (50 ms
//! latency, 6,000 rpm), checking that the scheduler keeps the rate limit busy without ever
//! passing it.
//!
//!     cargo bench --bench remote
//!
//! The double runs in a child process (this same executable with `--serve-double`), so the
//! scheduler's CPU time and peak memory are measured alone. Reports wall time against the ideal
//! (`images / rpm` minutes), the double's largest 60 s and 1 s windows, CPU time per image and
//! peak RSS, and exits 1 when a criterion fails: wall time within 5% of ideal, no window over
//! the limit, every image served. `RETOUCH_BENCH_IMAGES` changes the image count.

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use retouch::ledger::{Status, StepRecord};
use retouch::providers::BedrockClient;
use retouch::run::{Connection, Run, RunOptions, Unobserved};
use support::bedrock_double::{self, BedrockDouble};

const MODEL: &str = "stability.stable-image-remove-background-v1:0";
const RPM: u32 = 6_000;
const LATENCY: Duration = Duration::from_millis(50);
const CONCURRENCY: usize = 32;

fn main() {
    if std::env::args().any(|a| a == "--serve-double") {
        serve_double();
        return;
    }
    let images: usize = std::env::var("RETOUCH_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().expect("temp dir");
    write_project(dir.path(), images);
    let mut double = DoubleProcess::spawn();

    let cpu_before = process_cpu();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (rows, wall) = runtime.block_on(run(dir.path(), &double.endpoint));
    let cpu = process_cpu() - cpu_before;
    let stats = double.stats();

    let ok = rows
        .iter()
        .filter(|r| r.status == Status::Ok && r.model == MODEL)
        .count();
    let ideal = Duration::from_secs_f64(images as f64 * 60.0 / f64::from(RPM));
    let over = wall.as_secs_f64() / ideal.as_secs_f64() - 1.0;
    let burst_bound = RPM as usize / 60 + 1;
    println!(
        "remote throughput: {images} images, 1 remote step, {LATENCY:?} latency, {RPM} rpm, concurrency {CONCURRENCY}"
    );
    println!(
        "  wall time          {:.2} s (ideal {:.2} s, {:+.2}%)",
        wall.as_secs_f64(),
        ideal.as_secs_f64(),
        over * 100.0
    );
    println!(
        "  served remotely    {ok} of {images}; double saw {} requests, {} throttled",
        stats.requests, stats.throttled
    );
    println!(
        "  busiest 60 s       {} requests (limit {RPM})",
        stats.max_60s
    );
    println!(
        "  busiest 1 s        {} requests (bound {burst_bound})",
        stats.max_1s
    );
    println!(
        "  scheduler CPU      {:.3} ms per image ({:.2} s total; the double used {:.2} s)",
        cpu.as_secs_f64() * 1e3 / images as f64,
        cpu.as_secs_f64(),
        stats.cpu_s
    );
    println!("  peak RSS           {} MiB", peak_rss_kib() / 1024);

    let mut failures = Vec::new();
    if over > 0.05 {
        failures.push("wall time more than 5% over ideal");
    }
    if stats.max_60s > RPM as usize || stats.throttled > 0 {
        failures.push("a 60 s window passed the rpm");
    }
    if stats.max_1s > burst_bound {
        failures.push("a 1 s window passed rpm/60 + 1");
    }
    if ok != images {
        failures.push("not every image was served remotely");
    }
    if !failures.is_empty() {
        eprintln!("FAILED: {}", failures.join("; "));
        std::process::exit(1);
    }
}

/// `pipelines/bench.yaml` and `images` identical 64×64 PNGs under `photos/`.
fn write_project(root: &Path, images: usize) {
    let manifest = format!(
        "version: 1\nname: bench-remote\ninputs: [\"../photos/*.png\"]\n\
         output: {{ dir: ../out, format: png }}\n\
         steps:\n  - op: remove-bg\n    models: [stability-remove-bg]\n\
         limits: {{ concurrency: {CONCURRENCY}, rpm: {{ stability-remove-bg: {RPM} }} }}\n"
    );
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("photos")).unwrap();
    std::fs::write(root.join("pipelines/bench.yaml"), manifest).unwrap();
    let photo = image::RgbImage::from_fn(64, 64, |x, y| {
        if (16..48).contains(&x) && (16..48).contains(&y) {
            image::Rgb([180, 40, 40])
        } else {
            image::Rgb([236, 236, 232])
        }
    });
    let mut png = std::io::Cursor::new(Vec::new());
    photo.write_to(&mut png, image::ImageFormat::Png).unwrap();
    for i in 0..images {
        std::fs::write(root.join(format!("photos/{i:05}.png")), png.get_ref()).unwrap();
    }
}

async fn run(root: &Path, endpoint: &str) -> (Vec<StepRecord>, Duration) {
    let options = RunOptions {
        stateless: true,
        run_id: Some("bench".into()),
        connection: Connection::Client {
            client: BedrockClient::from_conf(bedrock_double::sdk_config(endpoint)),
            region: "us-east-1".into(),
        },
        ..RunOptions::default()
    };
    let run = Run::prepare(&root.join("pipelines/bench.yaml"), options)
        .await
        .expect("valid manifest and inputs");
    let started = Instant::now();
    let outcome = run
        .execute(Arc::new(Unobserved), CancellationToken::new())
        .await
        .expect("run completes");
    (outcome.rows, started.elapsed())
}

/// The double in a child process: this executable with `--serve-double`.
struct DoubleProcess {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    endpoint: String,
}

struct DoubleStats {
    requests: usize,
    throttled: usize,
    max_60s: usize,
    max_1s: usize,
    cpu_s: f64,
}

impl DoubleProcess {
    fn spawn() -> DoubleProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--serve-double")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the double");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let endpoint = lines.next().expect("endpoint line").unwrap();
        DoubleProcess {
            child,
            stdin,
            lines,
            endpoint,
        }
    }

    /// Asks the double for its counters; it exits after answering.
    fn stats(&mut self) -> DoubleStats {
        writeln!(self.stdin, "stats").unwrap();
        let line = self.lines.next().expect("stats line").unwrap();
        let v: Vec<f64> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let _ = self.child.wait();
        DoubleStats {
            requests: v[0] as usize,
            throttled: v[1] as usize,
            max_60s: v[2] as usize,
            max_1s: v[3] as usize,
            cpu_s: v[4],
        }
    }
}

/// Child side: serve until asked for stats on stdin, print them on one line, exit.
fn serve_double() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let double = BedrockDouble::start().await;
        double.set_latency(MODEL, LATENCY);
        double.set_rpm(MODEL, RPM);
        println!("{}", double.endpoint());
        let mut line = String::new();
        tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        let requests = double.requests(MODEL);
        let throttled = requests - double.successes(MODEL) as usize;
        let arrivals = double.arrivals(MODEL);
        println!(
            "{requests} {throttled} {} {} {}",
            most_in_window(&arrivals, Duration::from_secs(60)),
            most_in_window(&arrivals, Duration::from_secs(1)),
            process_cpu().as_secs_f64()
        );
    });
}

/// The most arrivals in any closed window `[t, t + window]` (arrivals are in order).
fn most_in_window(stamps: &[Instant], window: Duration) -> usize {
    let mut end = 0;
    let mut most = 0;
    for (start, &t) in stamps.iter().enumerate() {
        while end < stamps.len() && stamps[end].duration_since(t) <= window {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

/// User plus system CPU time of this process so far (`/proc/self/stat`, 100 ticks a second).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// Peak resident set size in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
