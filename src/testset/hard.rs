//! The hard set: the cases a backdrop model alone gets wrong. Wood, fabric, concrete and
//! textured-colour backdrops besides light and coloured sweeps; products often matched in colour
//! to the backdrop; thin straps, stems, wire and handles with holes; gamma errors and JPEG-like
//! block noise on top of the classic cast, exposure error and sensor noise.
//!
//! A separate stream with its own seeds: nothing here changes what [`super::cases`] yields.

use super::rng::{self, Rng};
use super::texture::Surface;
use super::{Backdrop, Case, Degradation, Scene, assemble, hsv, pick_size, random_degradation};
use crate::ops::colour::luminance;

/// `count` deterministic hard cases, cycling through [`Backdrop::HARD`]; sides are even and
/// within `min_side..=max_side`.
pub fn hard_cases(
    seed: u64,
    count: usize,
    min_side: u32,
    max_side: u32,
) -> impl Iterator<Item = Case> {
    (0..count).map(move |i| make_hard_case(seed, i, min_side, max_side))
}

/// Case `index` of the hard stream for `seed` (what [`hard_cases`] yields at that position).
pub fn make_hard_case(seed: u64, index: usize, min_side: u32, max_side: u32) -> Case {
    // A different mixing constant from the classic stream's, so the two never share a case seed.
    let case_seed = rng::mix(seed.wrapping_mul(0x2000_0003).wrapping_add(index as u64) ^ 0x4841);
    let mut rng = Rng::new(case_seed);
    let backdrop = Backdrop::HARD[(index + (seed as usize)) % Backdrop::HARD.len()];
    let (w, h) = pick_size(&mut rng, min_side, max_side);
    let low_contrast = rng.chance(if backdrop == Backdrop::LightSeamless {
        0.5
    } else {
        0.3
    });
    let scene = hard_scene(
        &mut rng,
        backdrop,
        low_contrast,
        (w as f32, h as f32),
        case_seed,
    );
    let degradation = hard_degradation(&mut rng);
    assemble(index, &scene, &degradation, case_seed, (w, h), low_contrast)
}

fn hard_scene(
    rng: &mut Rng,
    backdrop: Backdrop,
    low_contrast: bool,
    (w, h): (f32, f32),
    seed: u64,
) -> Scene {
    let surface = Surface::random(rng, backdrop, seed);
    let near = surface.mean_near_product(w, h);
    let (colour, label) = if low_contrast {
        near_colours(rng, near)
    } else {
        free_colours(rng)
    };
    let product = super::thin::random_product(rng, w, h, colour, label);
    let shadow = if rng.chance(0.45) {
        rng.range(0.2, 0.5)
    } else {
        0.0
    };
    Scene {
        backdrop,
        product,
        bg_a: near,
        bg_b: near,
        dir: (0.0, 1.0),
        shadow,
        surface: Some(surface),
    }
}

/// A product colour a few ΔE from `near` (white on white, beige on beige, brown on wood): about
/// 12–35% lighter or darker after typical shading (darker on light backdrops, where lighter
/// would clip), with a slight tint, and a label of about the same colour.
fn near_colours(rng: &mut Rng, near: [f32; 3]) -> ([f32; 3], [f32; 3]) {
    let lighter = luminance(near) < 0.55 && rng.chance(0.5);
    let step = rng.range(0.12, 0.35);
    // Shading darkens most of a product by about 15%; undo that so `step` is what shows.
    let shown = if lighter { 1.0 + step } else { 1.0 - step };
    let level = shown / 0.85;
    let colour = near.map(|c| (c * level * rng.range(0.96, 1.04)).min(0.92));
    let label_level = rng.range(0.9, 1.05);
    (colour, colour.map(|c| c * label_level))
}

/// Any product colour: light neutral, near black, or a random hue.
fn free_colours(rng: &mut Rng) -> ([f32; 3], [f32; 3]) {
    let hue = rng.unit();
    let roll = rng.unit();
    let colour = if roll < 0.2 {
        let v = rng.range(0.4, 0.75);
        [v * rng.range(0.97, 1.03), v, v * rng.range(0.9, 1.0)]
    } else if roll < 0.35 {
        let v = rng.range(0.02, 0.08);
        [v, v, v * 1.1]
    } else {
        hsv(hue, rng.range(0.3, 0.9), rng.range(0.25, 0.85))
    };
    let label = hsv(
        (hue + 0.5).fract(),
        rng.range(0.1, 0.8),
        rng.range(0.6, 0.95),
    );
    (colour, label)
}

/// The classic cast and exposure error, plus a gamma error, stronger sensor noise and often
/// JPEG-like quantisation.
fn hard_degradation(rng: &mut Rng) -> Degradation {
    let (cast, exposure) = random_degradation(rng);
    let gamma = if rng.chance(0.6) {
        rng.range(0.75, 1.35)
    } else {
        1.0
    };
    let noise = rng.range(1.0, 3.0);
    let jpeg = rng.chance(0.6).then(|| 55 + rng.below(36) as u8);
    Degradation {
        cast,
        exposure,
        gamma,
        noise,
        jpeg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testset::metrics::{ciede2000, srgb_to_lab};
    use image::GrayImage;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a: Vec<Case> = hard_cases(3, 6, 150, 220).collect();
        for (x, y) in a.iter().zip(hard_cases(3, 6, 150, 220)) {
            assert_eq!((&x.name, &x.image, &x.mask), (&y.name, &y.image, &y.mask));
            let (w, h) = x.image.dimensions();
            assert!(w.max(h) <= 220 && w.min(h) >= 150 && w % 2 == 0 && h % 2 == 0);
            assert_eq!(x.mask.dimensions(), (w, h));
            assert_eq!(x.reference.dimensions(), (w, h));
        }
        assert_ne!(make_hard_case(4, 0, 150, 220).image, a[0].image);
        let classic = crate::testset::make_case(3, 0, 150, 220);
        assert_ne!(classic.image, a[0].image, "a stream of its own");
    }

    /// Rows and columns holding a run of product pixels (≥ 128) 1–4 px long between backdrop.
    fn lines_with_thin_runs(m: &GrayImage) -> usize {
        let (w, h) = m.dimensions();
        let on = |x: u32, y: u32| m.get_pixel(x, y).0[0] >= 128;
        let has_short_run = |line: &mut dyn Iterator<Item = bool>| {
            let (mut run, mut before, mut found) = (0, false, false);
            for v in line {
                if v {
                    run += 1;
                } else {
                    found |= before && (1..5).contains(&run);
                    before = true;
                    run = 0;
                }
            }
            found
        };
        let rows = (0..h)
            .filter(|&y| has_short_run(&mut (0..w).map(|x| on(x, y))))
            .count();
        let cols = (0..w)
            .filter(|&x| has_short_run(&mut (0..h).map(|y| on(x, y))))
            .count();
        rows.max(cols)
    }

    /// Backdrop pixels (< 128) not 4-connected to the frame's edge.
    fn enclosed_backdrop(m: &GrayImage) -> usize {
        let (w, h) = (m.width() as usize, m.height() as usize);
        let off: Vec<bool> = m.pixels().map(|p| p.0[0] < 128).collect();
        let mut seen = vec![false; w * h];
        let mut stack: Vec<usize> = (0..w * h)
            .filter(|&i| off[i] && (i % w == 0 || i % w == w - 1 || i < w || i >= w * (h - 1)))
            .collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            let (x, y) = (i % w, i / w);
            let next = [
                (x > 0).then(|| i - 1),
                (x + 1 < w).then(|| i + 1),
                (y > 0).then(|| i - w),
                (y + 1 < h).then(|| i + w),
            ];
            stack.extend(next.into_iter().flatten().filter(|&j| off[j] && !seen[j]));
        }
        (0..w * h).filter(|&i| off[i] && !seen[i]).count()
    }

    /// ΔE between the mean product colour and the mean backdrop colour of the reference.
    fn contrast(c: &Case) -> f64 {
        let mean = |want: u8| {
            let (mut sum, mut n) = ([0.0f64; 3], 0.0);
            for (p, m) in c.reference.pixels().zip(c.mask.pixels()) {
                if m.0[0] == want {
                    (0..3).for_each(|k| sum[k] += f64::from(p.0[k]));
                    n += 1.0;
                }
            }
            sum.map(|s| (s / n).round() as u8)
        };
        ciede2000(srgb_to_lab(mean(255)), srgb_to_lab(mean(0)))
    }

    #[test]
    fn the_set_is_hard_in_every_promised_way() {
        let all: Vec<Case> = hard_cases(1, 24, 300, 360).collect();
        for b in Backdrop::HARD {
            assert!(all.iter().any(|c| c.backdrop == b), "{b:?} missing");
            assert_eq!(Backdrop::from_name(b.name()), Some(b));
        }
        for c in &all {
            let soft = c
                .mask
                .pixels()
                .filter(|p| (1..255).contains(&p.0[0]))
                .count();
            let full = c.mask.pixels().filter(|p| p.0[0] == 255).count();
            assert!(
                soft > 20 && full > 300,
                "{}: soft {soft} full {full}",
                c.name
            );
            if c.thin_parts {
                let lines = lines_with_thin_runs(&c.mask);
                assert!(lines >= 8, "{}: {lines} lines with thin runs", c.name);
            }
            if c.holes {
                let hole = enclosed_backdrop(&c.mask);
                assert!(hole >= 20, "{}: {hole} enclosed backdrop pixels", c.name);
            }
            if c.low_contrast {
                assert!(contrast(c) < 15.0, "{}: ΔE {}", c.name, contrast(c));
            }
        }
        let count = |f: fn(&Case) -> bool| all.iter().filter(|c| f(c)).count();
        assert!(count(|c| c.thin_parts) >= 6 && count(|c| c.holes) >= 4);
        assert!(count(|c| c.low_contrast) >= 6);
        assert!(count(|c| c.gamma != 1.0) >= 6 && count(|c| c.jpeg_quality.is_some()) >= 6);
    }
}
