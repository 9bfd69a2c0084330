//! Runs the local remove-bg (what `models: [local]` runs) over a test set written by the
//! `testset` example, for `bench/segmentation.sh`: per case `DIR/<case>/alpha_retouch.png` (the
//! cut-out's alpha, 255 = product), `DIR/times_retouch.csv` (name, seconds) and
//! `DIR/qa_retouch.csv` (name, qa, qa_flags: the quality checks a run would report).
//!
//! Images go one at a time, the op using every core it is given (`RAYON_NUM_THREADS`), like the
//! rembg driver beside it (`bench/rembg_run.py`); each time covers decoding the PNG, the op and
//! encoding the alpha, as that one does.
//!
//! With `--net FILE` (a U²-Net ONNX file) the network's saliency is combined with the backdrop
//! model (`--fusion combined`, what runs use) or used alone (`--fusion net`); `--tag` names the
//! outputs (`alpha_<tag>.png`, `times_<tag>.csv`; default `retouch`).
//!
//! `cargo run --release --example remove_bg_dir -- --dir DIR [--net FILE --fusion F --tag T]`

use clap::Parser;
use image::{GrayImage, Luma};
use retouch::ops::fuse::Fusion;
use retouch::ops::remove_bg;
use retouch::ops::saliency::SaliencyNet;
use retouch::qa::Qa;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    dir: PathBuf,
    /// A U²-Net-family ONNX file to combine with the backdrop model.
    #[arg(long)]
    net: Option<PathBuf>,
    /// `combined` (the backdrop model refines the network) or `net` (the network alone).
    #[arg(long, default_value = "combined")]
    fusion: String,
    #[arg(long, default_value = "retouch")]
    tag: String,
    /// Keep each case's saliency map (`saliency_<net file stem>.png`) and reuse it next time, to
    /// compare fusions quickly (times then exclude the network).
    #[arg(long)]
    reuse_saliency: bool,
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
    let fusion = match args.fusion.as_str() {
        "combined" => Fusion::Combined,
        "net" => Fusion::NetOnly,
        other => anyhow::bail!("--fusion {other}: combined or net"),
    };
    let net = match &args.net {
        Some(path) => Some(retouch::onnx_engine::load(
            &std::fs::read(path)?,
            // U²-Net's input (both networks of the catalog take the same).
            retouch::providers::local::net_input(
                retouch::catalog::local_model("u2netp").expect("u2netp is in the catalog"),
            ),
        )?),
        None => None,
    };
    let tag = &args.tag;
    if let Some(net) = &net {
        eprintln!("{tag}: the network runs on {}", net.engine());
    }
    let mut times = std::fs::File::create(args.dir.join(format!("times_{tag}.csv")))?;
    writeln!(times, "name,seconds")?;
    let mut checks = std::fs::File::create(args.dir.join(format!("qa_{tag}.csv")))?;
    writeln!(checks, "name,qa,qa_flags")?;
    for name in &names {
        let start = Instant::now();
        let stem = args
            .net
            .as_ref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|_| args.reuse_saliency);
        let qa = cut_out(
            &args.dir.join(name),
            net.as_ref(),
            fusion,
            tag,
            stem.as_deref(),
        )?;
        writeln!(times, "{name},{:.4}", start.elapsed().as_secs_f64())?;
        writeln!(checks, "{name},{},{}", qa.score_text(), qa.flags_text())?;
    }
    eprintln!("{tag}: {} images", names.len());
    Ok(())
}

fn cut_out(
    case: &Path,
    net: Option<&SaliencyNet>,
    fusion: Fusion,
    tag: &str,
    keep: Option<&str>,
) -> anyhow::Result<Qa> {
    let img = image::open(case.join("degraded.png"))?.to_rgba8();
    let kept = keep.map(|stem| case.join(format!("saliency_{stem}.png")));
    // A kept map has lost the network's confidence (it is normalised): with --reuse-saliency
    // the `unsure-network` check cannot run.
    let (saliency, confidence) = match (net, &kept) {
        (Some(_), Some(path)) if path.is_file() => (Some(image::open(path)?.to_luma8()), None),
        (Some(n), _) => {
            let s = n.assess(&img)?;
            if let Some(path) = &kept {
                s.map.save(path)?;
            }
            (Some(s.map), Some(s.confidence))
        }
        (None, _) => (None, None),
    };
    let cut = remove_bg::cut_out(&img, saliency.as_ref(), fusion);
    let out = &cut.image;
    let alpha = GrayImage::from_fn(out.width(), out.height(), |x, y| {
        Luma([out.get_pixel(x, y).0[3]])
    });
    alpha.save(case.join(format!("alpha_{tag}.png")))?;
    Ok(retouch::qa::remove_bg(
        out,
        confidence,
        cut.backdrop_like.as_deref(),
    ))
}
