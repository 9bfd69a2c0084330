//! Combines a segmentation network's saliency map with the backdrop model's segmentation into
//! one hard product mask, each where it is strong.
//!
//! The network finds the product on any backdrop (wood, fabric, a coloured wall) but sees the
//! photo at 320×320, so thin straps, stems and the holes of handles blur away, and on a few
//! low-contrast shots it finds nothing. The backdrop model ([`super::segment`]) is exact to the
//! pixel on plain sweeps, keeps thin parts and opens holes, but on a textured backdrop it takes
//! the texture for product. So: the network decides *where* the product is; on a backdrop the
//! fitted model explains (low noise, most border samples agree) the backdrop segmentation adds
//! the thin parts next to the network's object and opens holes the network filled where the
//! pixels match the backdrop; when the network finds nothing plausible and the backdrop model
//! does, the backdrop model wins. `bench/segmentation.sh` measures every variant.

use image::GrayImage;

use super::backdrop::BackdropModel;
use super::filter::Plane;
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

/// Relative backdrop noise up to which the backdrop counts as plain (a sweep, a painted wall).
const PLAIN_NOISE: f32 = 0.035;
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
        self.model.noise <= PLAIN_NOISE && self.model.inliers >= PLAIN_INLIERS
    }
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
    // Pixels near what the network calls (even faintly) product: thin parts live here.
    let reach = (w.min(h) / 80).max(3);
    let faint = Plane {
        w,
        h,
        data: saliency
            .pixels()
            .map(|p| if p.0[0] >= 24 { 1.0 } else { 0.0 })
            .collect(),
    }
    .max_filter(reach);
    let s = saliency.as_raw();
    (0..w * h)
        .map(|i| {
            let near = faint.data[i] > 0.5;
            if b.mask[i] {
                // Product to the backdrop model: keep it if the network's object is near.
                near
            } else {
                // Backdrop to the backdrop model: the network overrules it only where the pixel
                // does not look like the backdrop or the network is sure.
                let looks_like_backdrop =
                    b.evidence.score.data[i] < 0.3 && (b.evidence.ratio.data[i] - 1.0).abs() < 0.05;
                net[i] && (!looks_like_backdrop || s[i] >= 240)
            }
        })
        .collect()
}

/// Removes product specks and fills pin-holes a union of two masks leaves.
pub fn tidy(w: usize, h: usize, mask: &mut [bool]) {
    segment::remove_small(w, h, mask, true, (w * h / 2000).max(8));
    segment::remove_small(w, h, mask, false, (w * h / 20000).max(4));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_plain_backdrop_the_network_decides() {
        let sal = GrayImage::from_fn(10, 10, |x, _| image::Luma([if x < 5 { 250 } else { 10 }]));
        let m = fuse(&sal, None, Fusion::Combined);
        assert!(m[2] && !m[7]);
    }
}
