//! Filling a masked region from its surroundings: the local `inpaint` and `erase` with a mask
//! file, and putting a model's answer back only where the mask says.
//!
//! The fill is push-pull (a pyramid of averages of the known pixels, pulled back down with
//! bilinear upsampling): every masked pixel becomes a smooth blend of the colours around the
//! region, nearer ones weighing more. It reinvents no texture, so it suits small regions on plain
//! or smoothly shaded backdrops (a dust spot, a price sticker on a sweep, a stray hair) and
//! leaves a smooth smudge on textured ones (the `large-fill` check flags big regions so
//! `escalate:` can send them to a model). Pure and synchronous; pixels outside the mask are
//! kept bit for bit.

use image::{GrayImage, RgbaImage, imageops};

/// Mask values at or above this mark a pixel to change.
const CHANGE: u8 = 128;

/// The mask at `w`×`h` (resampled when the file's size differs).
pub fn mask_at(mask: &GrayImage, w: u32, h: u32) -> GrayImage {
    if mask.dimensions() == (w, h) {
        mask.clone()
    } else {
        imageops::resize(mask, w, h, imageops::FilterType::Triangle)
    }
}

/// The share of the image the mask marks for change.
pub fn changed_fraction(mask: &GrayImage) -> f64 {
    let n = mask.pixels().filter(|p| p.0[0] >= CHANGE).count();
    n as f64 / (mask.width() as f64 * mask.height() as f64).max(1.0)
}

/// `image` with every pixel the mask marks filled from the unmarked ones around it; the mask's
/// grey edge values blend the fill with the original.
pub fn fill(image: &RgbaImage, mask: &GrayImage) -> RgbaImage {
    let (w, h) = image.dimensions();
    let mask = mask_at(mask, w, h);
    if w == 0 || h == 0 {
        return image.clone();
    }
    // Level 0: premultiplied sums of the known pixels and their weights.
    let mut levels = vec![Level::from_image(image, &mask)];
    while levels.last().is_some_and(|l| l.w > 1 || l.h > 1) {
        let next = levels.last().expect("non-empty").down();
        levels.push(next);
    }
    // Pull: the coarsest level's average, then each finer level's known part plus what it lacks
    // from the level above, bilinearly upsampled.
    let top = levels.pop().expect("at least one level");
    let mut colour = top.normalised();
    while let Some(level) = levels.pop() {
        colour = level.pulled(&colour);
    }
    let filled = colour.to_image();
    blend(image, &filled, &mask)
}

/// `original` outside the mask, `changed` inside it, mixed by the mask's value on its edge.
pub fn blend(original: &RgbaImage, changed: &RgbaImage, mask: &GrayImage) -> RgbaImage {
    let (w, h) = original.dimensions();
    let mask = mask_at(mask, w, h);
    let changed = if changed.dimensions() == (w, h) {
        changed.clone()
    } else {
        imageops::resize(changed, w, h, imageops::FilterType::CatmullRom)
    };
    RgbaImage::from_fn(w, h, |x, y| {
        let a = u32::from(mask.get_pixel(x, y).0[0]);
        let (o, c) = (original.get_pixel(x, y).0, changed.get_pixel(x, y).0);
        match a {
            0 => image::Rgba(o),
            255 => image::Rgba(c),
            a => image::Rgba(std::array::from_fn(|k| {
                ((u32::from(o[k]) * (255 - a) + u32::from(c[k]) * a + 127) / 255) as u8
            })),
        }
    })
}

/// One pyramid level: premultiplied colour sums (RGBA) and weights, each weight at most 1.
struct Level {
    w: u32,
    h: u32,
    sum: Vec<[f32; 4]>,
    weight: Vec<f32>,
}

impl Level {
    fn from_image(image: &RgbaImage, mask: &GrayImage) -> Level {
        let (w, h) = image.dimensions();
        let mut sum = Vec::with_capacity((w * h) as usize);
        let mut weight = Vec::with_capacity((w * h) as usize);
        for (p, m) in image.pixels().zip(mask.pixels()) {
            let known = if m.0[0] >= CHANGE { 0.0 } else { 1.0 };
            sum.push(p.0.map(|c| f32::from(c) * known));
            weight.push(known);
        }
        Level { w, h, sum, weight }
    }

    /// Half the size: each pixel sums its 2×2 children, then is scaled so its weight is at
    /// most 1 (an average where enough is known).
    fn down(&self) -> Level {
        let (w, h) = (self.w.div_ceil(2), self.h.div_ceil(2));
        let mut sum = vec![[0f32; 4]; (w * h) as usize];
        let mut weight = vec![0f32; (w * h) as usize];
        for y in 0..self.h {
            for x in 0..self.w {
                let (i, j) = ((y * self.w + x) as usize, ((y / 2) * w + x / 2) as usize);
                for (acc, v) in sum[j].iter_mut().zip(self.sum[i]) {
                    *acc += v;
                }
                weight[j] += self.weight[i];
            }
        }
        for (s, wt) in sum.iter_mut().zip(weight.iter_mut()) {
            if *wt > 1.0 {
                let f = 1.0 / *wt;
                s.iter_mut().for_each(|v| *v *= f);
                *wt = 1.0;
            }
        }
        Level { w, h, sum, weight }
    }

    /// Colours where anything is known (grey where nothing is: an all-masked image).
    fn normalised(&self) -> Colour {
        let px = self
            .sum
            .iter()
            .zip(&self.weight)
            .map(|(s, &wt)| {
                if wt > 0.0 {
                    s.map(|v| v / wt)
                } else {
                    [128.0, 128.0, 128.0, 255.0]
                }
            })
            .collect();
        Colour {
            w: self.w,
            h: self.h,
            px,
        }
    }

    /// This level completed from `coarse` (the level above, complete).
    fn pulled(&self, coarse: &Colour) -> Colour {
        let mut px = Vec::with_capacity(self.sum.len());
        for y in 0..self.h {
            for x in 0..self.w {
                let i = (y * self.w + x) as usize;
                let wt = self.weight[i];
                let up = coarse.sample((x as f32 + 0.5) / 2.0 - 0.5, (y as f32 + 0.5) / 2.0 - 0.5);
                px.push(std::array::from_fn(|k| self.sum[i][k] + (1.0 - wt) * up[k]));
            }
        }
        Colour {
            w: self.w,
            h: self.h,
            px,
        }
    }
}

/// A complete colour image in floats.
struct Colour {
    w: u32,
    h: u32,
    px: Vec<[f32; 4]>,
}

impl Colour {
    /// Bilinear sample at (`x`, `y`), clamped to the edges.
    fn sample(&self, x: f32, y: f32) -> [f32; 4] {
        let cx = |v: f32| v.clamp(0.0, (self.w - 1) as f32);
        let cy = |v: f32| v.clamp(0.0, (self.h - 1) as f32);
        let (x, y) = (cx(x), cy(y));
        let (x0, y0) = (x.floor() as u32, y.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let at = |x: u32, y: u32| self.px[(y * self.w + x) as usize];
        let (a, b, c, d) = (at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1));
        std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = c[k] + (d[k] - c[k]) * fx;
            top + (bottom - top) * fy
        })
    }

    fn to_image(&self) -> RgbaImage {
        RgbaImage::from_fn(self.w, self.h, |x, y| {
            let p = self.px[(y * self.w + x) as usize];
            image::Rgba(p.map(|v| v.round().clamp(0.0, 255.0) as u8))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgba};

    #[test]
    fn a_sticker_on_a_gradient_sweep_disappears_and_nothing_else_changes() {
        // A vertical light-grey gradient (a sweep) with a red sticker in the middle.
        let sweep = |y: u32| (200 + y / 4) as u8;
        let mut img =
            RgbaImage::from_fn(160, 120, |_, y| Rgba([sweep(y), sweep(y), sweep(y), 255]));
        for y in 50..70 {
            for x in 70..95 {
                img.put_pixel(x, y, Rgba([220, 30, 30, 255]));
            }
        }
        let mask = GrayImage::from_fn(160, 120, |x, y| {
            Luma([if (68..97).contains(&x) && (48..72).contains(&y) {
                255
            } else {
                0
            }])
        });
        let out = fill(&img, &mask);
        // Outside the mask: bit for bit.
        for (x, y, p) in out.enumerate_pixels() {
            if mask.get_pixel(x, y).0[0] == 0 {
                assert_eq!(p, img.get_pixel(x, y));
            }
        }
        // Inside: the sweep continues (within 3 levels of the true gradient), no red left.
        for y in 48..72 {
            for x in 68..97 {
                let p = out.get_pixel(x, y).0;
                let want = f32::from(sweep(y));
                for k in 0..3 {
                    assert!(
                        (f32::from(p[k]) - want).abs() <= 3.0,
                        "{x},{y}: {p:?} vs {want}"
                    );
                }
            }
        }
        assert!((changed_fraction(&mask) - 29.0 * 24.0 / (160.0 * 120.0)).abs() < 1e-9);
    }

    #[test]
    fn blending_keeps_the_original_outside_and_mixes_the_edge() {
        let a = RgbaImage::from_pixel(4, 1, Rgba([0, 0, 0, 255]));
        let b = RgbaImage::from_pixel(4, 1, Rgba([200, 200, 200, 255]));
        let mask = GrayImage::from_raw(4, 1, vec![0, 51, 255, 255]).unwrap();
        let out = blend(&a, &b, &mask);
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0, 255]);
        assert_eq!(out.get_pixel(1, 0).0[0], 40);
        assert_eq!(out.get_pixel(3, 0).0, [200, 200, 200, 255]);
        // An all-masked image has nothing to fill from: it comes back grey, never panics.
        let all = GrayImage::from_pixel(3, 3, Luma([255]));
        assert_eq!(
            fill(&a, &GrayImage::from_pixel(4, 1, Luma([255]))).width(),
            4
        );
        assert_eq!(fill(&RgbaImage::new(3, 3), &all).get_pixel(1, 1).0[0], 128);
    }
}
