//! How far fix-lighting is from what the photo allows: per backdrop kind of a test set written by
//! the `testset` example, the mean CIEDE2000 to the well-lit reference of the degraded photo,
//! of `fix_lighting`, and of corrections that know the truth from `manifest.csv` — the cast
//! alone (`o_wb`), the exposure alone (`o_exp`), both (`o_both`), and both with the gamma
//! error undone (`o_all`). Prints a Markdown table.
//!
//! `cargo run --release --example lighting_oracles --features testset -- DIR`
use image::RgbaImage;
use rayon::prelude::*;
use retouch::ops::colour::{decode, encode};
use retouch::testset::metrics::ciede2000_mean;
use std::path::PathBuf;

/// `img` with each channel's encoded value raised to `inv_gamma`, decoded, multiplied by its
/// gain and encoded again (clipped at white).
fn apply(img: &RgbaImage, gains: [f32; 3], inv_gamma: f32) -> RgbaImage {
    let lut: [[u8; 256]; 3] = gains.map(|g| {
        let mut t = [0u8; 256];
        for (i, v) in t.iter_mut().enumerate() {
            let s = (i as f32 / 255.0).powf(inv_gamma);
            let q = (s * 255.0 + 0.5) as u8;
            *v = encode((decode(q) * g).min(1.0));
        }
        t
    });
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for k in 0..3 {
            p.0[k] = lut[k][p.0[k] as usize];
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: lighting_oracles DIR"))?,
    );
    let manifest = std::fs::read_to_string(dir.join("manifest.csv"))?;
    let rows: Vec<Vec<String>> = manifest
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let names = [
        "degraded",
        "fix_lighting",
        "o_wb",
        "o_exp",
        "o_both",
        "o_all",
    ];
    let results: Vec<(String, Vec<f64>)> = rows
        .par_iter()
        .map(|r| {
            let case = dir.join(&r[0]);
            let deg = image::open(case.join("degraded.png")).unwrap().to_rgba8();
            let reference = image::open(case.join("reference.png")).unwrap().to_rgba8();
            let cast: [f32; 3] = [2, 3, 4].map(|i| r[i].parse().unwrap());
            let exposure: f32 = r[5].parse().unwrap();
            let gamma: f32 = r[6].parse().unwrap();
            let e = (-exposure).exp2();
            let outs = [
                deg.clone(),
                retouch::ops::fix_lighting(&deg, &Default::default()),
                apply(&deg, cast.map(|c| 1.0 / c), 1.0),
                apply(&deg, [e; 3], 1.0),
                apply(&deg, cast.map(|c| e / c), 1.0),
                apply(&deg, cast.map(|c| e / c), 1.0 / gamma),
            ];
            (
                r[1].clone(),
                outs.iter().map(|o| ciede2000_mean(o, &reference)).collect(),
            )
        })
        .collect();
    let mut kinds: Vec<String> = results.iter().map(|r| r.0.clone()).collect();
    kinds.sort();
    kinds.dedup();
    kinds.insert(0, "all".into());
    println!("| backdrop | {} |", names.join(" | "));
    for k in kinds {
        let sel: Vec<&Vec<f64>> = results
            .iter()
            .filter(|r| k == "all" || r.0 == k)
            .map(|r| &r.1)
            .collect();
        let means: Vec<String> = (0..names.len())
            .map(|i| {
                format!(
                    "{:.2}",
                    sel.iter().map(|v| v[i]).sum::<f64>() / sel.len() as f64
                )
            })
            .collect();
        println!("| {k} | {} |", means.join(" | "));
    }
    Ok(())
}
