//! Float-plane helpers shared by the operations: a single-channel `Plane`, separable box and
//! Gaussian blurs, and min/max (erode/dilate) filters. Row work is spread over rayon.
//!
//! Vertical passes work on whole rows (Gaussian, min/max) or on a tiled transpose (box), so a
//! column is never walked pixel by pixel; each output pixel is computed with the same operations
//! in the same order as a plain row pass over the transposed plane would.

use rayon::prelude::*;

/// A single-channel `f32` image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub w: usize,
    pub h: usize,
    pub data: Vec<f32>,
}

impl Plane {
    pub fn new(w: usize, h: usize, v: f32) -> Self {
        Self {
            w,
            h,
            data: vec![v; w * h],
        }
    }

    pub fn from_fn(w: usize, h: usize, f: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        let mut data = vec![0.0; w * h];
        data.par_chunks_mut(w.max(1))
            .enumerate()
            .for_each(|(y, row)| {
                for (x, v) in row.iter_mut().enumerate() {
                    *v = f(x, y);
                }
            });
        Self { w, h, data }
    }

    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }

    /// Transposed copy (so the box blur's vertical pass can reuse the horizontal code), in
    /// tiles of [`TILE`] rows so reads and writes both stay in cache.
    fn transpose(&self) -> Plane {
        let (w, h) = (self.w, self.h);
        let mut out = Plane::new(h, w, 0.0);
        if w == 0 || h == 0 {
            return out;
        }
        // Each task owns TILE output rows (= TILE input columns) and walks the input down in
        // TILE-row steps.
        out.data
            .par_chunks_mut(h * TILE)
            .enumerate()
            .for_each(|(bx, block)| {
                let x0 = bx * TILE;
                let cols = block.len() / h;
                for y0 in (0..h).step_by(TILE) {
                    for y in y0..(y0 + TILE).min(h) {
                        let row = &self.data[y * w + x0..y * w + x0 + cols];
                        for (dx, &v) in row.iter().enumerate() {
                            block[dx * h + y] = v;
                        }
                    }
                }
            });
        out
    }

    /// `f(rows, out_row)` for every output row, where `rows` are the input rows `a..b` of the
    /// vertical window of radius `r` around it (clamped to the plane).
    fn map_windows(&self, r: usize, f: impl Fn(&[f32], usize, &mut [f32]) + Sync) -> Plane {
        let (w, h) = (self.w, self.h);
        let mut out = Plane::new(w, h, 0.0);
        if w == 0 {
            return out;
        }
        out.data.par_chunks_mut(w).enumerate().for_each(|(y, o)| {
            let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
            f(&self.data[a * w..b * w], y - a, o);
        });
        out
    }

    fn map_rows(&self, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Plane {
        let mut out = Plane::new(self.w, self.h, 0.0);
        out.data
            .par_chunks_mut(self.w.max(1))
            .zip(self.data.par_chunks(self.w.max(1)))
            .for_each(|(o, i)| f(i, o));
        out
    }

    fn separable(&self, f: impl Fn(&[f32], &mut [f32]) + Sync + Copy) -> Plane {
        self.map_rows(f).transpose().map_rows(f).transpose()
    }

    /// Mean over a `(2r+1)²` window, edges clamped (renormalised).
    pub fn box_blur(&self, r: usize) -> Plane {
        self.separable(move |i, o| box_row(i, o, r))
    }

    /// Gaussian blur with standard deviation `sigma` pixels.
    pub fn gaussian(&self, sigma: f32) -> Plane {
        let r = (sigma * 3.0).ceil().max(1.0) as usize;
        let k: Vec<f32> = (0..=r)
            .map(|d| (-(d as f32).powi(2) / (2.0 * sigma * sigma)).exp())
            .collect();
        let w = self.w;
        self.map_rows(|i, o| kernel_row(i, o, &k))
            .map_windows(r, |rows, at, o| {
                // `kernel_row` down each column: taps in the same order, summed the same way.
                let mut wsum = 0.0;
                for (j, row) in rows.chunks_exact(w).enumerate() {
                    let tap = k[j.abs_diff(at)];
                    for (v, &x) in o.iter_mut().zip(row) {
                        *v += x * tap;
                    }
                    wsum += tap;
                }
                for v in o.iter_mut() {
                    *v /= wsum;
                }
            })
    }

    /// Minimum over a `(2r+1)²` square (erosion of a mask).
    pub fn min_filter(&self, r: usize) -> Plane {
        self.extreme(r, f32::min)
    }

    /// Maximum over a `(2r+1)²` square (dilation of a mask).
    pub fn max_filter(&self, r: usize) -> Plane {
        self.extreme(r, f32::max)
    }

    fn extreme(&self, r: usize, f: impl Fn(f32, f32) -> f32 + Sync + Copy) -> Plane {
        let w = self.w;
        self.map_rows(move |i, o| extreme_row(i, o, r, f))
            .map_windows(r, move |rows, _, o| {
                let mut rows = rows.chunks_exact(w);
                if let Some(first) = rows.next() {
                    o.copy_from_slice(first);
                }
                for row in rows {
                    for (v, &x) in o.iter_mut().zip(row) {
                        *v = f(*v, x);
                    }
                }
            })
    }
}

/// Which pixels have a pixel of `mask` equal to `value` within `r` (Chebyshev distance; the
/// square window clamped to the image, as [`Plane::max_filter`] of a 0/1 plane, on bytes).
pub fn any_within(w: usize, h: usize, mask: &[bool], value: bool, r: usize) -> Vec<bool> {
    let mut across = vec![false; w * h];
    across
        .par_chunks_mut(w.max(1))
        .zip(mask.par_chunks(w.max(1)))
        .for_each(|(o, row)| {
            // Distance to the last set pixel on the left, then on the right.
            let mut since = usize::MAX;
            for (v, &s) in o.iter_mut().zip(row) {
                since = if s == value {
                    0
                } else {
                    since.saturating_add(1)
                };
                *v = since <= r;
            }
            since = usize::MAX;
            for (v, &s) in o.iter_mut().zip(row).rev() {
                since = if s == value {
                    0
                } else {
                    since.saturating_add(1)
                };
                *v |= since <= r;
            }
        });
    // Down the columns the same way, a row at a time: rows since the last row with the pixel
    // set, from above, then from below.
    let mut out = vec![false; w * h];
    let mut since = vec![u32::MAX; w];
    for (o, row) in out
        .chunks_exact_mut(w.max(1))
        .zip(across.chunks_exact(w.max(1)))
    {
        for ((v, s), &a) in o.iter_mut().zip(since.iter_mut()).zip(row) {
            *s = if a { 0 } else { s.saturating_add(1) };
            *v = *s as usize <= r;
        }
    }
    since.fill(u32::MAX);
    for (o, row) in out
        .chunks_exact_mut(w.max(1))
        .zip(across.chunks_exact(w.max(1)))
        .rev()
    {
        for ((v, s), &a) in o.iter_mut().zip(since.iter_mut()).zip(row) {
            *s = if a { 0 } else { s.saturating_add(1) };
            *v |= *s as usize <= r;
        }
    }
    out
}

/// Rows (input columns) per tile of [`Plane::transpose`].
const TILE: usize = 32;

/// Means over `(2r+1)`-wide windows of one row (edges clamped, renormalised), summed in `f64`.
fn box_row(i: &[f32], o: &mut [f32], r: usize) {
    let mut prefix = vec![[0.0f64]; i.len() + 1];
    box_rows(i.as_chunks::<1>().0, &mut prefix, o, r);
}

/// [`box_row`] of each of the `CH` channels of `input`, into `out` as `CH` rows of
/// `input.len()`, the channels side by side (independent sums in flight together; per channel
/// the same operations in the same order); `prefix` is scratch of `input.len() + 1`.
pub(super) fn box_rows<const CH: usize>(
    input: &[[f32; CH]],
    prefix: &mut [[f64; CH]],
    out: &mut [f32],
    r: usize,
) {
    let n = input.len();
    prefix[0] = [0.0; CH];
    for (x, v) in input.iter().enumerate() {
        let before = prefix[x];
        prefix[x + 1] = std::array::from_fn(|k| before[k] + v[k] as f64);
    }
    for x in 0..n {
        let (a, b) = (x.saturating_sub(r), (x + r + 1).min(n));
        let count = (b - a) as f64;
        for k in 0..CH {
            out[k * n + x] = ((prefix[b][k] - prefix[a][k]) / count) as f32;
        }
    }
}

fn kernel_row(i: &[f32], o: &mut [f32], k: &[f32]) {
    let n = i.len();
    let r = k.len() - 1;
    // The weight of a full window, summed in the order the taps are taken.
    let full = (0..=2 * r).fold(0.0, |s, j| s + k[j.abs_diff(r)]);
    for (x, v) in o.iter_mut().enumerate() {
        if x >= r && x + r < n {
            let mut s = 0.0;
            for (j, &p) in i[x - r..=x + r].iter().enumerate() {
                s += p * k[j.abs_diff(r)];
            }
            *v = s / full;
            continue;
        }
        let (mut s, mut wsum) = (0.0, 0.0);
        for xx in x.saturating_sub(r)..(x + r + 1).min(n) {
            let w = k[xx.abs_diff(x)];
            s += i[xx] * w;
            wsum += w;
        }
        *v = s / wsum;
    }
}

fn extreme_row(i: &[f32], o: &mut [f32], r: usize, f: impl Fn(f32, f32) -> f32 + Copy) {
    let n = i.len();
    for (x, v) in o.iter_mut().enumerate() {
        let (a, b) = (x.saturating_sub(r), (x + r + 1).min(n));
        *v = i[a..b].iter().copied().fold(i[a], f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boolean dilation is the min/max filter of a 0/1 plane, window clamping included.
    #[test]
    fn any_within_is_the_max_filter_of_a_mask() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for (w, h) in [(1, 1), (1, 12), (12, 1), (33, 17)] {
            let mask: Vec<bool> = (0..w * h)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.is_multiple_of(9)
                })
                .collect();
            let plane = Plane::from_fn(w, h, |x, y| f32::from(u8::from(mask[y * w + x])));
            for r in [0, 1, 2, 5] {
                let grown: Vec<bool> = plane.max_filter(r).data.iter().map(|&v| v > 0.5).collect();
                assert_eq!(any_within(w, h, &mask, true, r), grown, "{w}x{h} r {r}");
                let shrunk: Vec<bool> = plane.min_filter(r).data.iter().map(|&v| v < 0.5).collect();
                assert_eq!(any_within(w, h, &mask, false, r), shrunk, "{w}x{h} r {r}");
            }
        }
    }

    #[test]
    fn blurs_preserve_constants_and_morphology_grows() {
        let p = Plane::new(7, 5, 3.0);
        assert!(p.box_blur(2).data.iter().all(|v| (v - 3.0).abs() < 1e-5));
        assert!(p.gaussian(1.5).data.iter().all(|v| (v - 3.0).abs() < 1e-5));
        let dot = Plane::from_fn(9, 9, |x, y| if x == 4 && y == 4 { 1.0 } else { 0.0 });
        let grown = dot.max_filter(1);
        assert_eq!(grown.data.iter().filter(|v| **v == 1.0).count(), 9);
        assert_eq!(
            grown
                .min_filter(1)
                .data
                .iter()
                .filter(|v| **v == 1.0)
                .count(),
            1
        );
        assert!((dot.box_blur(1).at(3, 3) - 1.0 / 9.0).abs() < 1e-6);
    }

    /// The separable filters as they were first written: a row pass, a pixel-by-pixel transpose,
    /// the row pass again, transposed back.
    fn reference(p: &Plane, f: impl Fn(&[f32], &mut [f32])) -> Plane {
        let rows = |p: &Plane| {
            let mut out = Plane::new(p.w, p.h, 0.0);
            for (o, i) in out.data.chunks_mut(p.w).zip(p.data.chunks(p.w)) {
                f(i, o);
            }
            out
        };
        let transpose = |p: &Plane| Plane::from_fn(p.h, p.w, |x, y| p.at(y, x));
        transpose(&rows(&transpose(&rows(p))))
    }

    fn naive_kernel_row(i: &[f32], o: &mut [f32], k: &[f32]) {
        let r = k.len() as isize - 1;
        for (x, v) in o.iter_mut().enumerate() {
            let (mut s, mut wsum) = (0.0, 0.0);
            for d in -r..=r {
                let xx = x as isize + d;
                if (0..i.len() as isize).contains(&xx) {
                    s += i[xx as usize] * k[d.unsigned_abs()];
                    wsum += k[d.unsigned_abs()];
                }
            }
            *v = s / wsum;
        }
    }

    #[test]
    fn row_wise_vertical_passes_give_the_reference_bit_for_bit() {
        // Sizes around the transpose's tile, narrower and wider than the windows.
        for (w, h) in [(1, 1), (3, 70), (33, 31), (65, 40), (97, 5)] {
            let p = Plane::from_fn(w, h, |x, y| {
                ((x * 7919 + y * 104_729 + w * 131 + h) % 1000) as f32 / 997.0
            });
            let sigma = 0.7f32;
            let r = (sigma * 3.0).ceil() as usize;
            let k: Vec<f32> = (0..=r)
                .map(|d| (-(d as f32).powi(2) / (2.0 * sigma * sigma)).exp())
                .collect();
            assert_eq!(
                p.gaussian(sigma),
                reference(&p, |i, o| naive_kernel_row(i, o, &k))
            );
            for r in [1, 2, 5] {
                assert_eq!(p.box_blur(r), reference(&p, |i, o| box_row(i, o, r)));
                assert_eq!(
                    p.min_filter(r),
                    reference(&p, |i, o| extreme_row(i, o, r, f32::min))
                );
                assert_eq!(
                    p.max_filter(r),
                    reference(&p, |i, o| extreme_row(i, o, r, f32::max))
                );
            }
        }
    }
}
