//! Lighting correction toward a neutral, well-exposed studio look: white balance and exposure
//! as per-channel linear gains, then a soft highlight knee so nothing clips wholesale.
//!
//! Opaque photos use the border-fitted backdrop ([`BackdropModel`]) as the white reference
//! when it is plain and near-neutral (a light sweep, gradient or vignette): its brightest point
//! is made neutral and brought to a studio-white level. Opaque photos on a coloured or textured
//! backdrop (wood, fabric, concrete) have no such reference: their white balance comes from the
//! photo's near-grey pixels (grey parts of the product, black print, a concrete floor), applied
//! at half strength, and their exposure is left as shot (nothing in the photo says how bright
//! the surface was). Cut-outs (any pixel with alpha 0) use a mild highlight-based white balance
//! and exposure over the pixels with alpha > 0. Alpha is never changed and transparent pixels
//! are left untouched.

use super::backdrop::BackdropModel;
use super::colour::{decode, encode, luminance};
use image::RgbaImage;
use rayon::prelude::*;

/// How strongly to correct.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LightingOptions {
    /// Blend from the original (0) to the full correction (1).
    pub strength: f32,
}

impl Default for LightingOptions {
    fn default() -> Self {
        Self { strength: 1.0 }
    }
}

/// Linear luminance a light backdrop is brought to (≈ sRGB 235).
const STUDIO_WHITE: f32 = 0.83;
/// A backdrop whose channels differ by more than this ratio is treated as coloured.
const NEUTRAL_RATIO: f32 = 1.45;
/// A backdrop more textured than this ([`BackdropModel::texture`]) is a surface (wood, fabric,
/// concrete), not a sweep: its brightest point is no white reference.
const PLAIN_TEXTURE: f32 = 0.009;
/// Highlights above this linear level are compressed smoothly toward 1 instead of clipping.
const KNEE: f32 = 0.9;

/// The corrected image.
pub fn fix_lighting(img: &RgbaImage, opts: &LightingOptions) -> RgbaImage {
    let s = opts.strength.clamp(0.0, 1.0);
    if s == 0.0 || img.width() == 0 || img.height() == 0 {
        return img.clone();
    }
    let gains = estimate_gains(img);
    let lut: [[u8; 256]; 3] = gains.map(|g| {
        let mut t = [0u8; 256];
        for (i, v) in t.iter_mut().enumerate() {
            let corrected = encode(knee(decode(i as u8) * g)) as f32;
            *v = (i as f32 + s * (corrected - i as f32) + 0.5) as u8;
        }
        t
    });
    let mut out = img.clone();
    out.par_chunks_mut(4).for_each(|p| {
        if p[3] > 0 {
            for k in 0..3 {
                p[k] = lut[k][p[k] as usize];
            }
        }
    });
    out
}

/// Per-channel linear gains (white balance × exposure).
pub fn estimate_gains(img: &RgbaImage) -> [f32; 3] {
    let cutout = img.pixels().any(|p| p.0[3] == 0);
    let white = if cutout {
        None
    } else {
        BackdropModel::fit(img)
            .filter(|m| m.inliers > 0.5)
            .map(|m| {
                let w = m.brightest();
                // The texture is only worth measuring for a backdrop that could be white.
                (w, is_neutralish(w) && m.texture(img) <= PLAIN_TEXTURE)
            })
    };
    let gains = match white {
        Some((w, true)) => {
            let y = luminance(w);
            w.map(|c| (y / c).clamp(0.6, 1.6) * STUDIO_WHITE / y)
        }
        // A coloured or textured backdrop: its brightest point is no white reference (a grey
        // concrete or a pale wood is not an under-exposed white sweep), so white balance comes
        // from the photo's near-neutral pixels instead, and the exposure is left as shot.
        Some(_) => neutral_balance(img),
        None => statistical_gains(img),
    };
    gains.map(|g| g.clamp(0.25, 4.0))
}

fn is_neutralish(c: [f32; 3]) -> bool {
    let hi = c.iter().copied().fold(0.0, f32::max);
    let lo = c.iter().copied().fold(f32::MAX, f32::min);
    hi / lo.max(1e-4) < NEUTRAL_RATIO
}

/// Log-chroma radii of the grey-pixel search (`ln(r/g)`, `ln(b/g)` after the gains so far):
/// wide enough at first to take in a neutral under a strong cast (±18% per channel is about
/// ±0.17), then narrowing on what the first pass found.
const GREY_RADII: [f32; 3] = [0.3, 0.15, 0.075];
/// Share of the estimated correction applied: the near-grey pixels of a photo on a tinted
/// surface (whitewashed wood, beige linen, warm concrete) include the surface, so half the
/// estimate corrects half of a real cast and errs by half when the "neutral" was the surface.
/// On the two hard sets it was chosen on, half beat none on both and the full estimate on the
/// pair (the full one costs 0.5–0.6 ΔE on wood and fabric of one of them; BENCHMARKS.md).
const GREY_SHARE: f32 = 0.5;

/// White balance without a white reference (grey-pixel estimation): the pixels whose colour is
/// near grey are taken to be neutral surfaces (a grey or white part of the product, black print,
/// a concrete floor) and the gains make their median neutral, the search narrowing three times
/// around the estimate so far. Pixels near clipping or black (where noise decides the colour)
/// are left out. Gains are luminance-neutral (exposure is not touched) and applied at
/// [`GREY_SHARE`]; too few grey pixels (under 0.5 % of the usable ones, or 50) stops the search
/// where it is.
fn neutral_balance(img: &RgbaImage) -> [f32; 3] {
    // Log-chroma of each usable pixel, computed once; the gains only shift it.
    let ln: [f32; 256] = std::array::from_fn(|v| decode(v as u8).ln());
    let chroma: Vec<(f32, f32)> = img
        .pixels()
        .filter(|p| p.0[3] > 0 && p.0[..3].iter().all(|&v| (25..=245).contains(&v)))
        .map(|p| {
            let [r, g, b] = [0, 1, 2].map(|k| ln[p.0[k] as usize]);
            (r - g, b - g)
        })
        .collect();
    let enough = (chroma.len() / 200).max(50);
    let (mut shift_r, mut shift_b) = (0.0f32, 0.0f32);
    let mut near = Vec::with_capacity(chroma.len());
    for radius in GREY_RADII {
        near.clear();
        near.extend(
            chroma
                .iter()
                .map(|&(a, b)| (a + shift_r, b + shift_b))
                .filter(|(a, b)| a.abs() < radius && b.abs() < radius),
        );
        if near.len() < enough {
            break;
        }
        let mid = near.len() / 2;
        let (_, a, _) = near.select_nth_unstable_by(mid, |x, y| x.0.total_cmp(&y.0));
        let a = a.0;
        let (_, b, _) = near.select_nth_unstable_by(mid, |x, y| x.1.total_cmp(&y.1));
        let b = b.1;
        shift_r -= a;
        shift_b -= b;
    }
    let gains = [shift_r.exp(), 1.0, shift_b.exp()].map(|g| g.powf(GREY_SHARE));
    let y = luminance(gains);
    gains.map(|g| g / y)
}

/// Without a neutral backdrop: white balance from the brightest 0.5 % of pixels with
/// alpha > 0 (specular highlights reflect the light source, so they should be neutral), kept
/// mild, and exposure bringing those highlights to a bright but unclipped level.
fn statistical_gains(img: &RgbaImage) -> [f32; 3] {
    let mut px: Vec<[f32; 3]> = img
        .pixels()
        .filter(|p| p.0[3] > 0)
        .map(|p| [decode(p.0[0]), decode(p.0[1]), decode(p.0[2])])
        .collect();
    if px.is_empty() {
        return [1.0; 3];
    }
    let idx = ((px.len() - 1) as f32 * 0.995) as usize;
    px.select_nth_unstable_by(idx, |a, b| luminance(*a).total_cmp(&luminance(*b)));
    let top = &px[idx..];
    let mut est = [0.0f32; 3];
    for c in top {
        for (e, v) in est.iter_mut().zip(c) {
            *e += v / top.len() as f32;
        }
    }
    let y = luminance(est).max(1e-3);
    let wb = est.map(|c| (y / c.max(1e-4)).clamp(0.9, 1.12));
    let exposure = (0.9 / y).clamp(0.85, 1.4);
    wb.map(|g| g * exposure)
}

/// Identity below [`KNEE`], then an exponential shoulder that approaches 1 asymptotically.
fn knee(v: f32) -> f32 {
    if v <= KNEE {
        v
    } else {
        let room = 1.0 - KNEE;
        KNEE + room * (1.0 - (-(v - KNEE) / room).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testset::{cases, metrics::ciede2000_mean};
    use image::Rgba;

    #[test]
    fn halves_the_colour_error_on_generated_photos() {
        let (mut before, mut after) = (0.0, 0.0);
        for case in cases(31, 10, 240, 320) {
            before += ciede2000_mean(&case.image, &case.reference);
            let fixed = fix_lighting(&case.image, &LightingOptions::default());
            after += ciede2000_mean(&fixed, &case.reference);
        }
        assert!(after <= 0.5 * before, "ΔE {before:.2} -> {after:.2}");
    }

    #[test]
    fn strength_zero_is_identity_and_alpha_is_preserved() {
        let case = crate::testset::make_case(2, 0, 200, 240);
        let same = fix_lighting(&case.image, &LightingOptions { strength: 0.0 });
        assert_eq!(same, case.image);
        // A cut-out: transparent surround with junk colour must stay untouched.
        let mut cut = case.image.clone();
        for (i, p) in cut.pixels_mut().enumerate() {
            if case.mask.as_raw()[i] < 128 {
                *p = Rgba([12, 34, 56, 0]);
            } else if i % 7 == 0 {
                p.0[3] = 200;
            }
        }
        let fixed = fix_lighting(&cut, &LightingOptions::default());
        assert_ne!(fixed, cut, "the product was corrected");
        for (a, b) in fixed.pixels().zip(cut.pixels()) {
            assert_eq!(a.0[3], b.0[3]);
            if b.0[3] == 0 {
                assert_eq!(a.0, b.0);
            }
        }
        let half = fix_lighting(&case.image, &LightingOptions { strength: 0.5 });
        assert!(
            half != case.image && half != fix_lighting(&case.image, &LightingOptions::default())
        );
    }

    #[test]
    fn textured_backdrops_are_not_taken_for_white_sweeps() {
        // Grey concrete, wood and fabric once read as under-exposed white sweeps and were
        // brightened and neutralised, doubling the colour error (BENCHMARKS.md).
        let (mut before, mut after, mut n) = (0.0, 0.0, 0);
        for case in crate::testset::hard_cases(5, 30, 240, 320) {
            if !["wood", "fabric", "concrete"].contains(&case.backdrop.name()) {
                continue;
            }
            before += ciede2000_mean(&case.image, &case.reference);
            let fixed = fix_lighting(&case.image, &LightingOptions::default());
            after += ciede2000_mean(&fixed, &case.reference);
            n += 1;
        }
        assert!(n >= 10, "{n} textured cases");
        assert!(
            after <= before * 1.02,
            "ΔE {before:.2} -> {after:.2} over {n}"
        );
    }

    #[test]
    fn coloured_and_textured_backdrops_are_white_balanced_not_left_as_shot() {
        // They were left as shot (no white reference); their near-grey pixels now set the
        // white balance where they have some (BENCHMARKS.md: seeds 123 and 2024, not looked at while choosing it).
        let (mut before, mut after, mut n, mut changed) = (0.0, 0.0, 0, 0);
        for case in crate::testset::hard_cases(11, 36, 240, 320) {
            if case.backdrop.name() == "light" {
                continue;
            }
            before += ciede2000_mean(&case.image, &case.reference);
            let fixed = fix_lighting(&case.image, &LightingOptions::default());
            after += ciede2000_mean(&fixed, &case.reference);
            changed += usize::from(fixed != case.image);
            n += 1;
        }
        assert!(n >= 20, "{n} cases");
        // The rest have no near-grey pixels to go on (a ring or a coloured bag on felt).
        assert!(changed * 2 >= n, "{changed} of {n} corrected");
        assert!(after < before, "ΔE {before:.2} -> {after:.2} over {n}");
    }

    #[test]
    fn the_grey_pixels_set_half_the_white_balance_and_leave_the_exposure() {
        // A saturated green felt with a grey product (linear 0.35) and black print, under a
        // warm cast: the grey is half-way back to neutral, the felt is not taken for grey.
        let cast = [1.16f32, 1.0, 0.86];
        let (w, h) = (200u32, 160u32);
        let img = RgbaImage::from_fn(w, h, |x, y| {
            let product = (60..140).contains(&x) && (40..140).contains(&y);
            let lin = if product && y % 20 < 3 {
                [0.06, 0.06, 0.06]
            } else if product {
                [0.35, 0.35, 0.35]
            } else {
                let fibre = 1.0 + 0.15 * (((x * 7 + y * 13) % 11) as f32 / 11.0 - 0.5);
                [0.08 * fibre, 0.32 * fibre, 0.1 * fibre]
            };
            let c = [0, 1, 2].map(|k| encode(lin[k] * cast[k]));
            Rgba([c[0], c[1], c[2], 255])
        });
        let gains = neutral_balance(&img);
        let corrected = [0, 1, 2].map(|k| 0.35 * cast[k] * gains[k]);
        let half = [0, 2].map(|k| cast[k].sqrt());
        for (i, k) in [0, 2].into_iter().enumerate() {
            let ratio = corrected[k] / corrected[1];
            assert!(
                (ratio / half[i] - 1.0).abs() < 0.02,
                "channel {k}: {ratio:.3}, half the cast is {:.3} ({gains:?})",
                half[i]
            );
        }
        assert!((luminance(gains) - 1.0).abs() < 1e-4, "{gains:?}");
    }

    #[test]
    fn does_not_clip_wholesale() {
        for case in cases(41, 5, 200, 240) {
            let fixed = fix_lighting(&case.image, &LightingOptions::default());
            let clipped = fixed.pixels().filter(|p| p.0[..3].contains(&255)).count();
            assert!(
                clipped * 50 < (fixed.width() * fixed.height()) as usize,
                "{}: {clipped}",
                case.name
            );
        }
    }
}
