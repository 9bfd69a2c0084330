//! Float-plane helpers shared by the operations: a single-channel `Plane`, separable box and
//! Gaussian blurs, and min/max (erode/dilate) filters. Row work is spread over rayon.

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

    /// Transposed copy (so vertical passes can reuse the horizontal code).
    fn transpose(&self) -> Plane {
        let mut out = Plane::new(self.h, self.w, 0.0);
        out.data
            .par_chunks_mut(self.h.max(1))
            .enumerate()
            .for_each(|(x, col)| {
                for (y, v) in col.iter_mut().enumerate() {
                    *v = self.data[y * self.w + x];
                }
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
        self.separable(|i, o| kernel_row(i, o, &k))
    }

    /// Minimum over a `(2r+1)²` square (erosion of a mask).
    pub fn min_filter(&self, r: usize) -> Plane {
        self.separable(move |i, o| extreme_row(i, o, r, f32::min))
    }

    /// Maximum over a `(2r+1)²` square (dilation of a mask).
    pub fn max_filter(&self, r: usize) -> Plane {
        self.separable(move |i, o| extreme_row(i, o, r, f32::max))
    }
}

fn box_row(i: &[f32], o: &mut [f32], r: usize) {
    let n = i.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    for &v in i {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + v as f64);
    }
    for (x, v) in o.iter_mut().enumerate() {
        let (a, b) = (x.saturating_sub(r), (x + r + 1).min(n));
        *v = ((prefix[b] - prefix[a]) / (b - a) as f64) as f32;
    }
}

fn kernel_row(i: &[f32], o: &mut [f32], k: &[f32]) {
    let n = i.len() as isize;
    let r = k.len() as isize - 1;
    for (x, v) in o.iter_mut().enumerate() {
        let (mut s, mut wsum) = (0.0, 0.0);
        for d in -r..=r {
            let xx = x as isize + d;
            if (0..n).contains(&xx) {
                let w = k[d.unsigned_abs()];
                s += i[xx as usize] * w;
                wsum += w;
            }
        }
        *v = s / wsum;
    }
}

fn extreme_row(i: &[f32], o: &mut [f32], r: usize, f: fn(f32, f32) -> f32) {
    let n = i.len();
    for (x, v) in o.iter_mut().enumerate() {
        let (a, b) = (x.saturating_sub(r), (x + r + 1).min(n));
        *v = i[a..b].iter().copied().fold(i[a], f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
