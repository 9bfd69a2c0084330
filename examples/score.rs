//! Scores a processed test set with the crate's metrics (`retouch::testset::metrics`) and prints
//! Markdown tables: remove-bg IoU (ours vs GrabCut) by backdrop, fix-lighting mean CIEDE2000 to
//! the reference (degraded, ours, ImageMagick -auto-level, grey-world), upscale 2x PSNR (ours,
//! ImageMagick Lanczos, vips lanczos3). Missing baseline files are reported as "n/a".
//!
//! `cargo run --release --example score -- --dir DIR`

use clap::Parser;
use image::{GrayImage, RgbaImage};
use rayon::prelude::*;
use retouch::testset::metrics::{ciede2000_mean, iou, psnr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    dir: PathBuf,
}

const COLUMNS: [&str; 10] = [
    "iou_ours",
    "iou_grabcut",
    "de_degraded",
    "de_ours",
    "de_autolevel",
    "de_greyworld",
    "psnr_ours",
    "psnr_im",
    "psnr_vips",
    "psnr_image_rs",
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let manifest = std::fs::read_to_string(args.dir.join("manifest.csv"))?;
    let rows: Vec<(String, String)> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect();
    let scores: Vec<(String, Vec<Option<f64>>)> = rows
        .par_iter()
        .map(|(name, kind)| (kind.clone(), score_case(&args.dir.join(name))))
        .collect();
    print_tables(&scores);
    Ok(())
}

fn rgba(p: &Path) -> Option<RgbaImage> {
    image::open(p).ok().map(|i| i.to_rgba8())
}

fn gray(p: &Path) -> Option<GrayImage> {
    image::open(p).ok().map(|i| i.to_luma8())
}

fn score_case(d: &Path) -> Vec<Option<f64>> {
    let mask = gray(&d.join("mask.png"));
    let reference = rgba(&d.join("reference.png"));
    let iou_of = |f: &str| Some(iou(&gray(&d.join(f))?, mask.as_ref()?));
    let de_of = |f: &str| Some(ciede2000_mean(&rgba(&d.join(f))?, reference.as_ref()?));
    let psnr_of = |f: &str| Some(psnr(&rgba(&d.join(f))?, reference.as_ref()?));
    let image_rs = rgba(&d.join("down.png")).and_then(|down| {
        let r = reference.as_ref()?;
        let up = image::imageops::resize(
            &down,
            r.width(),
            r.height(),
            image::imageops::FilterType::Lanczos3,
        );
        Some(psnr(&up, r))
    });
    vec![
        iou_of("ours_alpha.png"),
        iou_of("grabcut.png"),
        de_of("degraded.png"),
        de_of("ours_fixed.png"),
        de_of("autolevel.png"),
        de_of("greyworld.png"),
        psnr_of("ours_up.png"),
        psnr_of("im_up.png"),
        psnr_of("vips_up.png"),
        image_rs,
    ]
}

fn mean(xs: impl Iterator<Item = Option<f64>>) -> String {
    let v: Vec<f64> = xs.flatten().collect();
    if v.is_empty() {
        "n/a".into()
    } else {
        format!("{:.3}", v.iter().sum::<f64>() / v.len() as f64)
    }
}

fn print_tables(scores: &[(String, Vec<Option<f64>>)]) {
    let mut groups: BTreeMap<&str, Vec<&Vec<Option<f64>>>> = BTreeMap::new();
    for (kind, s) in scores {
        groups.entry(kind.as_str()).or_default().push(s);
        groups.entry("ALL").or_default().push(s);
        if kind != "coloured" {
            groups
                .entry("LIGHT (all but coloured)")
                .or_default()
                .push(s);
        }
    }
    println!("| backdrop | n | {} |", COLUMNS.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(COLUMNS.len()));
    for (kind, rows) in &groups {
        let cells: Vec<String> = (0..COLUMNS.len())
            .map(|c| mean(rows.iter().map(|r| r[c])))
            .collect();
        println!("| {kind} | {} | {} |", rows.len(), cells.join(" | "));
    }
}
