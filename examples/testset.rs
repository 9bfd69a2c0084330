//! Writes a generated test set: `DIR/<case>/{degraded,reference,mask}.png` and `DIR/manifest.csv`
//! (name, backdrop, cast, exposure). Used by `bench/quality.sh` and `bench/upscale_speed.sh`.
//!
//! `cargo run --release --example testset -- --out DIR --count 60 --seed 7 [--min 400 --max 1000] [--jpeg]`
//! With `--jpeg`, writes only `DIR/<case>.jpg` (the degraded photo, quality 90).

use clap::Parser;
use image::ImageFormat;
use retouch::testset::{cases, mask_to_rgba};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 60)]
    count: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 400)]
    min: u32,
    #[arg(long, default_value_t = 1000)]
    max: u32,
    #[arg(long)]
    jpeg: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let mut manifest = std::fs::File::create(args.out.join("manifest.csv"))?;
    writeln!(
        manifest,
        "name,backdrop,cast_r,cast_g,cast_b,exposure,width,height"
    )?;
    for case in cases(args.seed, args.count, args.min, args.max) {
        let (w, h) = case.image.dimensions();
        let [r, g, b] = case.cast;
        writeln!(
            manifest,
            "{},{},{r:.4},{g:.4},{b:.4},{:.4},{w},{h}",
            case.name,
            case.backdrop.name(),
            case.exposure
        )?;
        if args.jpeg {
            let rgb = image::DynamicImage::ImageRgba8(case.image).to_rgb8();
            let file = std::fs::File::create(args.out.join(format!("{}.jpg", case.name)))?;
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
                .encode_image(&rgb)?;
            continue;
        }
        let dir = args.out.join(&case.name);
        std::fs::create_dir_all(&dir)?;
        case.image
            .save_with_format(dir.join("degraded.png"), ImageFormat::Png)?;
        case.reference
            .save_with_format(dir.join("reference.png"), ImageFormat::Png)?;
        mask_to_rgba(&case.mask).save_with_format(dir.join("mask.png"), ImageFormat::Png)?;
    }
    eprintln!("wrote {} cases to {}", args.count, args.out.display());
    Ok(())
}
