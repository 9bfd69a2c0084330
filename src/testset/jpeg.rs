//! JPEG-like degradation for the hard set: the lossy half of baseline JPEG (YCbCr, 4:2:0 chroma,
//! 8×8 DCT, the standard quantisation tables scaled by quality) without the entropy coding, in
//! scalar `f32` so it gives the same bytes everywhere, unlike a round trip through an encoder and
//! a SIMD decoder. Blocking, ringing near edges and chroma bleeding are what a segmenter sees in
//! a real shop's JPEGs.

use image::RgbaImage;
use rayon::prelude::*;

/// The standard luminance table (ITU T.81, Annex K), natural order.
const LUMA: [f32; 64] = [
    16., 11., 10., 16., 24., 40., 51., 61., 12., 12., 14., 19., 26., 58., 60., 55., 14., 13., 16.,
    24., 40., 57., 69., 56., 14., 17., 22., 29., 51., 87., 80., 62., 18., 22., 37., 56., 68., 109.,
    103., 77., 24., 35., 55., 64., 81., 104., 113., 92., 49., 64., 78., 87., 103., 121., 120.,
    101., 72., 92., 95., 98., 112., 100., 103., 99.,
];

/// The standard chrominance table.
const CHROMA: [f32; 64] = [
    17., 18., 24., 47., 99., 99., 99., 99., 18., 21., 26., 66., 99., 99., 99., 99., 24., 26., 56.,
    99., 99., 99., 99., 99., 47., 66., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99.,
    99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99., 99.,
    99., 99., 99., 99., 99., 99., 99.,
];

/// Replaces `img`'s colours with what a JPEG of `quality` (1–100) would decode to. Alpha is kept.
pub(super) fn jpeg_like(img: &mut RgbaImage, quality: u8) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut y = vec![0.0f32; w * h];
    let mut cb = vec![0.0f32; w * h];
    let mut cr = vec![0.0f32; w * h];
    for (i, p) in img.pixels().enumerate() {
        let [r, g, b] = [p.0[0], p.0[1], p.0[2]].map(f32::from);
        y[i] = 0.299 * r + 0.587 * g + 0.114 * b - 128.0;
        cb[i] = -0.168_736 * r - 0.331_264 * g + 0.5 * b;
        cr[i] = 0.5 * r - 0.418_688 * g - 0.081_312 * b;
    }
    let cw = w.div_ceil(2);
    let mut cb_half = halve(&cb, w, h);
    let mut cr_half = halve(&cr, w, h);
    quantise_plane(&mut y, w, &scaled(&LUMA, quality));
    let chroma = scaled(&CHROMA, quality);
    quantise_plane(&mut cb_half, cw, &chroma);
    quantise_plane(&mut cr_half, cw, &chroma);
    for (i, p) in img.pixels_mut().enumerate() {
        let (x, row) = (i % w, i / w);
        let j = (row / 2) * cw + x / 2;
        let (l, u, v) = (y[i] + 128.0, cb_half[j], cr_half[j]);
        let rgb = [
            l + 1.402 * v,
            l - 0.344_136 * u - 0.714_136 * v,
            l + 1.772 * u,
        ];
        for (o, c) in p.0.iter_mut().zip(rgb) {
            *o = (c + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
}

/// The IJG quality scaling of a table.
fn scaled(table: &[f32; 64], quality: u8) -> [f32; 64] {
    let q = f32::from(quality.clamp(1, 100));
    let scale = if q < 50.0 {
        5000.0 / q
    } else {
        200.0 - 2.0 * q
    };
    table.map(|t| ((t * scale + 50.0) / 100.0).floor().clamp(1.0, 255.0))
}

/// 2×2 box average (4:2:0 subsampling), edge pixels repeated for odd sizes.
fn halve(plane: &[f32], w: usize, h: usize) -> Vec<f32> {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let at = |x: usize, y: usize| plane[y.min(h - 1) * w + x.min(w - 1)];
    (0..cw * ch)
        .map(|i| {
            let (x, y) = (2 * (i % cw), 2 * (i / cw));
            (at(x, y) + at(x + 1, y) + at(x, y + 1) + at(x + 1, y + 1)) * 0.25
        })
        .collect()
}

/// The orthonormal 8-point DCT-II basis: `BASIS[u][x]`. Its 2-D form has JPEG's scaling, so the
/// standard tables apply as they are.
fn basis() -> [[f32; 8]; 8] {
    let mut m = [[0.0f32; 8]; 8];
    for (u, row) in m.iter_mut().enumerate() {
        let c = if u == 0 { (1.0f32 / 8.0).sqrt() } else { 0.5 };
        for (x, v) in row.iter_mut().enumerate() {
            let angle = (2 * x + 1) as f32 * u as f32 * std::f32::consts::PI / 16.0;
            *v = c * angle.cos();
        }
    }
    m
}

/// Quantises every 8×8 block of a plane in place; bands of eight rows run in parallel. Blocks
/// overhanging the edge repeat the last row and column, as encoders pad.
fn quantise_plane(plane: &mut [f32], w: usize, table: &[f32; 64]) {
    let m = basis();
    plane.par_chunks_mut(8 * w).for_each(|band| {
        let rows = band.len() / w;
        for bx in (0..w).step_by(8) {
            let mut block = [[0.0f32; 8]; 8];
            for (y, row) in block.iter_mut().enumerate() {
                for (x, v) in row.iter_mut().enumerate() {
                    *v = band[y.min(rows - 1) * w + (bx + x).min(w - 1)];
                }
            }
            let coeffs = transform(&m, &block, false);
            let mut q = [[0.0f32; 8]; 8];
            for (k, t) in table.iter().enumerate() {
                q[k / 8][k % 8] = (coeffs[k / 8][k % 8] / t).round() * t;
            }
            let back = transform(&m, &q, true);
            for (y, row) in back.iter().enumerate().take(rows) {
                for (x, v) in row.iter().enumerate().take(w - bx) {
                    band[y * w + bx + x] = *v;
                }
            }
        }
    });
}

/// `M·B·Mᵀ` (forward) or `Mᵀ·B·M` (inverse).
fn transform(m: &[[f32; 8]; 8], b: &[[f32; 8]; 8], inverse: bool) -> [[f32; 8]; 8] {
    let at = |i: usize, j: usize| if inverse { m[j][i] } else { m[i][j] };
    let tmp: [[f32; 8]; 8] =
        std::array::from_fn(|i| std::array::from_fn(|j| (0..8).map(|k| at(i, k) * b[k][j]).sum()));
    std::array::from_fn(|i| std::array::from_fn(|j| (0..8).map(|k| tmp[i][k] * at(j, k)).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    fn edge(w: u32, h: u32) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, y| {
            if x * 3 + y > w * 2 {
                Rgba([200, 40, 30, 255])
            } else {
                Rgba([230, 228, 225, 255])
            }
        })
    }

    fn max_diff(a: &RgbaImage, b: &RgbaImage) -> u8 {
        a.pixels()
            .zip(b.pixels())
            .flat_map(|(p, q)| (0..4).map(move |k| p.0[k].abs_diff(q.0[k])))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn flat_stays_flat_and_edges_ring() {
        let flat = RgbaImage::from_pixel(21, 13, Rgba([120, 130, 140, 255]));
        let mut f = flat.clone();
        jpeg_like(&mut f, 60);
        assert!(max_diff(&flat, &f) <= 2, "{}", max_diff(&flat, &f));
        let original = edge(37, 29);
        let mut low = original.clone();
        jpeg_like(&mut low, 50);
        let mut high = original.clone();
        jpeg_like(&mut high, 98);
        assert!(
            max_diff(&original, &low) > 10,
            "quality 50 leaves artefacts"
        );
        assert!(max_diff(&original, &high) < max_diff(&original, &low));
        assert!(low.pixels().all(|p| p.0[3] == 255));
        let mut again = original.clone();
        jpeg_like(&mut again, 50);
        assert_eq!(again, low, "deterministic");
    }
}
