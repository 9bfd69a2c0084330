//! Writes a generated test set: `DIR/<case>/{degraded,reference,mask}.png` and `DIR/manifest.csv`
//! (name, backdrop, cast, exposure, sizes). Used by `bench/quality.sh`, `bench/upscale_speed.sh`
//! and, with `--hard`, `bench/segmentation.sh`.
//!
//! `cargo run --release --example testset -- --out DIR --count 60 --seed 7 [--min 400 --max 1000] [--jpeg] [--hard]`
//! With `--jpeg`, writes only `DIR/<case>.jpg` (the degraded photo, quality 90).
//! With `--hard`, writes the hard set (`retouch::testset::hard_cases`: textured backdrops,
//! low-contrast products, thin parts, holes, gamma and JPEG-like noise); its manifest adds
//! `gamma, jpeg_quality, low_contrast, thin_parts, holes` before the sizes.

use clap::Parser;
use image::ImageFormat;
use retouch::testset::{Case, cases, hard_cases, mask_to_rgba};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// The hard set instead of the classic one.
    #[arg(long)]
    hard: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let mut manifest = std::fs::File::create(args.out.join("manifest.csv"))?;
    let extra = if args.hard {
        "gamma,jpeg_quality,low_contrast,thin_parts,holes,"
    } else {
        ""
    };
    writeln!(
        manifest,
        "name,backdrop,cast_r,cast_g,cast_b,exposure,{extra}width,height"
    )?;
    let stream: Box<dyn Iterator<Item = Case>> = if args.hard {
        Box::new(hard_cases(args.seed, args.count, args.min, args.max))
    } else {
        Box::new(cases(args.seed, args.count, args.min, args.max))
    };
    for case in stream {
        writeln!(manifest, "{}", manifest_row(&case, args.hard))?;
        write_case(case, &args.out, args.jpeg)?;
    }
    eprintln!("wrote {} cases to {}", args.count, args.out.display());
    Ok(())
}

fn manifest_row(case: &Case, hard: bool) -> String {
    let (w, h) = case.image.dimensions();
    let [r, g, b] = case.cast;
    let mut row = format!(
        "{},{},{r:.4},{g:.4},{b:.4},{:.4},",
        case.name,
        case.backdrop.name(),
        case.exposure
    );
    if hard {
        let flag = |f: bool| u8::from(f);
        row += &format!(
            "{:.4},{},{},{},{},",
            case.gamma,
            case.jpeg_quality.map_or(0, u32::from),
            flag(case.low_contrast),
            flag(case.thin_parts),
            flag(case.holes)
        );
    }
    row + &format!("{w},{h}")
}

fn write_case(case: Case, out: &Path, jpeg: bool) -> anyhow::Result<()> {
    if jpeg {
        let rgb = image::DynamicImage::ImageRgba8(case.image).to_rgb8();
        let file = std::fs::File::create(out.join(format!("{}.jpg", case.name)))?;
        image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
            .encode_image(&rgb)?;
        return Ok(());
    }
    let dir = out.join(&case.name);
    std::fs::create_dir_all(&dir)?;
    case.image
        .save_with_format(dir.join("degraded.png"), ImageFormat::Png)?;
    case.reference
        .save_with_format(dir.join("reference.png"), ImageFormat::Png)?;
    mask_to_rgba(&case.mask).save_with_format(dir.join("mask.png"), ImageFormat::Png)?;
    Ok(())
}
