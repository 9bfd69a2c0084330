//! The local fill (`inpaint`/`erase` with a mask file) measured on generated backdrops whose
//! truth is known: a sticker is drawn on each backdrop, masked, filled, and the fill compared
//! with the backdrop without the sticker. Backdrops cover the easy and the hard cases: a plain
//! sweep with a vertical gradient, a vignette, a saturated coloured backdrop, and textured ones
//! (wood grain, fabric weave, concrete noise); stickers cover 0.5%, 2% and 8% of the frame.
//! Printed per backdrop and size: mean absolute error inside the mask (0–255 levels, mean of
//! RGB), against a flat fill with the mean colour of the ring around the mask (the naive
//! baseline), and milliseconds per image on one thread. Seeded: the same numbers every run.
//!
//! `cargo run --release --features testset --example fill_quality -- [--size 1600x1200]`

use std::time::Instant;

use image::{GrayImage, Luma, Rgba, RgbaImage};
use retouch::ops::fill;

fn main() {
    let (w, h) = std::env::args()
        .skip_while(|a| a != "--size")
        .nth(1)
        .and_then(|s| {
            let (w, h) = s.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .unwrap_or((1600u32, 1200u32));
    println!("fill vs flat ring-mean baseline on {w}x{h} backdrops; MAE inside the mask, 0-255");
    println!(
        "{:<10} {:>6} {:>10} {:>12} {:>9}",
        "backdrop", "mask", "fill MAE", "baseline MAE", "ms/image"
    );
    let mut total = (0.0, 0.0, 0usize);
    for (name, backdrop) in backdrops(w, h) {
        for share in [0.005, 0.02, 0.08] {
            let mask = sticker_mask(w, h, share);
            let mut photo = backdrop.clone();
            for (x, y, m) in mask.enumerate_pixels() {
                if m.0[0] >= 128 {
                    photo.put_pixel(x, y, Rgba([210, 30, 40, 255]));
                }
            }
            let t = Instant::now();
            let out = fill::fill(&photo, &mask);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let ours = mae(&out, &backdrop, &mask);
            let base = mae(&flat_fill(&photo, &mask), &backdrop, &mask);
            total = (total.0 + ours, total.1 + base, total.2 + 1);
            println!(
                "{name:<10} {:>5.1}% {ours:>10.2} {base:>12.2} {ms:>9.1}",
                share * 100.0
            );
        }
    }
    let n = total.2 as f64;
    println!(
        "mean over {} cases: fill {:.2}, baseline {:.2}",
        total.2,
        total.0 / n,
        total.1 / n
    );
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn backdrops(w: u32, h: u32) -> Vec<(&'static str, RgbaImage)> {
    let (fw, fh) = (f64::from(w), f64::from(h));
    let px = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    let grey = |v: f64| Rgba([px(v), px(v), px(v), 255]);
    let sweep = RgbaImage::from_fn(w, h, |_, y| grey(236.0 - 30.0 * f64::from(y) / fh));
    let vignette = RgbaImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (f64::from(x) / fw - 0.5, f64::from(y) / fh - 0.5);
        grey(245.0 - 160.0 * (dx * dx + dy * dy))
    });
    let coloured = RgbaImage::from_fn(w, h, |x, y| {
        let t = f64::from(x + y) / (fw + fh);
        Rgba([
            px(40.0 + 30.0 * t),
            px(120.0 + 40.0 * t),
            px(190.0 - 20.0 * t),
            255,
        ])
    });
    let wood = RgbaImage::from_fn(w, h, |x, y| {
        let grain = (f64::from(y) * 0.9 + 6.0 * (f64::from(x) * 0.01).sin()).sin();
        let v = 150.0 + 25.0 * grain;
        Rgba([px(v + 30.0), px(v - 10.0), px(v - 60.0), 255])
    });
    let fabric = RgbaImage::from_fn(w, h, |x, y| {
        let weave = if (x / 3 + y / 3) % 2 == 0 {
            14.0
        } else {
            -14.0
        };
        Rgba([px(170.0 + weave), px(160.0 + weave), px(150.0 + weave), 255])
    });
    let mut rng = Rng(0x5EED_F111);
    let concrete = RgbaImage::from_fn(w, h, |_, _| grey(150.0 + 50.0 * (rng.next() - 0.5)));
    vec![
        ("sweep", sweep),
        ("vignette", vignette),
        ("coloured", coloured),
        ("wood", wood),
        ("fabric", fabric),
        ("concrete", concrete),
    ]
}

/// A round sticker covering `share` of the frame, a third of the way in from the left.
fn sticker_mask(w: u32, h: u32, share: f64) -> GrayImage {
    let r = (share * f64::from(w) * f64::from(h) / std::f64::consts::PI).sqrt();
    let (cx, cy) = (f64::from(w) / 3.0, f64::from(h) / 2.0);
    GrayImage::from_fn(w, h, |x, y| {
        let d = ((f64::from(x) - cx).powi(2) + (f64::from(y) - cy).powi(2)).sqrt();
        Luma([if d <= r + 2.0 { 255 } else { 0 }])
    })
}

/// Mean absolute RGB error inside the mask.
fn mae(a: &RgbaImage, b: &RgbaImage, mask: &GrayImage) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0.0f64);
    for (x, y, m) in mask.enumerate_pixels() {
        if m.0[0] >= 128 {
            let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
            sum += (0..3)
                .map(|k| (f64::from(p[k]) - f64::from(q[k])).abs())
                .sum::<f64>()
                / 3.0;
            n += 1.0;
        }
    }
    sum / n.max(1.0)
}

/// The naive baseline: every masked pixel the mean colour of the 4 px ring around the mask.
fn flat_fill(photo: &RgbaImage, mask: &GrayImage) -> RgbaImage {
    let (w, h) = photo.dimensions();
    let near = |x: u32, y: u32| {
        let (x0, y0) = (x.saturating_sub(4), y.saturating_sub(4));
        (y0..(y + 5).min(h))
            .any(|yy| (x0..(x + 5).min(w)).any(|xx| mask.get_pixel(xx, yy).0[0] >= 128))
    };
    let (mut sum, mut n) = ([0.0f64; 3], 0.0f64);
    for (x, y, p) in photo.enumerate_pixels() {
        if mask.get_pixel(x, y).0[0] < 128 && near(x, y) {
            (0..3).for_each(|k| sum[k] += f64::from(p.0[k]));
            n += 1.0;
        }
    }
    let mean = sum.map(|s| (s / n.max(1.0)).round() as u8);
    let mut out = photo.clone();
    for (x, y, m) in mask.enumerate_pixels() {
        if m.0[0] >= 128 {
            out.put_pixel(x, y, Rgba([mean[0], mean[1], mean[2], 255]));
        }
    }
    out
}
