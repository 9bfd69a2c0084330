//! Hard product/backdrop segmentation for [`super::remove_bg`]: per-pixel evidence against the
//! fitted [`BackdropModel`] (chroma and brightness ratios normalised by backdrop noise, with
//! darker low-chroma pixels allowed as shadow), sharp luminance edges, hysteresis, and a hole
//! rule: regions cut off from the border become product unless they look like backdrop.

use super::backdrop::BackdropModel;
use super::colour::{decode, luminance};
use super::filter::Plane;
use image::RgbaImage;
use rayon::prelude::*;
use std::collections::VecDeque;

/// Below this luminance ratio to the backdrop a pixel is too dark to be a contact shadow.
const SHADOW_FLOOR: f32 = 0.42;
/// Luminance-ratio gradient (per pixel) that counts as a product edge; shadows are softer.
const EDGE: f32 = 0.07;
/// Radius of the morphological closing applied before the hole rule.
const CLOSE: usize = 2;

/// Evidence below this, with luminance within [`LIKE_RATIO`] of the backdrop's, looks like the
/// backdrop itself (a hole the backdrop shows through, a patch of floor).
pub const LIKE_SCORE: f32 = 0.3;
/// See [`LIKE_SCORE`].
pub const LIKE_RATIO: f32 = 0.04;

/// Per-pixel evidence: `score` ≥ 1 is confidently product; `ratio` is luminance / backdrop.
pub struct Evidence {
    pub score: Plane,
    pub ratio: Plane,
}

impl Evidence {
    /// Which pixels look like the backdrop ([`LIKE_SCORE`], [`LIKE_RATIO`]).
    pub fn backdrop_like(&self) -> Vec<bool> {
        self.score
            .data
            .iter()
            .zip(&self.ratio.data)
            .map(|(&s, &r)| s < LIKE_SCORE && (r - 1.0).abs() < LIKE_RATIO)
            .collect()
    }
}

/// Computes product evidence for every pixel.
pub fn evidence(img: &RgbaImage, model: &BackdropModel) -> Evidence {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let sigma = model.noise;
    let chroma_tol = 4.0 * sigma + 0.035;
    let bright_tol = 4.0 * sigma + 0.03;
    let feats = |x: usize, y: usize| -> (f32, f32) {
        let p = img.get_pixel(x as u32, y as u32).0;
        let c = [decode(p[0]), decode(p[1]), decode(p[2])];
        let b = model.at(x as f32 + 0.5, y as f32 + 0.5);
        let k = luminance(c) / luminance(b).max(1e-4);
        let kk = k.max(0.05);
        let dc = (0..3)
            .map(|i| ((c[i] / b[i]) / kk - 1.0).abs())
            .fold(0.0, f32::max);
        // Chroma in dark pixels is dominated by noise: demand more deviation there.
        let chroma = dc * kk.sqrt().min(1.0) / chroma_tol;
        let bright = (k - 1.0) / bright_tol;
        let dark = (SHADOW_FLOOR + 0.1 - k) / 0.1;
        (chroma.max(bright).max(dark), k)
    };
    let mut score = Plane::new(w, h, 0.0);
    let mut ratio = Plane::new(w, h, 0.0);
    score
        .data
        .par_chunks_mut(w.max(1))
        .zip(ratio.data.par_chunks_mut(w.max(1)))
        .enumerate()
        .for_each(|(y, (s, r))| {
            for (x, (s, r)) in s.iter_mut().zip(r).enumerate() {
                (*s, *r) = feats(x, y);
            }
        });
    Evidence { score, ratio }
}

/// Sobel gradient magnitude (per pixel) of a lightly smoothed plane.
fn gradient(p: &Plane) -> Plane {
    let s = p.gaussian(0.7);
    let (w, h) = (s.w, s.h);
    Plane::from_fn(w, h, |x, y| {
        let at = |dx: isize, dy: isize| {
            let xx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
            let yy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
            s.at(xx, yy)
        };
        let gx = (at(1, -1) + 2.0 * at(1, 0) + at(1, 1) - at(-1, -1) - 2.0 * at(-1, 0) - at(-1, 1))
            / 8.0;
        let gy = (at(-1, 1) + 2.0 * at(0, 1) + at(1, 1) - at(-1, -1) - 2.0 * at(0, -1) - at(1, -1))
            / 8.0;
        (gx * gx + gy * gy).sqrt()
    })
}

/// The hard mask (true = product).
pub fn segment(ev: &Evidence) -> Vec<bool> {
    let (w, h) = (ev.score.w, ev.score.h);
    let grad = gradient(&ev.ratio);
    let strong: Vec<bool> = (0..w * h)
        .map(|i| ev.score.data[i] >= 1.0 || grad.data[i] >= EDGE)
        .collect();
    let weak: Vec<bool> = (0..w * h)
        .map(|i| ev.score.data[i] >= 0.45 || grad.data[i] >= EDGE * 0.5)
        .collect();
    let mut mask = flood(w, h, &strong, &weak);
    remove_small(w, h, &mut mask, true, (w * h / 2000).max(8));
    let m = Plane {
        w,
        h,
        data: mask.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
    };
    // Closing bridges small gaps in a faint outline so its interior counts as enclosed.
    let closed = m.max_filter(CLOSE).min_filter(CLOSE);
    let mut mask: Vec<bool> = closed.data.iter().map(|v| *v > 0.5).collect();
    fill_enclosed(w, h, &mut mask, ev);
    mask
}

/// Grows `seeds` through `allowed` (4-connected).
fn flood(w: usize, h: usize, seeds: &[bool], allowed: &[bool]) -> Vec<bool> {
    let mut out = seeds.to_vec();
    let mut queue: VecDeque<(usize, usize)> = (0..w * h)
        .filter(|&i| seeds[i])
        .map(|i| (i, i % w))
        .collect();
    while let Some((i, x)) = queue.pop_front() {
        for (j, xj) in neighbours(i, x, w, w * h) {
            if !out[j] && allowed[j] {
                out[j] = true;
                queue.push_back((j, xj));
            }
        }
    }
    out
}

/// The 4-connected neighbours of pixel `i` (column `x`) of a `w`-wide image of `len` pixels,
/// with their columns: left, right, up, down.
fn neighbours(i: usize, x: usize, w: usize, len: usize) -> impl Iterator<Item = (usize, usize)> {
    [
        (x > 0).then(|| (i - 1, x - 1)),
        (x + 1 < w).then(|| (i + 1, x + 1)),
        (i >= w).then(|| (i - w, x)),
        (i + w < len).then(|| (i + w, x)),
    ]
    .into_iter()
    .flatten()
}

/// Labels the 4-connected components where `mask[i] == value` 1, 2, … in scan order of their
/// first pixel (0 = the other value) and counts each one's pixels (index 0: none counted).
///
/// By runs instead of pixels: each row's runs of `value` are joined to the runs of the row
/// above that they touch (union-find, the earliest run the root), then labelled in scan order
/// of their roots, which is the order of each component's first pixel: the same labels as the
/// breadth-first walk, written a run at a time.
pub fn component_sizes(w: usize, h: usize, mask: &[bool], value: bool) -> (Vec<u32>, Vec<usize>) {
    // Runs as [start, end) pixel indices, in scan order; `parent` links each to an earlier run
    // of its component.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    let mut above = 0..0;
    for y in 0..h {
        let row = y * w;
        let first = runs.len();
        let mut next_above = above.start;
        let mut x = 0;
        while x < w {
            if mask[row + x] != value {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && mask[row + x] == value {
                x += 1;
            }
            let id = runs.len();
            runs.push((row + start, row + x));
            parent.push(id);
            // Runs above ending at or before `start` touch no later run of this row.
            while next_above < above.end && runs[next_above].1 - (row - w) <= start {
                next_above += 1;
            }
            let mut k = next_above;
            while k < above.end && runs[k].0 - (row - w) < x {
                union(&mut parent, k, id);
                k += 1;
            }
        }
        above = first..runs.len();
    }
    let mut label = vec![0u32; w * h];
    let mut sizes = vec![0];
    let mut run_label = vec![0u32; runs.len()];
    for (r, &(start, end)) in runs.iter().enumerate() {
        // A root comes before the rest of its component: its label is set first.
        let root = find(&mut parent, r);
        if root == r {
            run_label[r] = sizes.len() as u32;
            sizes.push(0);
        }
        let l = run_label[root];
        sizes[l as usize] += end - start;
        label[start..end].fill(l);
    }
    (label, sizes)
}

/// The root of run `r` (the earliest run of its component), halving the path on the way.
fn find(parent: &mut [usize], mut r: usize) -> usize {
    while parent[r] != r {
        parent[r] = parent[parent[r]];
        r = parent[r];
    }
    r
}

/// Joins the components of runs `a` and `b` under the earlier of their roots.
fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let (lo, hi) = (ra.min(rb), ra.max(rb));
    parent[hi] = lo;
}

/// The 4-connected regions of one value of a mask: each pixel's label (1, 2, … in scan order
/// of the region's first pixel; 0 = the other value), each region's size and whether it touches
/// the frame. What the region tests (holes, enclosed backdrop) read, in linear passes.
pub struct Regions {
    pub label: Vec<u32>,
    /// Pixels per label (index 0: none counted).
    pub size: Vec<usize>,
    /// Per label: some pixel on the frame's edge.
    pub at_frame: Vec<bool>,
}

impl Regions {
    pub fn of(w: usize, h: usize, mask: &[bool], value: bool) -> Regions {
        let (label, size) = component_sizes(w, h, mask, value);
        let mut at_frame = vec![false; size.len()];
        if w > 0 && h > 0 {
            let edges = (0..w)
                .chain((h - 1) * w..h * w)
                .chain((0..h).map(|y| y * w))
                .chain((0..h).map(|y| y * w + w - 1));
            for i in edges {
                at_frame[label[i] as usize] = true;
            }
            at_frame[0] = false;
        }
        Regions {
            label,
            size,
            at_frame,
        }
    }

    /// Per label, the means of the `N` values `f(i)` over its pixels `i`, in one pass (summed in
    /// `f64`; index 0 unused).
    pub fn means<const N: usize>(&self, f: impl Fn(usize) -> [f32; N]) -> Vec<[f32; N]> {
        let mut sums = vec![[0.0f64; N]; self.size.len()];
        for (i, &l) in self.label.iter().enumerate() {
            if l != 0 {
                let sum = &mut sums[l as usize];
                for (s, v) in sum.iter_mut().zip(f(i)) {
                    *s += f64::from(v);
                }
            }
        }
        sums.iter()
            .zip(&self.size)
            .map(|(s, &n)| s.map(|s| (s / n.max(1) as f64) as f32))
            .collect()
    }

    /// Sets `out[i] = value` for every pixel whose region `pick` chooses.
    pub fn paint(&self, out: &mut [bool], value: bool, pick: &[bool]) {
        for (o, &l) in out.iter_mut().zip(&self.label) {
            if pick[l as usize] {
                *o = value;
            }
        }
    }
}

/// Flips every 4-connected region of `value` smaller than `min_area` pixels.
pub fn remove_small(w: usize, h: usize, mask: &mut [bool], value: bool, min_area: usize) {
    let (label, sizes) = component_sizes(w, h, mask, value);
    for (m, &l) in mask.iter_mut().zip(&label) {
        if l != 0 && sizes[l as usize] < min_area {
            *m = !value;
        }
    }
}

/// Background regions that do not reach the border are product (a label, a reflection) unless
/// they look like the backdrop (a mug handle's hole): mean evidence low and ratio near 1.
fn fill_enclosed(w: usize, h: usize, mask: &mut [bool], ev: &Evidence) {
    let regions = Regions::of(w, h, mask, false);
    let means = regions.means(|i| [ev.score.data[i], (ev.ratio.data[i] - 1.0).abs()]);
    let fill: Vec<bool> = (0..regions.size.len())
        .map(|l| {
            let [score, off] = means[l];
            let looks_like_backdrop = score < 0.4 && off < 0.04 && regions.size[l] > 30;
            l != 0 && !regions.at_frame[l] && !looks_like_backdrop
        })
        .collect();
    regions.paint(mask, true, &fill);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Components and flood fill track columns instead of dividing: same labels, same members in
    /// the same order (callers sum over members in that order), as the division-based version.
    #[test]
    fn column_tracking_labels_and_floods_like_the_division_based_walk() {
        let near = |i: usize, w: usize, h: usize| {
            let (x, y) = (i % w, i / w);
            [
                (x > 0).then(|| i - 1),
                (x + 1 < w).then(|| i + 1),
                (y > 0).then(|| i - w),
                (y + 1 < h).then(|| i + w),
            ]
            .into_iter()
            .flatten()
        };
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for (w, h) in [
            (1, 1),
            (1, 9),
            (9, 1),
            (2, 2),
            (37, 23),
            (64, 50),
            (300, 200),
        ] {
            let mask: Vec<bool> = (0..w * h)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state % 5 < 2
                })
                .collect();
            for value in [true, false] {
                let mut label = vec![0u32; w * h];
                let mut comps: Vec<Vec<usize>> = vec![Vec::new()];
                for start in 0..w * h {
                    if mask[start] != value || label[start] != 0 {
                        continue;
                    }
                    let id = comps.len() as u32;
                    let (mut members, mut k) = (vec![start], 0);
                    label[start] = id;
                    while k < members.len() {
                        let i = members[k];
                        k += 1;
                        for j in near(i, w, h) {
                            if mask[j] == value && label[j] == 0 {
                                label[j] = id;
                                members.push(j);
                            }
                        }
                    }
                    comps.push(members);
                }
                let sizes: Vec<usize> = comps.iter().map(Vec::len).collect();
                assert_eq!(
                    component_sizes(w, h, &mask, value),
                    (label.clone(), sizes.clone())
                );
                let at_frame: Vec<bool> = comps
                    .iter()
                    .enumerate()
                    .map(|(l, c)| {
                        l != 0
                            && c.iter().any(|&i| {
                                let (x, y) = (i % w, i / w);
                                x == 0 || y == 0 || x + 1 == w || y + 1 == h
                            })
                    })
                    .collect();
                let regions = Regions::of(w, h, &mask, value);
                assert_eq!(
                    (regions.label, regions.size, regions.at_frame),
                    (label, sizes, at_frame),
                    "{w}x{h}"
                );
            }
            let seeds: Vec<bool> = (0..w * h).map(|i| i % 7 == 0 && mask[i]).collect();
            let mut want = seeds.clone();
            let mut queue: VecDeque<usize> = (0..w * h).filter(|&i| seeds[i]).collect();
            while let Some(i) = queue.pop_front() {
                for j in near(i, w, h) {
                    if !want[j] && mask[j] {
                        want[j] = true;
                        queue.push_back(j);
                    }
                }
            }
            assert_eq!(flood(w, h, &seeds, &mask), want, "{w}x{h}");
        }
    }

    #[test]
    fn region_means_and_paint_follow_the_labels() {
        let (w, h) = (4, 3);
        #[rustfmt::skip]
        let mask = [
            true, false, false, true,
            true, false, false, false,
            false, false, true, true,
        ];
        let r = Regions::of(w, h, &mask, true);
        assert_eq!(r.size, [0, 2, 1, 2]);
        assert_eq!(r.means(|i| [i as f32])[1..], [[2.0], [3.0], [10.5]]);
        let mut out = vec![false; w * h];
        r.paint(&mut out, true, &[false, false, true, false]);
        assert_eq!(out.iter().filter(|&&v| v).count(), 1);
        assert!(out[3]);
    }

    #[test]
    fn enclosed_backdrop_stays_background_and_speck_goes() {
        let (w, h) = (20, 20);
        let mut mask: Vec<bool> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                (3..17).contains(&x)
                    && (3..17).contains(&y)
                    && !((7..13).contains(&x) && (7..13).contains(&y))
            })
            .collect();
        mask[0] = true; // speck
        remove_small(w, h, &mut mask, true, 4);
        assert!(!mask[0]);
        let ev = Evidence {
            score: Plane::new(w, h, 0.0),
            ratio: Plane::new(w, h, 1.0),
        };
        let mut hole = mask.clone();
        fill_enclosed(w, h, &mut hole, &ev);
        assert!(!hole[10 * w + 10], "backdrop-like hole stays open");
        let dark = Evidence {
            score: Plane::new(w, h, 0.0),
            ratio: Plane::new(w, h, 0.5),
        };
        fill_enclosed(w, h, &mut mask, &dark);
        assert!(mask[10 * w + 10], "a dark enclosed region is product");
    }
}
