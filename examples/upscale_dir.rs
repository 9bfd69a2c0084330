//! Upscales every image in a directory like the engine would: decode → resize → encode PNG,
//! rayon-parallel over files. Prints images/s and the summed pure-resize kernel time, for
//! `bench/upscale_speed.sh`. PNGs use image-rs's default `CompressionType::Fast` (fdeflate) with
//! adaptive filtering: zlib-level PNG compression would dominate the run time.
//!
//! `cargo run --release --example upscale_dir -- --input DIR --output DIR [--factor 2] [--sharpen 0]`

use clap::Parser;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use rayon::prelude::*;
use retouch::ops::{ResizeOptions, resize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 2)]
    factor: u32,
    #[arg(long, default_value_t = 0.0)]
    sharpen: f32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.output)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.input)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    files.sort();
    let kernel_ns = AtomicU64::new(0);
    let start = Instant::now();
    files
        .par_iter()
        .try_for_each(|f| one(f, &args, &kernel_ns))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "files={} wall_s={secs:.3} images_per_s={:.2} resize_kernel_cpu_s={:.3}",
        files.len(),
        files.len() as f64 / secs,
        kernel_ns.load(Ordering::Relaxed) as f64 / 1e9
    );
    Ok(())
}

fn one(path: &Path, args: &Args, kernel_ns: &AtomicU64) -> anyhow::Result<()> {
    let img = image::open(path)?.to_rgba8();
    let t = Instant::now();
    let out = resize(
        &img,
        img.width() * args.factor,
        img.height() * args.factor,
        &ResizeOptions {
            sharpen: args.sharpen,
        },
    )?;
    kernel_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let name = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string()
        + ".png";
    let file = std::io::BufWriter::new(std::fs::File::create(args.output.join(name))?);
    let encoder = PngEncoder::new_with_quality(file, CompressionType::Fast, FilterType::Adaptive);
    // Opaque inputs are written as RGB (smaller, faster), like the peers do.
    if out.pixels().all(|p| p.0[3] == 255) {
        image::DynamicImage::ImageRgba8(out)
            .to_rgb8()
            .write_with_encoder(encoder)?;
    } else {
        out.write_with_encoder(encoder)?;
    }
    Ok(())
}
