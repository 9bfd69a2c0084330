//! S3 throughput: 2,000 small objects from the in-process S3 test server through a cheap local
//! step (upscale x2), S3 → local, measuring objects/s and the binary's peak RSS, and showing that
//! downloads overlap processing: the S3 run takes well under (download-only time +
//! processing-only time), each measured separately at the same concurrency.
//!
//! Every GET waits `RETOUCH_BENCH_S3_LATENCY_MS` (default 25 ms) before the server answers, as a
//! round trip to a real bucket does; without it the test server answers loopback requests in
//! microseconds and downloading is pure CPU on the same cores as processing.
//!
//! Then runs the S3 job once more over the same state: all cached, and no object downloaded
//! (each is known by its listed ETag or last-modified time and size).
//!
//! Run: `cargo bench --bench s3`. Figures go to BENCHMARKS.md by hand.

#[path = "../tests/integration/support/s3_server.rs"]
#[allow(dead_code)]
mod s3_server;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use s3_server::S3Server;

const OBJECTS: usize = 2000;
const CONCURRENCY: usize = 8;
/// Inputs read ahead (`limits.downloads`); download-only uses as many GETs in flight.
const DOWNLOADS: usize = 16;
const SIDE: u32 = 160;

fn main() {
    let latency = Duration::from_millis(
        std::env::var("RETOUCH_BENCH_S3_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(25),
    );
    let server = S3Server::start();
    server.create_bucket("bench");
    // Every object distinct, so the step cache cannot turn repeats into hits.
    let objects: Vec<(String, Vec<u8>)> = (0..OBJECTS)
        .map(|i| (format!("cat/{:02}/img-{i:05}.png", i % 20), png(SIDE, i)))
        .collect();
    let bytes_total: usize = objects.iter().map(|(_, b)| b.len()).sum();
    server.put_all("bench", objects.clone(), "image/png");
    let work = tempfile::tempdir().unwrap();
    for (key, bytes) in &objects {
        let path = work.path().join("local").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    // Seeding ran at full speed; from here every GET takes a round trip like a real bucket's.
    server.set_get_latency(latency);
    let (download, download_cpu) = cpu_during(|| download_only(&server));
    let local = run(
        &server,
        work.path(),
        "\"../local/cat/**/*.png\"",
        "out-local",
    );
    let children_before = cpu_seconds(libc::RUSAGE_CHILDREN);
    let (s3, server_cpu) =
        cpu_during(|| run(&server, work.path(), "\"s3://bench/cat/\"", "out-s3"));
    let retouch_cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - children_before;
    // The same run again over the same state: every step is cached and every output current,
    // and every object is known by its listed version, so nothing is downloaded.
    let gets_before = server.object_gets();
    let rerun = run(&server, work.path(), "\"s3://bench/cat/\"", "out-s3");
    let per_s = |d: Duration| OBJECTS as f64 / d.as_secs_f64();
    println!(
        "{OBJECTS} objects of {SIDE}x{SIDE} PNG ({} KiB in all), concurrency {CONCURRENCY}, downloads {DOWNLOADS}, {} ms per GET",
        bytes_total / 1024,
        latency.as_millis()
    );
    println!(
        "download only (GetObject, {DOWNLOADS} in flight):    {:.2} s ({:.0} objects/s)",
        download.as_secs_f64(),
        per_s(download)
    );
    println!(
        "processing only (local -> local run):        {:.2} s ({:.0} objects/s), peak RSS {} MiB",
        local.0.as_secs_f64(),
        per_s(local.0),
        local.1 / 1024
    );
    println!(
        "S3 -> local run:                             {:.2} s ({:.0} objects/s), peak RSS {} MiB",
        s3.0.as_secs_f64(),
        per_s(s3.0),
        s3.1 / 1024
    );
    println!(
        "CPU seconds: download only {download_cpu:.2} (test server + client); \
         S3 run: retouch {retouch_cpu:.2}, test server {server_cpu:.2}"
    );
    println!(
        "S3 -> local rerun, all cached:               {:.2} s ({:.0} objects/s), peak RSS {} MiB, {} GetObject",
        rerun.0.as_secs_f64(),
        per_s(rerun.0),
        rerun.1 / 1024,
        server.object_gets() - gets_before
    );
    let serial = download + local.0;
    println!(
        "overlap: S3 run {:.2} s vs download + processing {:.2} s ({:.0}% of the serial sum)",
        s3.0.as_secs_f64(),
        serial.as_secs_f64(),
        100.0 * s3.0.as_secs_f64() / serial.as_secs_f64()
    );
}

fn png(side: u32, seed: usize) -> Vec<u8> {
    let (a, b) = ((seed % 251) as u32, (seed / 251) as u32);
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([(x * 3 + a) as u8, (y * 3 + b) as u8, ((x + y) * 2) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Every object fetched through retouch's S3 client, `DOWNLOADS` at a time, nothing else.
fn download_only(server: &S3Server) -> Duration {
    // A runtime of its own, as the binary has: not the one serving the requests.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let settings = retouch::s3_client::S3Settings {
            endpoint_url: Some(server.endpoint.clone()),
            path_style: true,
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let s3 = retouch::s3_client::S3::connect_with_credentials(
            &settings,
            s3_server::ACCESS_KEY,
            s3_server::SECRET_KEY,
        )
        .await;
        let keys = s3.list("bench", "cat/").await.unwrap();
        let started = Instant::now();
        let permits = Arc::new(tokio::sync::Semaphore::new(DOWNLOADS));
        let mut tasks = tokio::task::JoinSet::new();
        for key in keys {
            let (s3, permits) = (s3.clone(), permits.clone());
            tasks.spawn(async move {
                let _p = permits.acquire_owned().await.unwrap();
                s3.get("bench", &key).await.unwrap().len()
            });
        }
        let n = tasks.join_all().await.len();
        assert_eq!(n, OBJECTS);
        started.elapsed()
    })
}

/// Runs the binary over `inputs` writing to `out`; returns wall time and peak RSS (KiB).
fn run(server: &S3Server, root: &Path, inputs: &str, out: &str) -> (Duration, u64) {
    let manifest = format!(
        "version: 1\nname: bench\ninputs: [{inputs}]\noutput: {{ dir: ../{out} }}\n\
         steps:\n  - op: upscale\n    models: [local]\n    factor: 2\n\
         limits: {{ concurrency: {CONCURRENCY}, downloads: {DOWNLOADS} }}\n"
    );
    let path = root.join("pipelines/bench.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, manifest).unwrap();
    let started = Instant::now();
    // RETOUCH_BENCH_BIN runs another build (an older commit's, to compare) on the same setup.
    let bin = std::env::var("RETOUCH_BENCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_retouch").into());
    let mut child = Command::new(bin)
        .args(["run", "pipelines/bench.yaml", "-q", "--state"])
        .arg(format!(".state-{out}"))
        .current_dir(root)
        .envs(server.env())
        .env("AWS_CONFIG_FILE", root.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", root.join("none"))
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "bench run failed");
            break;
        }
        if let Some(kib) = vm_hwm(&status_file) {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (started.elapsed(), peak_kib)
}

/// Runs `f`, returning its result and this process's CPU seconds (user + system) meanwhile.
fn cpu_during<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let before = cpu_seconds(libc::RUSAGE_SELF);
    let out = f();
    (out, cpu_seconds(libc::RUSAGE_SELF) - before)
}

/// User + system CPU seconds of this process (`RUSAGE_SELF`) or its waited-for children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// `VmHWM` (peak resident set) from /proc/<pid>/status.
fn vm_hwm(status_file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status_file).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
