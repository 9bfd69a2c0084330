//! A spatial model of a studio backdrop fitted to the image border: per linear-RGB channel, a
//! quadratic surface in (x, y), fitted by iteratively trimmed least squares so a product that
//! touches the frame does not bend it. Captures flat sweeps, gradients and vignettes; also
//! reports the backdrop's noise level so distances can be normalised.

use super::colour::decode;
use image::RgbaImage;

const TERMS: usize = 6;

/// Fitted backdrop colour surface (linear RGB).
#[derive(Debug, Clone)]
pub struct BackdropModel {
    coef: [[f64; TERMS]; 3],
    w: f32,
    h: f32,
    /// Robust relative noise of border pixels around the fit (e.g. 0.01 = 1 %).
    pub noise: f32,
    /// Fraction of border samples that agreed with the final fit.
    pub inliers: f32,
}

impl BackdropModel {
    /// Fits the model to a band along the border. `None` if the image is too small or the
    /// border has no opaque pixels.
    pub fn fit(img: &RgbaImage) -> Option<Self> {
        let (w, h) = img.dimensions();
        if w < 8 || h < 8 {
            return None;
        }
        let samples = border_samples(img);
        if samples.len() < 3 * TERMS {
            return None;
        }
        let (wf, hf) = (w as f32, h as f32);
        let mut keep = vec![true; samples.len()];
        let mut model = Self {
            coef: [[0.0; TERMS]; 3],
            w: wf,
            h: hf,
            noise: 0.01,
            inliers: 1.0,
        };
        for round in 0..4 {
            model.coef = solve_all(&samples, &keep, wf, hf)?;
            let resid: Vec<f32> = samples.iter().map(|s| model.relative_residual(s)).collect();
            let mut sorted: Vec<f32> = resid
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(r, _)| *r)
                .collect();
            sorted.sort_by(f32::total_cmp);
            let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
            model.noise = (median * 1.4826).max(0.004);
            let cut = if round == 0 {
                median * 4.0 + 0.02
            } else {
                model.noise * 4.0 + 0.01
            };
            keep = resid.iter().map(|r| *r <= cut).collect();
        }
        model.inliers = keep.iter().filter(|k| **k).count() as f32 / keep.len() as f32;
        Some(model)
    }

    /// The modelled backdrop colour at pixel centre `(x, y)`, linear RGB. Capped at 1: an
    /// over-exposed backdrop clips in the sensor, so the surface must too.
    pub fn at(&self, x: f32, y: f32) -> [f32; 3] {
        let t = terms(x, y, self.w, self.h);
        self.coef.map(|c| {
            c.iter()
                .zip(&t)
                .map(|(a, b)| a * b)
                .sum::<f64>()
                .clamp(1e-4, 1.0) as f32
        })
    }

    /// The brightest modelled backdrop colour inside the frame (by luminance).
    pub fn brightest(&self) -> [f32; 3] {
        let mut best = self.at(0.0, 0.0);
        for j in 0..=16 {
            for i in 0..=16 {
                let c = self.at(self.w * i as f32 / 16.0, self.h * j as f32 / 16.0);
                if super::colour::luminance(c) > super::colour::luminance(best) {
                    best = c;
                }
            }
        }
        best
    }

    /// How textured the backdrop is, from the means of 8×8 blocks along the border band
    /// (averaging removes sensor noise and most JPEG noise, not texture): the smaller of the
    /// median relative difference between neighbouring blocks (which a steep vignette raises)
    /// and the median relative difference from the fitted surface (which a gradient the
    /// surface does not quite follow raises). A plain sweep, gradient or vignette scores under
    /// 0.006; wood, fabric and concrete mostly 0.01–0.07 (measured on the generated sets,
    /// BENCHMARKS.md).
    pub fn texture(&self, img: &RgbaImage) -> f32 {
        const B: u32 = 8;
        let (w, h) = img.dimensions();
        let (cols, rows) = (w / B, h / B);
        if cols < 3 || rows < 3 {
            return 0.0;
        }
        let band = ((cols.min(rows) as f32 * 0.08).ceil() as u32).max(1);
        let in_band = |c: u32, r: u32| c < band || r < band || c >= cols - band || r >= rows - band;
        let mut means = vec![f32::NAN; (cols * rows) as usize];
        for r in 0..rows {
            for c in (0..cols).filter(|&c| in_band(c, r)) {
                let mut sum = 0.0f32;
                for y in r * B..(r + 1) * B {
                    for x in c * B..(c + 1) * B {
                        let p = img.get_pixel(x, y).0;
                        sum += super::colour::luminance([decode(p[0]), decode(p[1]), decode(p[2])]);
                    }
                }
                means[(r * cols + c) as usize] = sum / (B * B) as f32;
            }
        }
        let mut misfit = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                let m = means[(r * cols + c) as usize];
                if !m.is_nan() {
                    let centre = (((c * B) + B / 2) as f32, ((r * B) + B / 2) as f32);
                    let model = super::colour::luminance(self.at(centre.0, centre.1)).max(1e-3);
                    misfit.push((m - model).abs() / model);
                }
            }
        }
        let mut diffs = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                let m = means[(r * cols + c) as usize];
                for (nc, nr) in [(c + 1, r), (c, r + 1)] {
                    if nc < cols && nr < rows && !m.is_nan() {
                        let n = means[(nr * cols + nc) as usize];
                        if !n.is_nan() {
                            diffs.push((m - n).abs() / m.max(n).max(1e-3));
                        }
                    }
                }
            }
        }
        median(&mut diffs).min(median(&mut misfit))
    }

    fn relative_residual(&self, s: &Sample) -> f32 {
        let m = self.at(s.x, s.y);
        (0..3)
            .map(|k| ((s.c[k] - m[k]) / (m[k] + 0.02)).abs())
            .fold(0.0, f32::max)
    }
}

/// The median (0 when empty).
fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}

struct Sample {
    x: f32,
    y: f32,
    c: [f32; 3],
}

fn border_samples(img: &RgbaImage) -> Vec<Sample> {
    let (w, h) = img.dimensions();
    let band = (w.min(h) / 40).clamp(2, 24);
    let stride = ((2 * (w + h) * band) / 6000).max(1);
    let mut out = Vec::new();
    let mut i = 0u32;
    for y in 0..h {
        let full = y < band || y >= h - band;
        let xs: Box<dyn Iterator<Item = u32>> = if full {
            Box::new(0..w)
        } else {
            Box::new((0..band).chain(w - band..w))
        };
        for x in xs {
            i += 1;
            if !i.is_multiple_of(stride) {
                continue;
            }
            let p = img.get_pixel(x, y).0;
            if p[3] > 0 {
                out.push(Sample {
                    x: x as f32 + 0.5,
                    y: y as f32 + 0.5,
                    c: [decode(p[0]), decode(p[1]), decode(p[2])],
                });
            }
        }
    }
    out
}

fn terms(x: f32, y: f32, w: f32, h: f32) -> [f64; TERMS] {
    let u = (x / w * 2.0 - 1.0) as f64;
    let v = (y / h * 2.0 - 1.0) as f64;
    [1.0, u, v, u * u, u * v, v * v]
}

fn solve_all(samples: &[Sample], keep: &[bool], w: f32, h: f32) -> Option<[[f64; TERMS]; 3]> {
    let mut ata = [[0.0f64; TERMS]; TERMS];
    let mut atb = [[0.0f64; TERMS]; 3];
    let mut n = 0;
    for (s, _) in samples.iter().zip(keep).filter(|(_, k)| **k) {
        n += 1;
        let t = terms(s.x, s.y, w, h);
        for i in 0..TERMS {
            for j in 0..TERMS {
                ata[i][j] += t[i] * t[j];
            }
            for (acc, c) in atb.iter_mut().zip(s.c) {
                acc[i] += t[i] * c as f64;
            }
        }
    }
    if n < 3 * TERMS {
        return None;
    }
    for (i, row) in ata.iter_mut().enumerate() {
        row[i] += 1e-6 * n as f64; // ridge: keeps the solve stable on thin borders
    }
    Some([
        solve(ata, atb[0])?,
        solve(ata, atb[1])?,
        solve(ata, atb[2])?,
    ])
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: [[f64; TERMS]; TERMS], mut b: [f64; TERMS]) -> Option<[f64; TERMS]> {
    for col in 0..TERMS {
        let piv = (col..TERMS).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..TERMS {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col];
            for (v, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *v -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; TERMS];
    for row in (0..TERMS).rev() {
        let s: f64 = (row + 1..TERMS).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::colour::encode;
    use image::Rgba;

    #[test]
    fn recovers_a_vignette_and_ignores_an_object_on_the_border() {
        let (w, h) = (200u32, 150u32);
        let bg = |x: f32, y: f32| {
            let (u, v) = (x / w as f32 * 2.0 - 1.0, y / h as f32 * 2.0 - 1.0);
            0.8 * (1.0 - 0.2 * (u * u + v * v))
        };
        let img = RgbaImage::from_fn(w, h, |x, y| {
            if (80..120).contains(&x) && y > 100 {
                return Rgba([200, 20, 20, 255]); // product cut by the bottom edge
            }
            let v = encode(bg(x as f32 + 0.5, y as f32 + 0.5));
            Rgba([v, v, v, 255])
        });
        let m = BackdropModel::fit(&img).unwrap();
        let centre = m.at(100.0, 75.0);
        assert!((centre[0] - 0.8).abs() < 0.01, "{centre:?}");
        assert!((m.brightest()[1] - 0.8).abs() < 0.01);
        assert!(m.inliers < 1.0 && m.inliers > 0.8);
    }
}
