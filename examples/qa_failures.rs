//! How well the free quality checks (`retouch::qa::remove_bg`) tell broken cut-outs from good
//! ones, on cut-outs with known failures made from the generator's true masks: for every case
//! of the hard set, the true cut-out, a slightly soft one, and six broken ones (inverted,
//! truncated, empty, halo, backdrop kept around the product, a scrap of backdrop kept beside
//! it). Each gets its IoU against the true mask and the checks' score as a remote result would
//! (no network confidence). Prints, per kind, the mean IoU and how many were flagged (score
//! below `--below`), then the recall on IoU < 0.8 and the false alarms on IoU >= 0.95.
//!
//! `cargo run --release --example qa_failures --features testset -- --seed 99 --count 60`

use clap::Parser;
use image::{GrayImage, Luma, RgbaImage};
use rayon::prelude::*;
use retouch::testset::{Case, hard_cases, metrics::iou};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 99)]
    seed: u64,
    #[arg(long, default_value_t = 60)]
    count: usize,
    #[arg(long, default_value_t = 400)]
    min: u32,
    #[arg(long, default_value_t = 800)]
    max: u32,
    /// A result scoring below this is flagged.
    #[arg(long, default_value_t = 0.8)]
    below: f32,
    /// Instead of the made-up failures, score real mattes: `DIR/<case>/alpha_<tool>.png` of a
    /// set written by the `testset` example (`degraded.png`, `mask.png`), e.g. by
    /// `bench/segmentation.sh`.
    #[arg(long)]
    mattes: Option<std::path::PathBuf>,
    #[arg(long, default_value = "retouch")]
    tool: String,
    /// A U²-Net ONNX file: each result is also held against the network's own cut-out of the
    /// photo (fused with the backdrop model, as local remove-bg makes it), the second opinion a
    /// run gives a remote result when a network is installed.
    #[arg(long)]
    net: Option<std::path::PathBuf>,
    /// Writes every result (kind, IoU, qa, flags, and with `--net` the share of the network's
    /// product left out and of the kept pixels it calls backdrop) to this CSV.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
}

/// The network's own cut-out of `img` (true = product), when it was sure of the photo.
fn reference(
    net: Option<&retouch::ops::saliency::SaliencyNet>,
    img: &RgbaImage,
) -> Option<Vec<bool>> {
    let s = net?.assess(img).expect("the network runs");
    if retouch::qa::unsure(s.confidence) {
        return None;
    }
    let cut = retouch::ops::remove_bg::cut_out(img, Some(&s.map), Default::default());
    Some(cut.image.pixels().map(|p| p.0[3] >= 128).collect())
}

/// The checks on `cut`, with the second opinion when there is one.
fn check(cut: &RgbaImage, like: Option<&[bool]>, reference: Option<&[bool]>) -> retouch::qa::Qa {
    let qa = retouch::qa::remove_bg(cut, None, like);
    match reference.and_then(|r| retouch::qa::second_opinion(cut, r, like)) {
        Some(flag) => qa.with(flag),
        None => qa,
    }
}

const KINDS: [&str; 8] = [
    "good",
    "good-soft",
    "inverted",
    "truncated",
    "empty",
    "halo",
    "backdrop-box",
    "backdrop-scrap",
];

fn main() {
    let args = Args::parse();
    let net = args.net.as_ref().map(|path| {
        retouch::onnx_engine::load(
            &std::fs::read(path).expect("read the network"),
            retouch::providers::local::net_input(
                retouch::catalog::local_model("u2netp").expect("u2netp is in the catalog"),
            ),
        )
        .expect("load the network")
    });
    if let Some(dir) = &args.mattes {
        return real_mattes(dir, &args.tool, args.below, net.as_ref());
    }
    let cases: Vec<Case> = hard_cases(args.seed, args.count, args.min, args.max).collect();
    // (kind, iou, score, flags, disagreement)
    type Row = (usize, f64, f32, String, Option<(f32, f32)>, String);
    let results: Vec<Row> = cases
        .par_iter()
        .flat_map(|case| {
            let like = retouch::qa::backdrop_like(&case.image);
            let reference = reference(net.as_ref(), &case.image);
            (0..KINDS.len())
                .map(|k| {
                    let alpha = variant(k, &case.mask);
                    let cut = with_alpha(&case.image, &alpha);
                    let qa = check(&cut, like.as_deref(), reference.as_deref());
                    let apart = reference
                        .as_deref()
                        .and_then(|r| retouch::qa::disagreement(&cut, r, like.as_deref()));
                    (
                        k,
                        iou(&alpha, &case.mask),
                        qa.score(),
                        qa.flags_text(),
                        apart,
                        case.name.clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if let Some(path) = &args.csv {
        let mut out = String::from("case,kind,iou,qa,flags,missing,extra\n");
        for r in &results {
            let (m, e) = r.4.map_or((String::new(), String::new()), |(m, e)| {
                (format!("{m:.4}"), format!("{e:.4}"))
            });
            out += &format!(
                "{},{},{:.4},{:.3},{},{m},{e}\n",
                r.5, KINDS[r.0], r.1, r.2, r.3
            );
        }
        std::fs::write(path, out).expect("write the CSV");
    }
    println!("| kind | n | mean IoU | flagged (qa < {}) |", args.below);
    println!("|---|---:|---:|---:|");
    for (k, name) in KINDS.iter().enumerate() {
        let of: Vec<_> = results.iter().filter(|r| r.0 == k).collect();
        let mean = of.iter().map(|r| r.1).sum::<f64>() / of.len() as f64;
        let flagged = of.iter().filter(|r| r.2 < args.below).count();
        println!("| {name} | {} | {mean:.3} | {flagged} |", of.len());
    }
    let bad: Vec<_> = results.iter().filter(|r| r.1 < 0.8).collect();
    let good: Vec<_> = results.iter().filter(|r| r.1 >= 0.95).collect();
    let caught = bad.iter().filter(|r| r.2 < args.below).count();
    let raised = good.iter().filter(|r| r.2 < args.below).count();
    let flagged = results.iter().filter(|r| r.2 < args.below).count();
    let flagged_bad = results
        .iter()
        .filter(|r| r.2 < args.below && r.1 < 0.8)
        .count();
    println!();
    println!(
        "recall on IoU < 0.8: {caught}/{} = {:.1}%",
        bad.len(),
        100.0 * caught as f64 / bad.len().max(1) as f64
    );
    println!(
        "false alarms on IoU >= 0.95: {raised}/{} = {:.1}%",
        good.len(),
        100.0 * raised as f64 / good.len().max(1) as f64
    );
    println!(
        "precision (flagged results with IoU < 0.8): {flagged_bad}/{flagged} = {:.1}%",
        100.0 * flagged_bad as f64 / flagged.max(1) as f64
    );
    for r in good.iter().filter(|r| r.2 < args.below).take(8) {
        println!(
            "  false alarm: {} IoU {:.3} qa {:.3} [{}]",
            KINDS[r.0], r.1, r.2, r.3
        );
    }
    let missed: Vec<_> = bad.iter().filter(|r| r.2 >= args.below).collect();
    for r in missed.iter().take(12) {
        println!(
            "  missed: {} IoU {:.3} qa {:.3} [{}]",
            KINDS[r.0], r.1, r.2, r.3
        );
    }
}

/// The true mask, or one of its known failures.
fn variant(kind: usize, mask: &GrayImage) -> GrayImage {
    let (w, h) = mask.dimensions();
    let side = w.min(h);
    match KINDS[kind] {
        "good" => mask.clone(),
        "good-soft" => imageproc_blur(mask),
        "inverted" => GrayImage::from_fn(w, h, |x, y| Luma([255 - mask.get_pixel(x, y)[0]])),
        "truncated" => {
            // The lower 45% of the product cut away (a crop through it).
            let (top, bottom) = rows_of(mask);
            let cut = top + (bottom - top) * 55 / 100;
            GrayImage::from_fn(w, h, |x, y| {
                Luma([if y > cut { 0 } else { mask.get_pixel(x, y)[0] }])
            })
        }
        "empty" => GrayImage::new(w, h),
        "halo" => {
            // A half-opaque fringe around the product, 5% of the short side wide.
            let grown = dilate(mask, (side / 20).max(2));
            GrayImage::from_fn(w, h, |x, y| {
                let m = mask.get_pixel(x, y)[0];
                Luma([if m >= 128 {
                    m
                } else if grown.get_pixel(x, y)[0] > 0 {
                    150
                } else {
                    m
                }])
            })
        }
        "backdrop-box" => {
            // The product's bounding box kept whole, backdrop and all, with a margin.
            let (l, t, r, b) = bbox(mask);
            let m = side / 12;
            GrayImage::from_fn(w, h, |x, y| {
                let inside = x + m >= l && x <= r + m && y + m >= t && y <= b + m;
                Luma([if inside { 255 } else { 0 }])
            })
        }
        "backdrop-scrap" => {
            // The product plus a patch of backdrop the size of half the product beside it.
            let (l, t, r, b) = bbox(mask);
            let (pw, ph) = ((r - l) / 2 + 1, (b - t) / 2 + 1);
            let x0 = if l > pw + 2 {
                l - pw - 2
            } else {
                (r + 2).min(w - pw)
            };
            GrayImage::from_fn(w, h, |x, y| {
                let scrap = x >= x0 && x < x0 + pw && y >= t + ph / 2 && y < t + ph / 2 + ph;
                Luma([if scrap { 255 } else { mask.get_pixel(x, y)[0] }])
            })
        }
        _ => unreachable!(),
    }
}

fn with_alpha(img: &RgbaImage, alpha: &GrayImage) -> RgbaImage {
    let mut out = img.clone();
    for (p, a) in out.pixels_mut().zip(alpha.pixels()) {
        p.0[3] = a[0];
    }
    out
}

fn rows_of(mask: &GrayImage) -> (u32, u32) {
    let (_, t, _, b) = bbox(mask);
    (t, b)
}

fn bbox(mask: &GrayImage) -> (u32, u32, u32, u32) {
    let (mut l, mut t, mut r, mut b) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in mask.enumerate_pixels() {
        if p[0] >= 128 {
            (l, t, r, b) = (l.min(x), t.min(y), r.max(x), b.max(y));
        }
    }
    if l == u32::MAX {
        (0, 0, 0, 0)
    } else {
        (l, t, r, b)
    }
}

/// Square dilation by `k` px (separable max).
fn dilate(mask: &GrayImage, k: u32) -> GrayImage {
    let (w, h) = mask.dimensions();
    let horiz = GrayImage::from_fn(w, h, |x, y| {
        let (a, b) = (x.saturating_sub(k), (x + k).min(w - 1));
        Luma([(a..=b)
            .map(|xx| mask.get_pixel(xx, y)[0])
            .max()
            .unwrap_or(0)])
    });
    GrayImage::from_fn(w, h, |x, y| {
        let (a, b) = (y.saturating_sub(k), (y + k).min(h - 1));
        Luma([(a..=b)
            .map(|yy| horiz.get_pixel(x, yy)[0])
            .max()
            .unwrap_or(0)])
    })
}

/// A 3×3 box blur: edges a little softer than the truth, as a good matte's are.
fn imageproc_blur(mask: &GrayImage) -> GrayImage {
    let (w, h) = mask.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        let mut sum = 0u32;
        let mut n = 0u32;
        for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                sum += u32::from(mask.get_pixel(xx, yy)[0]);
                n += 1;
            }
        }
        Luma([(sum / n) as u8])
    })
}

/// The checks on real mattes: recall on IoU < 0.8 and false alarms on IoU >= 0.95.
fn real_mattes(
    dir: &std::path::Path,
    tool: &str,
    below: f32,
    net: Option<&retouch::ops::saliency::SaliencyNet>,
) {
    let mut cases: Vec<_> = std::fs::read_dir(dir)
        .expect("read the set")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("mask.png").is_file())
        .collect();
    cases.sort();
    let rows: Vec<(f64, f32, String)> = cases
        .par_iter()
        .map(|d| {
            let img = image::open(d.join("degraded.png"))
                .expect("degraded")
                .to_rgba8();
            let mask = image::open(d.join("mask.png")).expect("mask").to_luma8();
            let alpha = image::open(d.join(format!("alpha_{tool}.png")))
                .expect("alpha")
                .to_luma8();
            let like = retouch::qa::backdrop_like(&img);
            let reference = reference(net, &img);
            let qa = check(
                &with_alpha(&img, &alpha),
                like.as_deref(),
                reference.as_deref(),
            );
            (iou(&alpha, &mask), qa.score(), qa.flags_text())
        })
        .collect();
    let bad: Vec<_> = rows.iter().filter(|r| r.0 < 0.8).collect();
    let good: Vec<_> = rows.iter().filter(|r| r.0 >= 0.95).collect();
    println!(
        "{tool} on {}: {} cases; flagged {}/{} with IoU < 0.8, {}/{} with IoU >= 0.95",
        dir.display(),
        rows.len(),
        bad.iter().filter(|r| r.1 < below).count(),
        bad.len(),
        good.iter().filter(|r| r.1 < below).count(),
        good.len()
    );
    for r in good.iter().filter(|r| r.1 < below) {
        println!("  false alarm: IoU {:.3} qa {:.3} [{}]", r.0, r.1, r.2);
    }
}
