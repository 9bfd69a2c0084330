//! Writes the bundled sample photos under `samples/` from the generator (seeded, reproducible):
//! JPEGs in nested folders by product kind, plus one PNG, with cast and exposure errors.
//!
//! `cargo run --release --example make_samples -- --out samples`

use clap::Parser;
use image::codecs::jpeg::JpegEncoder;
use retouch::testset::make_case;
use std::path::PathBuf;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "samples")]
    out: PathBuf,
    #[arg(long, default_value_t = 14)]
    count: usize,
    #[arg(long, default_value_t = 2024)]
    seed: u64,
}

fn folder(kind: &str) -> &'static str {
    match kind {
        "mug" => "kitchen",
        "shoe" => "shoes",
        "bottle" => "bottles",
        _ => "boxes-and-cans",
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (mut made, mut index, mut mugs) = (0, 0, 0);
    while made < args.count {
        let (lo, hi) = if made % 4 == 3 {
            (900, 1400)
        } else {
            (400, 760)
        };
        let case = make_case(args.seed, index, lo, hi);
        index += 1;
        let kind = case.name.split('-').nth(1).unwrap_or("product").to_string();
        if kind == "mug" {
            mugs += 1;
        }
        if kind != "mug" && made + 1 == args.count && mugs == 0 {
            continue; // make sure the set includes a mug with a handle hole
        }
        let dir = args.out.join(folder(&kind));
        std::fs::create_dir_all(&dir)?;
        let stem = format!(
            "{}-{:02}",
            case.name
                .split_once('-')
                .map_or(case.name.as_str(), |x| x.1),
            made
        );
        if made == 0 {
            case.image.save(dir.join(format!("{stem}.png")))?;
        } else {
            let rgb = image::DynamicImage::ImageRgba8(case.image).to_rgb8();
            let file =
                std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{stem}.jpg")))?);
            JpegEncoder::new_with_quality(file, 82).encode_image(&rgb)?;
        }
        made += 1;
    }
    eprintln!("wrote {made} samples to {}", args.out.display());
    Ok(())
}
