//! Writes one generated case and our results for it as PNGs, for eyeballing:
//! `cargo run --example inspect -- --seed 21 --index 10 --min 300 --max 420 --out /tmp/inspect`

use clap::Parser;
use retouch::ops::{
    LightingOptions, RemoveBgOptions, estimate_alpha, fix_lighting, remove_background,
};
use retouch::testset::{make_case, mask_to_rgba, metrics};
use std::path::PathBuf;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    index: usize,
    #[arg(long, default_value_t = 400)]
    min: u32,
    #[arg(long, default_value_t = 1000)]
    max: u32,
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.out)?;
    let case = make_case(a.seed, a.index, a.min, a.max);
    let alpha = estimate_alpha(&case.image);
    let fixed = fix_lighting(&case.image, &LightingOptions { strength: 1.0 });
    println!(
        "{} iou {:.4} dE degraded {:.2} fixed {:.2}",
        case.name,
        metrics::iou(&alpha, &case.mask),
        metrics::ciede2000_mean(&case.image, &case.reference),
        metrics::ciede2000_mean(&fixed, &case.reference)
    );
    case.image.save(a.out.join("degraded.png"))?;
    case.reference.save(a.out.join("reference.png"))?;
    fixed.save(a.out.join("fixed.png"))?;
    mask_to_rgba(&case.mask).save(a.out.join("mask.png"))?;
    mask_to_rgba(&alpha).save(a.out.join("alpha.png"))?;
    let flat = remove_background(
        &case.image,
        &RemoveBgOptions {
            background: Some([40, 160, 60]),
        },
    );
    flat.save(a.out.join("on_green.png"))?;
    Ok(())
}
