//! Scores cut-outs of several tools against a test set's true masks with the crate's IoU
//! (`retouch::testset::metrics::iou`, both mattes thresholded at 128), for
//! `bench/segmentation.sh`. Per tool it reads `DIR/<case>/alpha_<tool>.png` (the alpha channel if
//! the PNG has one, else its grey level) and `DIR/times_<tool>.csv` (name, seconds), and prints a
//! Markdown table per backdrop kind — mean IoU, worst IoU, seconds per image for each tool — then
//! rows for the hard set's traits (low contrast, thin parts, holes) and all cases, and each
//! tool's worst cases. Writes every case's figures to `DIR/scores.csv`.
//!
//! A missing or unreadable matte or timing is an error: a benchmark with holes in it would
//! report a mean over fewer images without saying so.
//!
//! `cargo run --release --example score_mattes -- --dir DIR --tools retouch,u2netp,u2net`

use anyhow::{Context, bail};
use clap::Parser;
use image::GrayImage;
use rayon::prelude::*;
use retouch::testset::metrics::iou;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    dir: PathBuf,
    /// Tools to compare, in column order.
    #[arg(long, value_delimiter = ',', default_value = "retouch")]
    tools: Vec<String>,
    /// How many of each tool's worst cases to list.
    #[arg(long, default_value_t = 5)]
    worst: usize,
}

/// One case of the manifest and each tool's IoU and seconds, in `--tools` order.
struct Row {
    name: String,
    kind: String,
    traits: Vec<&'static str>,
    iou: Vec<f64>,
    secs: Vec<f64>,
}

/// Manifest columns that, when 1, put a case in an extra group as well as its kind's.
const TRAITS: [(&str, &str); 3] = [
    ("low_contrast", "low-contrast product"),
    ("thin_parts", "thin parts"),
    ("holes", "holes"),
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = read_manifest(&args.dir)?;
    for tool in &args.tools {
        let times = read_times(&args.dir.join(format!("times_{tool}.csv")))?;
        let scores: Vec<anyhow::Result<f64>> = rows
            .par_iter()
            .map(|r| score(&args.dir.join(&r.name), tool))
            .collect();
        for (row, s) in rows.iter_mut().zip(scores) {
            row.iou.push(s?);
            let t = times.get(&row.name);
            row.secs
                .push(*t.with_context(|| format!("{tool}: no time for {}", row.name))?);
        }
    }
    print_table(&rows, &args.tools);
    print_worst(&rows, &args.tools, args.worst);
    write_scores(&args.dir.join("scores.csv"), &rows, &args.tools)
}

fn read_manifest(dir: &Path) -> anyhow::Result<Vec<Row>> {
    let path = dir.join("manifest.csv");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(name), Some(kind)) = (col("name"), col("backdrop")) else {
        bail!("{}: needs name and backdrop columns", path.display());
    };
    let traits: Vec<(usize, &'static str)> = TRAITS
        .iter()
        .filter_map(|&(c, label)| Some((col(c)?, label)))
        .collect();
    let rows: Vec<Row> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Row {
                name: f.get(name).unwrap_or(&"").to_string(),
                kind: f.get(kind).unwrap_or(&"").to_string(),
                traits: traits
                    .iter()
                    .filter(|&&(c, _)| f.get(c) == Some(&"1"))
                    .map(|&(_, label)| label)
                    .collect(),
                iou: Vec::new(),
                secs: Vec::new(),
            }
        })
        .collect();
    anyhow::ensure!(!rows.is_empty(), "{}: no cases", path.display());
    Ok(rows)
}

fn read_times(path: &Path) -> anyhow::Result<HashMap<String, f64>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, secs) = l.split_once(',').context("name,seconds")?;
            Ok((name.to_string(), secs.trim().parse()?))
        })
        .collect::<anyhow::Result<_>>()
        .with_context(|| path.display().to_string())
}

/// A matte from a PNG: the alpha channel of a cut-out, or the grey level of an opaque image
/// (a mask written as grey, like the test set's `mask.png`).
fn matte(path: &Path) -> anyhow::Result<GrayImage> {
    let img = image::open(path).with_context(|| path.display().to_string())?;
    if img.color().has_alpha() {
        let rgba = img.to_rgba8();
        if rgba.pixels().any(|p| p.0[3] < 255) {
            return Ok(GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Luma([rgba.get_pixel(x, y).0[3]])
            }));
        }
    }
    Ok(img.to_luma8())
}

fn score(case: &Path, tool: &str) -> anyhow::Result<f64> {
    let truth = matte(&case.join("mask.png"))?;
    let ours = matte(&case.join(format!("alpha_{tool}.png")))?;
    if ours.dimensions() != truth.dimensions() {
        bail!(
            "{}: {tool} matte is {:?}, the mask {:?}",
            case.display(),
            ours.dimensions(),
            truth.dimensions()
        );
    }
    Ok(iou(&ours, &truth))
}

/// Groups in print order: each kind as first seen, each trait present, then everything.
fn groups(rows: &[Row]) -> Vec<(String, Vec<&Row>)> {
    let mut out: Vec<(String, Vec<&Row>)> = Vec::new();
    let mut add = |label: &str, row| match out.iter_mut().find(|(l, _)| l == label) {
        Some((_, members)) => members.push(row),
        None => out.push((label.to_string(), vec![row])),
    };
    for r in rows {
        add(&r.kind, r);
    }
    for (_, label) in TRAITS {
        rows.iter()
            .filter(|r| r.traits.contains(&label))
            .for_each(|r| add(label, r));
    }
    rows.iter().for_each(|r| add("ALL", r));
    out
}

fn print_table(rows: &[Row], tools: &[String]) {
    let head: Vec<String> = tools
        .iter()
        .map(|t| format!("{t} mean IoU | {t} worst | {t} s/img"))
        .collect();
    println!("| backdrop / group | n | {} |", head.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(3 * tools.len()));
    for (label, members) in groups(rows) {
        let cells: Vec<String> = (0..tools.len())
            .map(|t| {
                let n = members.len() as f64;
                let mean = members.iter().map(|r| r.iou[t]).sum::<f64>() / n;
                let worst = members.iter().map(|r| r.iou[t]).fold(f64::MAX, f64::min);
                let secs = members.iter().map(|r| r.secs[t]).sum::<f64>() / n;
                format!("{mean:.3} | {worst:.3} | {secs:.2}")
            })
            .collect();
        println!("| {label} | {} | {} |", members.len(), cells.join(" | "));
    }
}

fn print_worst(rows: &[Row], tools: &[String], count: usize) {
    for (t, tool) in tools.iter().enumerate() {
        let mut order: Vec<&Row> = rows.iter().collect();
        order.sort_by(|a, b| a.iou[t].total_cmp(&b.iou[t]));
        let worst: Vec<String> = order
            .iter()
            .take(count)
            .map(|r| format!("{} {:.3}", r.name, r.iou[t]))
            .collect();
        println!("\n{tool} worst: {}", worst.join(", "));
    }
}

fn write_scores(path: &Path, rows: &[Row], tools: &[String]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let cols: Vec<String> = tools
        .iter()
        .flat_map(|t| [format!("iou_{t}"), format!("seconds_{t}")])
        .collect();
    writeln!(f, "name,backdrop,traits,{}", cols.join(","))?;
    for r in rows {
        let cells: Vec<String> = (0..tools.len())
            .flat_map(|t| [format!("{:.4}", r.iou[t]), format!("{:.4}", r.secs[t])])
            .collect();
        let traits = r.traits.join(";");
        writeln!(f, "{},{},{traits},{}", r.name, r.kind, cells.join(","))?;
    }
    f.flush()?;
    Ok(())
}
