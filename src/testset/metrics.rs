//! Scoring: mask IoU, mean CIEDE2000 (sRGB → XYZ → Lab, D65) and PSNR. One implementation
//! shared by the unit tests and the quality benchmark so every figure is computed the same way.

use crate::ops::colour::decode;
use image::{GrayImage, RgbaImage};

/// Intersection over union of two mattes thresholded at 128. Two empty masks score 1.
pub fn iou(a: &GrayImage, b: &GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "iou needs equal sizes");
    let (mut inter, mut union) = (0u64, 0u64);
    for (p, q) in a.pixels().zip(b.pixels()) {
        let (x, y) = (p.0[0] >= 128, q.0[0] >= 128);
        inter += u64::from(x && y);
        union += u64::from(x || y);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// CIE L*a*b* (D65) of an 8-bit sRGB colour.
pub fn srgb_to_lab(rgb: [u8; 3]) -> [f64; 3] {
    let [r, g, b] = rgb.map(|c| decode(c) as f64);
    let x = 0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
    let z = 0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b;
    let f = |t: f64| {
        const E: f64 = 216.0 / 24389.0;
        const K: f64 = 24389.0 / 27.0;
        if t > E {
            t.cbrt()
        } else {
            (K * t + 16.0) / 116.0
        }
    };
    let (fx, fy, fz) = (f(x / 0.950_47), f(y), f(z / 1.088_83));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// The CIEDE2000 colour difference (kL = kC = kH = 1).
pub fn ciede2000(lab1: [f64; 3], lab2: [f64; 3]) -> f64 {
    let [l1, a1, b1] = lab1;
    let [l2, a2, b2] = lab2;
    let c_bar = ((a1 * a1 + b1 * b1).sqrt() + (a2 * a2 + b2 * b2).sqrt()) / 2.0;
    let c7 = c_bar.powi(7);
    let g = 0.5 * (1.0 - (c7 / (c7 + 25f64.powi(7))).sqrt());
    let (a1p, a2p) = ((1.0 + g) * a1, (1.0 + g) * a2);
    let (c1p, c2p) = ((a1p * a1p + b1 * b1).sqrt(), (a2p * a2p + b2 * b2).sqrt());
    let hue = |b: f64, a: f64| {
        if a == 0.0 && b == 0.0 {
            0.0
        } else {
            b.atan2(a).to_degrees().rem_euclid(360.0)
        }
    };
    let (h1p, h2p) = (hue(b1, a1p), hue(b2, a2p));
    let dl = l2 - l1;
    let dc = c2p - c1p;
    let dh_deg = if c1p * c2p == 0.0 {
        0.0
    } else if (h2p - h1p).abs() <= 180.0 {
        h2p - h1p
    } else if h2p - h1p > 180.0 {
        h2p - h1p - 360.0
    } else {
        h2p - h1p + 360.0
    };
    let dh = 2.0 * (c1p * c2p).sqrt() * (dh_deg.to_radians() / 2.0).sin();
    let l_bar = (l1 + l2) / 2.0;
    let cp_bar = (c1p + c2p) / 2.0;
    let hp_bar = if c1p * c2p == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        (h1p + h2p) / 2.0
    } else if h1p + h2p < 360.0 {
        (h1p + h2p + 360.0) / 2.0
    } else {
        (h1p + h2p - 360.0) / 2.0
    };
    let t = 1.0 - 0.17 * (hp_bar - 30.0).to_radians().cos()
        + 0.24 * (2.0 * hp_bar).to_radians().cos()
        + 0.32 * (3.0 * hp_bar + 6.0).to_radians().cos()
        - 0.20 * (4.0 * hp_bar - 63.0).to_radians().cos();
    let d_theta = 30.0 * (-((hp_bar - 275.0) / 25.0).powi(2)).exp();
    let cp7 = cp_bar.powi(7);
    let rc = 2.0 * (cp7 / (cp7 + 25f64.powi(7))).sqrt();
    let l50 = (l_bar - 50.0).powi(2);
    let sl = 1.0 + 0.015 * l50 / (20.0 + l50).sqrt();
    let sc = 1.0 + 0.045 * cp_bar;
    let sh = 1.0 + 0.015 * cp_bar * t;
    let rt = -(2.0 * d_theta).to_radians().sin() * rc;
    let (tl, tc, th) = (dl / sl, dc / sc, dh / sh);
    (tl * tl + tc * tc + th * th + rt * tc * th).sqrt()
}

/// Mean CIEDE2000 over all pixels (RGB only; alpha ignored).
pub fn ciede2000_mean(a: &RgbaImage, b: &RgbaImage) -> f64 {
    assert_eq!(
        a.dimensions(),
        b.dimensions(),
        "ciede2000_mean needs equal sizes"
    );
    let mut sum = 0.0;
    for (p, q) in a.pixels().zip(b.pixels()) {
        if p.0[..3] != q.0[..3] {
            let (x, y) = ([p.0[0], p.0[1], p.0[2]], [q.0[0], q.0[1], q.0[2]]);
            sum += ciede2000(srgb_to_lab(x), srgb_to_lab(y));
        }
    }
    sum / (a.width() as f64 * a.height() as f64).max(1.0)
}

/// Peak signal-to-noise ratio in dB over the RGB channels (infinite for identical images).
pub fn psnr(a: &RgbaImage, b: &RgbaImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "psnr needs equal sizes");
    let mut se = 0.0f64;
    for (p, q) in a.pixels().zip(b.pixels()) {
        for k in 0..3 {
            let d = p.0[k] as f64 - q.0[k] as f64;
            se += d * d;
        }
    }
    let mse = se / (3.0 * a.width() as f64 * a.height() as f64).max(1.0);
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgba};

    /// Pairs from Sharma, Wu & Dalal (2005), Table 1.
    const SHARMA: [([f64; 3], [f64; 3], f64); 12] = [
        ([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], 2.0425),
        ([50.0, 3.1571, -77.2803], [50.0, 0.0, -82.7485], 2.8615),
        ([50.0, 2.8361, -74.0200], [50.0, 0.0, -82.7485], 3.4412),
        ([50.0, -1.3802, -84.2814], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, 0.0, 0.0], [50.0, -1.0, 2.0], 2.3669),
        ([50.0, 2.49, -0.001], [50.0, -2.49, 0.0009], 7.1792),
        ([50.0, 2.5, 0.0], [73.0, 25.0, -18.0], 27.1492),
        ([50.0, 2.5, 0.0], [61.0, -5.0, 29.0], 22.8977),
        ([50.0, 2.5, 0.0], [56.0, -27.0, -3.0], 31.9030),
        ([50.0, 2.5, 0.0], [58.0, 24.0, 15.0], 19.4535),
        (
            [60.2574, -34.0099, 36.2677],
            [60.4626, -34.1751, 39.4387],
            1.2644,
        ),
        ([84.25, 5.74, 96.0], [84.52, 5.75, 93.09], 0.5887),
    ];

    #[test]
    fn ciede2000_matches_sharma_pairs_both_ways() {
        for (a, b, want) in SHARMA {
            assert!(
                (ciede2000(a, b) - want).abs() < 1e-4,
                "{a:?} {b:?}: {} vs {want}",
                ciede2000(a, b)
            );
            assert!((ciede2000(b, a) - want).abs() < 1e-4);
        }
    }

    #[test]
    fn lab_of_white_and_black() {
        let w = srgb_to_lab([255, 255, 255]);
        assert!(
            (w[0] - 100.0).abs() < 0.01 && w[1].abs() < 0.01 && w[2].abs() < 0.01,
            "{w:?}"
        );
        assert!(srgb_to_lab([0, 0, 0])[0].abs() < 1e-9);
    }

    #[test]
    fn iou_and_psnr_basics() {
        let a = GrayImage::from_fn(10, 10, |x, _| Luma([if x < 5 { 255 } else { 0 }]));
        let b = GrayImage::from_fn(10, 10, |x, _| Luma([if x < 4 { 200 } else { 0 }]));
        assert!((iou(&a, &b) - 0.8).abs() < 1e-9);
        let p = RgbaImage::from_pixel(4, 4, Rgba([10, 20, 30, 255]));
        let mut q = p.clone();
        assert!(psnr(&p, &q).is_infinite());
        q.put_pixel(0, 0, Rgba([11, 20, 30, 255]));
        assert!((psnr(&p, &q) - 10.0 * (255f64.powi(2) * 48.0).log10()).abs() < 1e-9);
        assert!(ciede2000_mean(&p, &q) > 0.0 && ciede2000_mean(&p, &p) == 0.0);
    }
}
