//! Runs the local remove-bg (what `models: [local]` runs) over a test set written by the
//! `testset` example, for `bench/segmentation.sh`: per case `DIR/<case>/alpha_retouch.png` (the
//! cut-out's alpha, 255 = product) and `DIR/times_retouch.csv` (name, seconds).
//!
//! Images go one at a time, the op using every core it is given (`RAYON_NUM_THREADS`), like the
//! rembg driver beside it (`bench/rembg_run.py`); each time covers decoding the PNG, the op and
//! encoding the alpha, as that one does.
//!
//! `cargo run --release --example remove_bg_dir -- --dir DIR`

use clap::Parser;
use image::{GrayImage, Luma};
use retouch::ops::remove_bg::{RemoveBgOptions, remove_background};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let manifest = std::fs::read_to_string(args.dir.join("manifest.csv"))?;
    let names: Vec<&str> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .filter(|n| !n.is_empty())
        .collect();
    anyhow::ensure!(!names.is_empty(), "no cases in {}", args.dir.display());
    let mut times = std::fs::File::create(args.dir.join("times_retouch.csv"))?;
    writeln!(times, "name,seconds")?;
    for name in &names {
        let start = Instant::now();
        cut_out(&args.dir.join(name))?;
        writeln!(times, "{name},{:.4}", start.elapsed().as_secs_f64())?;
    }
    eprintln!("retouch: {} images", names.len());
    Ok(())
}

fn cut_out(case: &Path) -> anyhow::Result<()> {
    let img = image::open(case.join("degraded.png"))?.to_rgba8();
    let out = remove_background(&img, &RemoveBgOptions::default());
    let alpha = GrayImage::from_fn(out.width(), out.height(), |x, y| {
        Luma([out.get_pixel(x, y).0[3]])
    });
    alpha.save(case.join("alpha_retouch.png"))?;
    Ok(())
}
