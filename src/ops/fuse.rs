//! Combines a segmentation network's saliency map with the backdrop model's segmentation into
//! one hard product mask, each where it is strong.
//!
//! The network finds the product on any backdrop (wood, fabric, a coloured wall) but sees the
//! photo at 320×320, so it fills holes (a ring, a handle) and on a few low-contrast shots finds
//! nothing. The backdrop model ([`super::segment`]) opens holes exactly on plain backdrops but
//! takes texture, JPEG blocks and noise for product. So the network decides where the product
//! is; on a backdrop the fitted model explains (noise within [`PLAIN_NOISE`], most border samples
//! agree), whole regions inside the network's object that the backdrop model calls backdrop and
//! that look like the backdrop on average are opened; when the network finds nothing and the
//! backdrop model finds a plausible product, the backdrop model wins. Measured on the hard set
//! (`bench/segmentation.sh`, BENCHMARKS.md): adding the backdrop model's product pixels near
//! the network's object (for thin parts) lost more than it gained (mean IoU 0.787 → 0.771), so
//! it is not done; opening holes gained (0.787 → 0.804; coloured sweeps 0.788 → 0.886).

use image::GrayImage;

use super::backdrop::BackdropModel;
use super::segment::{self, Evidence};

/// How the two segmentations are combined (the benchmark compares them; runs use `Combined`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fusion {
    /// The network's map alone, thresholded at one half.
    NetOnly,
    /// The network placed, the backdrop model refining on plain backdrops.
    #[default]
    Combined,
}

/// Relative backdrop noise up to which the backdrop counts as plain (a sweep, a painted wall;
/// with sensor noise and JPEG blocks, dark coloured sweeps reach 0.07, wood and fabric start
/// near 0.09 and 0.2 on the hard set).
const PLAIN_NOISE: f32 = 0.07;
/// Share of border samples that must fit the backdrop model for it to count as plain.
const PLAIN_INLIERS: f32 = 0.6;

/// The backdrop model's view of an image: its fit, per-pixel evidence and hard mask.
pub struct BackdropView<'a> {
    pub model: &'a BackdropModel,
    pub evidence: &'a Evidence,
    pub mask: &'a [bool],
}

impl BackdropView<'_> {
    fn plain(&self) -> bool {
        plain(self.model)
    }
}

fn plain(model: &BackdropModel) -> bool {
    model.noise <= PLAIN_NOISE && model.inliers >= PLAIN_INLIERS
}

/// Whether [`fuse`] would look at the backdrop model's segmentation at all (a plain backdrop,
/// combined fusion); when not, callers need not make one.
pub fn wants_backdrop(model: &BackdropModel, fusion: Fusion) -> bool {
    fusion == Fusion::Combined && plain(model)
}

/// The hard product mask (true = product) from `saliency` (255 = product, at the image's size)
/// and, when the backdrop could be modelled, `backdrop`.
pub fn fuse(
    saliency: &GrayImage,
    backdrop: Option<&BackdropView<'_>>,
    fusion: Fusion,
) -> Vec<bool> {
    let (w, h) = (saliency.width() as usize, saliency.height() as usize);
    let net: Vec<bool> = saliency.pixels().map(|p| p.0[0] >= 128).collect();
    let Some(b) = backdrop.filter(|_| fusion == Fusion::Combined) else {
        return net;
    };
    if !b.plain() {
        return net;
    }
    let area = (w * h) as f32;
    let net_share = net.iter().filter(|&&v| v).count() as f32 / area;
    let b_share = b.mask.iter().filter(|&&v| v).count() as f32 / area;
    if net_share < 0.002 {
        // The network found nothing: trust a plausible backdrop segmentation.
        return if (0.002..0.9).contains(&b_share) {
            b.mask.to_vec()
        } else {
            net
        };
    }
    carve_holes(w, h, net, b)
}

/// `net` with the holes it filled opened: every region the backdrop model calls backdrop that
/// lies inside the network's object (touching neither the frame nor the outside) and, taken
/// whole, looks like the backdrop (low evidence, luminance within a few percent of it). Whole
/// regions, never single pixels: the backdrop model's stray misses inside a low-contrast
/// product are small and do not look like the backdrop on average.
fn carve_holes(w: usize, h: usize, mut net: Vec<bool>, b: &BackdropView<'_>) -> Vec<bool> {
    let regions = segment::Regions::of(w, h, b.mask, false);
    let net_area = net.iter().filter(|&&v| v).count();
    let min_area = (net_area / 400).max(16);
    let mut inside = vec![0usize; regions.size.len()];
    for (&l, &n) in regions.label.iter().zip(&net) {
        inside[l as usize] += usize::from(n);
    }
    let ev = b.evidence;
    let means = regions.means(|i| [ev.score.data[i], (ev.ratio.data[i] - 1.0).abs()]);
    let carve: Vec<bool> = (0..regions.size.len())
        .map(|l| {
            let (n, [score, off]) = (regions.size[l], means[l]);
            l != 0
                && n >= min_area
                && !regions.at_frame[l]
                && inside[l] as f32 >= 0.9 * n as f32
                && score < segment::LIKE_SCORE
                && off < segment::LIKE_RATIO
        })
        .collect();
    regions.paint(&mut net, false, &carve);
    net
}

/// Removes product specks and fills pin-holes a union of two masks leaves.
pub fn tidy(w: usize, h: usize, mask: &mut [bool]) {
    segment::remove_small(w, h, mask, true, (w * h / 2000).max(8));
    segment::remove_small(w, h, mask, false, (w * h / 20000).max(4));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::filter::Plane;

    /// A 40×40 frame: the network sees a filled disk; the backdrop model a ring around a hole.
    fn ring(hole_ratio: f32, noise: f32) -> (GrayImage, Vec<bool>, Evidence, BackdropModel) {
        let (w, h) = (40usize, 40usize);
        let d = |x: usize, y: usize| ((x as f32 - 20.0).powi(2) + (y as f32 - 20.0).powi(2)).sqrt();
        let sal = GrayImage::from_fn(40, 40, |x, y| {
            image::Luma([if d(x as usize, y as usize) < 14.0 {
                255
            } else {
                0
            }])
        });
        let mask: Vec<bool> = (0..w * h)
            .map(|i| (8.0..14.0).contains(&d(i % w, i / w)))
            .collect();
        let inner = |i: usize| d(i % w, i / w) < 8.0;
        let evidence = Evidence {
            score: Plane::from_fn(w, h, |x, y| if mask[y * w + x] { 3.0 } else { 0.1 }),
            ratio: Plane::from_fn(w, h, |x, y| {
                if inner(y * w + x) {
                    hole_ratio
                } else if mask[y * w + x] {
                    0.4
                } else {
                    1.0
                }
            }),
        };
        let img = image::RgbaImage::from_pixel(40, 40, image::Rgba([200, 200, 200, 255]));
        let mut model = BackdropModel::fit(&img).unwrap();
        model.noise = noise;
        (sal, mask, evidence, model)
    }

    #[test]
    fn a_hole_the_network_filled_is_opened_when_it_looks_like_the_backdrop() {
        let (sal, mask, evidence, model) = ring(1.01, 0.01);
        let view = BackdropView {
            model: &model,
            evidence: &evidence,
            mask: &mask,
        };
        let centre = 20 * 40 + 20;
        assert!(
            fuse(&sal, Some(&view), Fusion::NetOnly)[centre],
            "the network fills it"
        );
        let fused = fuse(&sal, Some(&view), Fusion::Combined);
        assert!(!fused[centre], "opened");
        assert!(fused[20 * 40 + 30], "the ring stays");
    }

    #[test]
    fn a_low_contrast_part_or_a_textured_backdrop_is_never_carved() {
        // The "hole" is 15% darker than the backdrop: product, not backdrop.
        let (sal, mask, evidence, model) = ring(0.85, 0.01);
        let view = BackdropView {
            model: &model,
            evidence: &evidence,
            mask: &mask,
        };
        assert!(fuse(&sal, Some(&view), Fusion::Combined)[20 * 40 + 20]);
        // A backdrop too noisy to model: the network alone.
        let (sal, mask, evidence, model) = ring(1.01, 0.2);
        let view = BackdropView {
            model: &model,
            evidence: &evidence,
            mask: &mask,
        };
        assert!(fuse(&sal, Some(&view), Fusion::Combined)[20 * 40 + 20]);
    }

    #[test]
    fn without_a_plain_backdrop_the_network_decides() {
        let sal = GrayImage::from_fn(10, 10, |x, _| image::Luma([if x < 5 { 250 } else { 10 }]));
        let m = fuse(&sal, None, Fusion::Combined);
        assert!(m[2] && !m[7]);
    }
}
