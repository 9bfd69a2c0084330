//! Runs our local operations over a test set written by the `testset` example, for
//! `bench/quality.sh`. Per case directory it writes:
//! `ours_alpha.png` (estimate_alpha on the degraded photo), `ours_fixed.png` (fix_lighting on
//! the degraded photo), `greyworld.png` (grey-world white balance baseline), `down.png` (the
//! reference downscaled 2x with our resize) and `ours_up.png` (`down.png` upscaled 2x by us).
//!
//! `cargo run --release --example quality -- --dir DIR [--sharpen 0.0]`

use clap::Parser;
use image::RgbaImage;
use rayon::prelude::*;
use retouch::ops::{LightingOptions, ResizeOptions, estimate_alpha, fix_lighting, resize};
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 0.0)]
    sharpen: f32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&args.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.par_iter()
        .try_for_each(|d| run_case(d, args.sharpen))?;
    eprintln!("processed {} cases", dirs.len());
    Ok(())
}

fn run_case(dir: &Path, sharpen: f32) -> anyhow::Result<()> {
    let degraded = image::open(dir.join("degraded.png"))?.to_rgba8();
    let reference = image::open(dir.join("reference.png"))?.to_rgba8();
    let alpha = estimate_alpha(&degraded);
    retouch::testset::mask_to_rgba(&alpha).save(dir.join("ours_alpha.png"))?;
    fix_lighting(&degraded, &LightingOptions { strength: 1.0 }).save(dir.join("ours_fixed.png"))?;
    grey_world(&degraded).save(dir.join("greyworld.png"))?;
    let (w, h) = reference.dimensions();
    let down = resize(&reference, w / 2, h / 2, &ResizeOptions::default())?;
    down.save(dir.join("down.png"))?;
    resize(&down, w, h, &ResizeOptions { sharpen })?.save(dir.join("ours_up.png"))?;
    Ok(())
}

/// Classic grey-world: scale each channel so its mean equals the mean of the three (in sRGB
/// values, as commonly implemented).
fn grey_world(img: &RgbaImage) -> RgbaImage {
    let n = (img.width() * img.height()) as f64;
    let mut sum = [0.0f64; 3];
    for p in img.pixels() {
        for (s, v) in sum.iter_mut().zip(p.0) {
            *s += v as f64;
        }
    }
    let mean = sum.map(|s| s / n);
    let grey = (mean[0] + mean[1] + mean[2]) / 3.0;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for (v, m) in p.0.iter_mut().zip(mean) {
            *v = (*v as f64 * grey / m.max(1.0)).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}
