//! Background removal for catalogue photos on plain or seamless backdrops.
//!
//! The backdrop is modelled from the border ([`BackdropModel`]), the product segmented against
//! it ([`segment`]), and a soft matte pulled in a thin band around the hard edge by unmixing each
//! pixel between the local product and local backdrop colours (linear light). Edge colours are
//! decontaminated (replaced by the local product colour) so no backdrop halo survives on a new
//! background. Soft contact shadows are background. Existing transparency is respected (min).

use super::backdrop::BackdropModel;
use super::colour::{decode, encode};
use super::filter::{Plane, any_within, box_rows};
use super::fuse::{self, Fusion};
use super::segment;
use fast_image_resize::{FilterType, ResizeAlg, Resizer};
use image::{GrayImage, Luma, RgbaImage};
use rayon::prelude::*;

/// What to produce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoveBgOptions {
    /// `Some(rgb)`: composite onto this colour (opaque output); `None`: transparent RGBA.
    pub background: Option<[u8; 3]>,
}

/// Inner and outer widths (pixels) of the band around the hard edge where the matte is soft;
/// wider outside because texture evidence spreads the hard mask a few pixels outward.
const BAND_IN: usize = 2;
const BAND_OUT: usize = 5;
/// Radius of the windows that estimate local product / backdrop colours.
const WINDOW: usize = 7;

/// The product cut out (or flattened onto `opts.background`) by the backdrop model alone.
pub fn remove_background(img: &RgbaImage, opts: &RemoveBgOptions) -> RgbaImage {
    remove_background_with(img, opts, None, Fusion::Combined)
}

/// The product cut out with a segmentation network's `saliency` map (255 = product, at `img`'s
/// size) combined with the backdrop model by `fusion`; without a map, the backdrop model alone.
pub fn remove_background_with(
    img: &RgbaImage,
    opts: &RemoveBgOptions,
    saliency: Option<&GrayImage>,
    fusion: Fusion,
) -> RgbaImage {
    let cut = cut_out(img, saliency, fusion);
    match opts.background {
        Some(bg) => flatten(&cut.image, bg),
        None => cut.image,
    }
}

/// A transparent cut-out and, when the backdrop could be modelled, which pixels of the photo
/// looked like the backdrop (what the quality checks compare the kept pixels with, so they need
/// not fit the backdrop again).
pub struct CutOut {
    pub image: RgbaImage,
    pub backdrop_like: Option<Vec<bool>>,
}

/// [`remove_background_with`], transparent, with what the backdrop model saw.
pub fn cut_out(img: &RgbaImage, saliency: Option<&GrayImage>, fusion: Fusion) -> CutOut {
    let m = matte(img, saliency, fusion);
    let w = img.width() as usize;
    let mut out = img.clone();
    out.par_chunks_mut(w * 4).enumerate().for_each(|(y, row)| {
        for (p, a) in row.chunks_mut(4).zip(&m.alpha.data[y * w..]) {
            p[3] = (a * p[3] as f32 + 0.5) as u8;
        }
        for &(i, fg) in m.fg.row(y * w, w) {
            row[(i - y * w) * 4..][..3].copy_from_slice(&fg.map(encode));
        }
    });
    CutOut {
        image: out,
        backdrop_like: m.backdrop_like,
    }
}

/// The soft matte (255 = product), combined (min) with any existing alpha.
pub fn estimate_alpha(img: &RgbaImage) -> GrayImage {
    let m = matte(img, None, Fusion::Combined);
    GrayImage::from_fn(img.width(), img.height(), |x, y| {
        let i = (y * img.width() + x) as usize;
        let a = m.alpha.data[i] * img.get_pixel(x, y).0[3] as f32;
        Luma([(a + 0.5) as u8])
    })
}

/// Scales `alpha` (any size) to `original`'s size with Lanczos3 and applies it (min with the
/// original alpha); flattens onto `background` when given.
pub fn apply_alpha(
    original: &RgbaImage,
    alpha: &GrayImage,
    background: Option<[u8; 3]>,
) -> RgbaImage {
    let (w, h) = original.dimensions();
    let scaled = if alpha.dimensions() == (w, h) || alpha.width() == 0 || alpha.height() == 0 {
        alpha.clone()
    } else {
        let mut dst = GrayImage::new(w, h);
        let opts = fast_image_resize::ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        match Resizer::new().resize(alpha, &mut dst, &opts) {
            Ok(()) => dst,
            Err(_) => GrayImage::from_pixel(w, h, Luma([255])),
        }
    };
    let mut out = original.clone();
    if scaled.dimensions() == (w, h) {
        for (p, a) in out.pixels_mut().zip(scaled.pixels()) {
            p.0[3] = p.0[3].min(a.0[0]);
        }
    }
    match background {
        Some(bg) => flatten(&out, bg),
        None => out,
    }
}

/// Composites RGBA over an opaque colour in linear light.
pub fn flatten(img: &RgbaImage, bg: [u8; 3]) -> RgbaImage {
    let bl = bg.map(decode);
    let mut out = img.clone();
    out.par_chunks_mut(4).for_each(|p| {
        let a = p[3] as f32 / 255.0;
        for k in 0..3 {
            p[k] = encode(decode(p[k]) * a + bl[k] * (1.0 - a));
        }
        p[3] = 255;
    });
    out
}

/// Soft alpha in `[0, 1]` plus decontaminated colours (linear) for soft-edge pixels.
struct Matte {
    alpha: Plane,
    fg: EdgeColours,
    /// Which pixels looked like the backdrop (when it could be modelled).
    backdrop_like: Option<Vec<bool>>,
}

/// Sparse per-pixel colours for the edge band, by ascending pixel index.
#[derive(Default)]
struct EdgeColours(Vec<(usize, [f32; 3])>);

impl EdgeColours {
    /// The colours of pixels `start..start + len` (one row).
    fn row(&self, start: usize, len: usize) -> &[(usize, [f32; 3])] {
        let from = self.0.partition_point(|&(i, _)| i < start);
        let to = from + self.0[from..].partition_point(|&(i, _)| i < start + len);
        &self.0[from..to]
    }
}

fn matte(img: &RgbaImage, saliency: Option<&GrayImage>, fusion: Fusion) -> Matte {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let model = BackdropModel::fit(img);
    let (hard, backdrop_like) = match (model, saliency) {
        (None, None) => {
            return Matte {
                alpha: Plane::new(w, h, 1.0),
                fg: EdgeColours::default(),
                backdrop_like: None,
            };
        }
        (Some(model), None) => {
            let evidence = segment::evidence(img, &model);
            (segment::segment(&evidence), Some(evidence.backdrop_like()))
        }
        (None, Some(s)) => (fuse::fuse(s, None, fusion), None),
        (Some(model), Some(s)) => {
            let evidence = segment::evidence(img, &model);
            // The backdrop model's own segmentation only where the fusion will read it.
            let mask = fuse::wants_backdrop(&model, fusion).then(|| segment::segment(&evidence));
            let view = mask.as_deref().map(|mask| fuse::BackdropView {
                model: &model,
                evidence: &evidence,
                mask,
            });
            let mut hard = fuse::fuse(s, view.as_ref(), fusion);
            fuse::tidy(w, h, &mut hard);
            (hard, Some(evidence.backdrop_like()))
        }
    };
    Matte {
        backdrop_like,
        ..soft_edges(img, &hard)
    }
}

/// For each pixel of `band` (ascending indices): the mean linear colour over the pixels `sel`
/// picks in the `(2·WINDOW+1)²` window around it (clamped to the image), or `None` where (almost)
/// nothing nearby is picked.
///
/// The box sums are [`Plane::box_blur`]'s, operation for operation (a horizontal mean per row,
/// then per column the difference of running `f64` sums of those means), but made row by row
/// with only the window's rows kept: no full-size plane, and nothing after the band's last row.
fn band_means(
    img: &RgbaImage,
    sel: impl Fn(usize) -> bool,
    band: &[usize],
) -> Vec<Option<[f32; 3]>> {
    // Channels: the selection's weight, then its linear red, green and blue.
    const CH: usize = 4;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let r = WINDOW;
    // Row y + r enters the window sums while row y - r - 1 still has to leave them.
    let slots = 2 * r + 2;
    let mut rows = vec![0.0f32; slots * CH * w];
    let (mut below, mut upto) = (vec![0.0f64; CH * w], vec![0.0f64; CH * w]);
    let (mut left, mut entered) = (0, 0);
    let mut picked = vec![[0.0f32; CH]; w];
    let mut prefix = vec![[0.0f64; CH]; w + 1];
    let mut out = Vec::with_capacity(band.len());
    let mut next = 0;
    let pixels = img.as_raw();
    for y in 0..h {
        if next == band.len() {
            break;
        }
        let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
        while entered < b {
            let slot = &mut rows[(entered % slots) * CH * w..][..CH * w];
            let row = entered * w;
            for (x, v) in picked.iter_mut().enumerate() {
                *v = if sel(row + x) {
                    let p = &pixels[(row + x) * 4..][..3];
                    [1.0, decode(p[0]), decode(p[1]), decode(p[2])]
                } else {
                    [0.0; CH]
                };
            }
            box_rows(&picked, &mut prefix, slot, r);
            for (s, &m) in upto.iter_mut().zip(slot.iter()) {
                *s += m as f64;
            }
            entered += 1;
        }
        while left < a {
            let slot = &rows[(left % slots) * CH * w..][..CH * w];
            for (s, &m) in below.iter_mut().zip(slot) {
                *s += m as f64;
            }
            left += 1;
        }
        let n = (b - a) as f64;
        while let Some(&i) = band.get(next).filter(|&&i| i / w == y) {
            let x = i % w;
            let mean = |k: usize| ((upto[k * w + x] - below[k * w + x]) / n) as f32;
            let weight = mean(0);
            out.push((weight >= 1e-3).then(|| [1, 2, 3].map(|k| mean(k) / weight)));
            next += 1;
        }
    }
    out
}

fn soft_edges(img: &RgbaImage, hard: &[bool]) -> Matte {
    let (w, h) = (img.width() as usize, img.height() as usize);
    // Product all over a BAND_IN window (inside the band), and product anywhere within BAND_OUT.
    let inner: Vec<bool> = any_within(w, h, hard, false, BAND_IN)
        .into_iter()
        .map(|b| !b)
        .collect();
    let outer = any_within(w, h, hard, true, BAND_OUT);
    // The soft band only: where the hard mask changes within the band widths.
    let band: Vec<usize> = (0..w * h).filter(|&i| inner[i] != outer[i]).collect();
    // Mean product and backdrop colours around each band pixel.
    let (fg_means, bg_means) = rayon::join(
        || band_means(img, |i| inner[i], &band),
        || band_means(img, |i| !outer[i], &band),
    );
    drop((inner, outer));
    let mut alpha = Plane {
        w,
        h,
        data: hard.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
    };
    let mut fg = EdgeColours::default();
    for ((&i, f), b) in band.iter().zip(fg_means).zip(bg_means) {
        let (Some(f), Some(b)) = (f, b) else {
            continue;
        };
        let p = img.get_pixel((i % w) as u32, (i / w) as u32).0;
        let c = [decode(p[0]), decode(p[1]), decode(p[2])];
        let d: [f32; 3] = [0, 1, 2].map(|k| f[k] - b[k]);
        let dd = d.iter().map(|v| v * v).sum::<f32>();
        if dd < 4e-4 {
            continue;
        }
        let a = ((0..3).map(|k| (c[k] - b[k]) * d[k]).sum::<f32>() / dd).clamp(0.0, 1.0);
        alpha.data[i] = a;
        if a > 0.0 && a < 0.98 {
            fg.0.push((i, f));
        }
    }
    Matte {
        alpha,
        fg,
        backdrop_like: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testset::{cases, metrics::iou};
    use image::Rgba;

    #[test]
    fn light_backdrops_reach_iou_095() {
        let mut scores = Vec::new();
        for case in cases(21, 12, 300, 420).filter(|c| c.backdrop.is_light()) {
            let a = estimate_alpha(&case.image);
            scores.push((case.name.clone(), iou(&a, &case.mask)));
        }
        let mean = scores.iter().map(|s| s.1).sum::<f64>() / scores.len() as f64;
        assert!(mean >= 0.95, "mean IoU {mean}: {scores:?}");
    }

    /// A red disk with a soft edge on a green sweep: the edge's semi-transparent pixels carry
    /// the product's red, not the green they were mixed with.
    #[test]
    fn soft_edge_colours_are_decontaminated() {
        let img = RgbaImage::from_fn(160, 120, |x, y| {
            let d = ((x as f32 - 80.0).powi(2) + (y as f32 - 60.0).powi(2)).sqrt();
            let t = ((34.0 - d) / 4.0).clamp(0.0, 1.0);
            let mix =
                |fg: f32, bg: f32| encode(decode(fg as u8) * t + decode(bg as u8) * (1.0 - t));
            Rgba([mix(200.0, 40.0), mix(30.0, 170.0), mix(30.0, 60.0), 255])
        });
        let out = cut_out(&img, None, Fusion::Combined).image;
        let edge: Vec<[u8; 4]> = out
            .pixels()
            .map(|p| p.0)
            .filter(|p| (40..216).contains(&p[3]))
            .collect();
        assert!(edge.len() > 40, "a soft edge: {} pixels", edge.len());
        for p in &edge {
            assert!(
                p[0] > 150 && p[1] < 80,
                "edge pixel {p:?} keeps the backdrop's green"
            );
        }
        // Without decontamination the mixed input pixels there are greenish.
        let mixed = img
            .pixels()
            .zip(out.pixels())
            .filter(|(_, o)| (40..216).contains(&o.0[3]))
            .filter(|(i, _)| i.0[1] >= 80)
            .count();
        assert!(mixed > edge.len() / 4, "{mixed} of {}", edge.len());
    }

    #[test]
    fn mug_hole_is_transparent() {
        let case = (0..40)
            .map(|i| crate::testset::make_case(5, i, 300, 400))
            .find(|c| c.name.contains("mug") && c.backdrop.is_light())
            .expect("a mug on a light backdrop");
        let a = estimate_alpha(&case.image);
        // Hole pixels: background in the truth, enclosed by product (not reachable from the border).
        let hole: Vec<(u32, u32)> = enclosed_background(&case.mask);
        assert!(hole.len() > 50, "the generator drew a hole");
        let open = hole
            .iter()
            .filter(|&&(x, y)| a.get_pixel(x, y).0[0] < 128)
            .count();
        assert!(
            open as f64 >= 0.9 * hole.len() as f64,
            "{open}/{}",
            hole.len()
        );
    }

    fn enclosed_background(mask: &GrayImage) -> Vec<(u32, u32)> {
        let (w, h) = (mask.width() as usize, mask.height() as usize);
        let bg: Vec<bool> = mask.pixels().map(|p| p.0[0] < 128).collect();
        let seeds: Vec<bool> = (0..w * h)
            .map(|i| bg[i] && (i % w == 0 || i / w == 0 || i % w == w - 1 || i / w == h - 1))
            .collect();
        let mut reach = seeds.clone();
        let mut stack: Vec<usize> = (0..w * h).filter(|&i| seeds[i]).collect();
        while let Some(i) = stack.pop() {
            for j in [i.wrapping_sub(1), i + 1, i.wrapping_sub(w), i + w] {
                if j < w * h && bg[j] && !reach[j] && (j / w == i / w || j % w == i % w) {
                    reach[j] = true;
                    stack.push(j);
                }
            }
        }
        (0..w * h)
            .filter(|&i| bg[i] && !reach[i])
            .map(|i| ((i % w) as u32, (i / w) as u32))
            .collect()
    }

    #[test]
    fn flattening_is_opaque_and_existing_alpha_is_kept() {
        let mut img = RgbaImage::from_fn(120, 100, |x, y| {
            if (40..80).contains(&x) && (30..70).contains(&y) {
                Rgba([200, 30, 30, 255])
            } else {
                Rgba([235, 235, 235, 255])
            }
        });
        img.put_pixel(60, 50, Rgba([200, 30, 30, 0]));
        let a = estimate_alpha(&img);
        assert_eq!(a.get_pixel(60, 50).0[0], 0, "min with the input alpha");
        assert!(a.get_pixel(50, 40).0[0] > 250 && a.get_pixel(5, 5).0[0] < 5);
        let flat = remove_background(
            &img,
            &RemoveBgOptions {
                background: Some([0, 0, 255]),
            },
        );
        assert!(flat.pixels().all(|p| p.0[3] == 255));
        assert_eq!(flat.get_pixel(5, 5).0, [0, 0, 255, 255]);
        let cut = remove_background(&img, &RemoveBgOptions::default());
        assert_eq!(cut.get_pixel(5, 5).0[3], 0);
    }

    #[test]
    fn apply_alpha_scales_a_small_matte() {
        let img = RgbaImage::from_pixel(64, 48, Rgba([10, 200, 10, 255]));
        let small = GrayImage::from_fn(16, 12, |x, _| Luma([if x < 8 { 255 } else { 0 }]));
        let out = apply_alpha(&img, &small, None);
        assert_eq!(out.dimensions(), (64, 48));
        assert!(out.get_pixel(4, 20).0[3] > 250 && out.get_pixel(60, 20).0[3] < 5);
        let flat = apply_alpha(&img, &small, Some([255, 255, 255]));
        assert_eq!(flat.get_pixel(60, 20).0, [255, 255, 255, 255]);
    }

    /// The band and its local means as they were first computed: full-size float planes, a
    /// min/max filter for the band, and one box blur per channel and side.
    /// Band pixels and, for each, the product-side and backdrop-side means.
    type Band = (Vec<usize>, Vec<[Option<[f32; 3]>; 2]>);

    fn full_plane_band(img: &RgbaImage, hard: &[bool]) -> Band {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let m = Plane {
            w,
            h,
            data: hard.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
        };
        let (inner, outer) = (m.min_filter(BAND_IN), m.max_filter(BAND_OUT));
        let band: Vec<usize> = (0..w * h)
            .filter(|&i| inner.data[i] != outer.data[i])
            .collect();
        let outside = Plane {
            w,
            h,
            data: outer.data.iter().map(|v| 1.0 - v).collect(),
        };
        let means = |sel: &Plane| -> Vec<Option<[f32; 3]>> {
            let weight = sel.box_blur(WINDOW);
            let sums: Vec<Plane> = (0..3)
                .map(|k| {
                    Plane::from_fn(w, h, |x, y| {
                        sel.at(x, y) * decode(img.get_pixel(x as u32, y as u32).0[k])
                    })
                    .box_blur(WINDOW)
                })
                .collect();
            band.iter()
                .map(|&i| {
                    (weight.data[i] >= 1e-3)
                        .then(|| [0, 1, 2].map(|k| sums[k].data[i] / weight.data[i]))
                })
                .collect()
        };
        let (fg, bg) = (means(&inner), means(&outside));
        let pairs = fg.into_iter().zip(bg).map(|(f, b)| [f, b]).collect();
        (band, pairs)
    }

    #[test]
    fn row_by_row_band_means_match_full_plane_box_blurs_bit_for_bit() {
        // A noisy photo with a blob, a thin wire and a hole; the mask reaches the frame.
        let (w, h) = (97u32, 71u32);
        let img = RgbaImage::from_fn(w, h, |x, y| {
            let n = ((x * 7919 + y * 104_729) % 251) as u8;
            Rgba([n, n.wrapping_mul(3), 255 - n, 255])
        });
        let hard: Vec<bool> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as i32, (i / w) as i32);
                let d = (x - 40).pow(2) + (y - 35).pow(2);
                (d < 600 && d > 40) || (x == 80 && y > 10) || (y < 3 && x < 20)
            })
            .collect();
        let (band, pairs) = full_plane_band(&img, &hard);
        let (ww, hh) = (w as usize, h as usize);
        let inner: Vec<bool> = any_within(ww, hh, &hard, false, BAND_IN)
            .into_iter()
            .map(|b| !b)
            .collect();
        let outer = any_within(ww, hh, &hard, true, BAND_OUT);
        let ours: Vec<usize> = (0..ww * hh).filter(|&i| inner[i] != outer[i]).collect();
        assert_eq!(ours, band);
        assert!(band.len() > 500, "a real band: {}", band.len());
        let fg = band_means(&img, |i| inner[i], &band);
        let bg = band_means(&img, |i| !outer[i], &band);
        for (k, pair) in pairs.iter().enumerate() {
            assert_eq!(fg[k], pair[0], "product side at {}", band[k]);
            assert_eq!(bg[k], pair[1], "backdrop side at {}", band[k]);
        }
        // Both sides are seen from most band pixels (else the comparison proves little).
        let both = fg
            .iter()
            .zip(&bg)
            .filter(|(f, b)| f.is_some() && b.is_some());
        assert!(both.count() * 2 > band.len());
    }
}
