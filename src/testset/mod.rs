//! Synthetic product photos with ground truth, for tests, samples and the quality benchmark.
//!
//! [`cases`] lazily yields deterministic [`Case`]s: a product (bottle, box, mug with a handle
//! hole, shoe, can and ball) rendered with analytic anti-aliasing on a studio backdrop, the true
//! matte, the well-lit reference, and a degraded copy with a known colour cast, exposure error
//! and mild noise. Rendering happens in linear light. Only one case is in memory at a time.
//!
//! [`hard_cases`] is a separate stream (it never changes what [`cases`] yields, which tests and
//! benchmarks depend on byte for byte): textured backdrops, low-contrast products, thin parts
//! and holes, gamma errors and JPEG-like block noise.

mod hard;
pub mod hostile;
mod jpeg;
pub mod metrics;
mod rng;
mod shapes;
mod texture;
mod thin;

pub use hard::{hard_cases, make_hard_case};

use crate::ops::colour::{encode, linear_to_srgb};
use image::{GrayImage, Luma, Rgba, RgbaImage};
use rayon::prelude::*;
use rng::{Rng, hash_gauss};
use shapes::Product;

/// The kind of backdrop a case is shot on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backdrop {
    /// Near-white seamless sweep with a faint vertical falloff.
    LightSeamless,
    /// Light linear gradient.
    Gradient,
    /// Light backdrop, darker toward the corners.
    Vignette,
    /// Light seamless with a soft contact shadow under the product.
    ContactShadow,
    /// Saturated mid-tone colour.
    Coloured,
    /// Wooden boards: grain, knots, plank seams (hard set only).
    Wood,
    /// Woven cloth or linen (hard set only).
    Fabric,
    /// Concrete: blotches, grain, speckles (hard set only).
    Concrete,
    /// A saturated colour with a fibrous texture, like felt (hard set only).
    ColouredTexture,
}

impl Backdrop {
    pub const ALL: [Backdrop; 5] = [
        Self::LightSeamless,
        Self::Gradient,
        Self::Vignette,
        Self::ContactShadow,
        Self::Coloured,
    ];

    /// The backdrops [`hard_cases`] cycles through. In the hard set `LightSeamless` also takes
    /// a vignette and often a contact shadow, and `Coloured` a vignette.
    pub const HARD: [Backdrop; 6] = [
        Self::LightSeamless,
        Self::Coloured,
        Self::Wood,
        Self::Fabric,
        Self::Concrete,
        Self::ColouredTexture,
    ];

    /// Light/seamless backdrops: the set the IoU ≥ 0.95 bar applies to.
    pub fn is_light(self) -> bool {
        matches!(
            self,
            Self::LightSeamless | Self::Gradient | Self::Vignette | Self::ContactShadow
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::LightSeamless => "light",
            Self::Gradient => "gradient",
            Self::Vignette => "vignette",
            Self::ContactShadow => "shadow",
            Self::Coloured => "coloured",
            Self::Wood => "wood",
            Self::Fabric => "fabric",
            Self::Concrete => "concrete",
            Self::ColouredTexture => "coloured-texture",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain(Self::HARD)
            .find(|b| b.name() == name)
    }
}

/// One generated photo with its ground truth.
#[derive(Debug, Clone)]
pub struct Case {
    /// `NNN-kind-backdrop`, unique within a run.
    pub name: String,
    /// What the product stands on; its [`Backdrop::name`] is the kind results are grouped by.
    pub backdrop: Backdrop,
    /// What a photographer delivered: cast, exposure error, noise. Opaque.
    pub image: RgbaImage,
    /// The same scene well lit. Opaque.
    pub reference: RgbaImage,
    /// True product coverage, anti-aliased (255 = product; the contact shadow is background).
    pub mask: GrayImage,
    /// Per-channel linear gains of the cast (luminance-neutral).
    pub cast: [f32; 3],
    /// Exposure error in stops.
    pub exposure: f32,
    /// Gamma error on the encoded values (`v^gamma`); 1 = none (always, in [`cases`]).
    pub gamma: f32,
    /// Quality of the JPEG-like block quantisation applied last, if any (never in [`cases`]).
    pub jpeg_quality: Option<u8>,
    /// The product's colour was matched to within a few ΔE of the backdrop near it.
    pub low_contrast: bool,
    /// The product has a part at most 4 px across (strap, stem, wire, thin handle).
    pub thin_parts: bool,
    /// The product has a hole the backdrop shows through (handle, ring).
    pub holes: bool,
}

/// `count` deterministic cases; sides are even and within `min_side..=max_side`.
pub fn cases(seed: u64, count: usize, min_side: u32, max_side: u32) -> impl Iterator<Item = Case> {
    (0..count).map(move |i| make_case(seed, i, min_side, max_side))
}

/// Case `index` of the stream for `seed` (what [`cases`] yields at that position).
pub fn make_case(seed: u64, index: usize, min_side: u32, max_side: u32) -> Case {
    let case_seed = rng::mix(seed.wrapping_mul(0x1000_0001).wrapping_add(index as u64));
    let mut rng = Rng::new(case_seed);
    let backdrop = Backdrop::ALL[(index + (seed as usize)) % Backdrop::ALL.len()];
    let (w, h) = pick_size(&mut rng, min_side, max_side);
    let scene = Scene::random(&mut rng, backdrop, w as f32, h as f32);
    let (cast, exposure) = random_degradation(&mut rng);
    let degradation = Degradation {
        cast,
        exposure,
        gamma: 1.0,
        noise: 1.3,
        jpeg: None,
    };
    assemble(index, &scene, &degradation, case_seed, (w, h), false)
}

/// Renders `scene` and packs it with its ground truth into case `index`.
fn assemble(
    index: usize,
    scene: &Scene,
    degradation: &Degradation,
    seed: u64,
    (w, h): (u32, u32),
    low_contrast: bool,
) -> Case {
    let (reference, mut image, mask) = scene.render(w, h, degradation, seed);
    if let Some(quality) = degradation.jpeg {
        jpeg::jpeg_like(&mut image, quality);
    }
    Case {
        name: format!(
            "{index:03}-{}-{}",
            scene.product.kind,
            scene.backdrop.name()
        ),
        backdrop: scene.backdrop,
        image,
        reference,
        mask,
        cast: degradation.cast,
        exposure: degradation.exposure,
        gamma: degradation.gamma,
        jpeg_quality: degradation.jpeg,
        low_contrast,
        thin_parts: scene.product.has_thin_part(),
        holes: scene.product.has_hole(),
    }
}

/// What happens to a scene between the set and the photographer's file.
struct Degradation {
    /// Per-channel linear gains of the cast (luminance-neutral).
    cast: [f32; 3],
    /// Exposure error in stops.
    exposure: f32,
    /// Applied to the encoded values as `v^gamma`; 1 = none.
    gamma: f32,
    /// Standard deviation of the sensor noise, in 8-bit steps.
    noise: f32,
    /// Quality of the JPEG-like quantisation applied last, if any.
    jpeg: Option<u8>,
}

fn pick_size(rng: &mut Rng, min_side: u32, max_side: u32) -> (u32, u32) {
    let min_side = min_side.max(16);
    let max_side = max_side.max(min_side);
    let long = min_side as f32 + rng.unit() * (max_side - min_side) as f32;
    let ratio = [1.0, 0.75, 0.8, 0.667][rng.below(4)];
    let short = (long * ratio).max(min_side as f32);
    let (w, h) = if rng.chance(0.5) {
        (long, short)
    } else {
        (short, long)
    };
    ((w as u32) & !1, (h as u32) & !1)
}

fn random_degradation(rng: &mut Rng) -> ([f32; 3], f32) {
    let mut cast = [rng.range(0.84, 1.18), 1.0, rng.range(0.84, 1.18)];
    let y = crate::ops::colour::luminance(cast);
    cast = cast.map(|c| c / y);
    let exposure = if rng.chance(0.5) {
        rng.range(-1.1, -0.25)
    } else {
        rng.range(0.15, 0.35)
    };
    (cast, exposure)
}

/// Colours are linear RGB.
struct Scene {
    backdrop: Backdrop,
    product: Product,
    bg_a: [f32; 3],
    bg_b: [f32; 3],
    /// Direction of the gradient (unit vector) or vignette strength in `.0`.
    dir: (f32, f32),
    shadow: f32,
    /// A hard-set backdrop; when set, it replaces `bg_a`, `bg_b` and `dir`.
    surface: Option<texture::Surface>,
}

impl Scene {
    fn random(rng: &mut Rng, backdrop: Backdrop, w: f32, h: f32) -> Scene {
        let level = rng.range(0.72, 0.9);
        let tint = [rng.range(0.98, 1.02), 1.0, rng.range(0.98, 1.02)];
        let mut bg_a = tint.map(|t| t * level);
        let mut bg_b = bg_a.map(|c| c * 0.93);
        let mut dir = (0.0, 1.0);
        let hue_bg = rng.unit();
        match backdrop {
            Backdrop::Gradient => {
                bg_b = bg_a.map(|c| c * rng.range(0.55, 0.75));
                let a: f32 = rng.range(0.3, 2.8);
                dir = (a.cos(), a.sin());
            }
            Backdrop::Vignette => dir = (rng.range(0.3, 0.45), 0.0),
            Backdrop::Coloured => {
                bg_a = hsv(hue_bg, rng.range(0.45, 0.75), rng.range(0.55, 0.8));
                bg_b = bg_a.map(|c| c * 0.85);
            }
            _ => {}
        }
        let (colour, label) = product_colours(rng, backdrop, hue_bg);
        let product = shapes::random_product(rng, w, h, colour, label);
        let shadow = if backdrop == Backdrop::ContactShadow {
            rng.range(0.4, 0.55)
        } else {
            0.0
        };
        Scene {
            backdrop,
            product,
            bg_a,
            bg_b,
            dir,
            shadow,
            surface: None,
        }
    }

    fn backdrop_at(&self, x: f32, y: f32, w: f32, h: f32) -> [f32; 3] {
        let (u, v) = (x / w, y / h);
        let mix = |t: f32| -> [f32; 3] {
            let t = t.clamp(0.0, 1.0);
            [0, 1, 2].map(|k| self.bg_a[k] * (1.0 - t) + self.bg_b[k] * t)
        };
        let mut c = match (&self.surface, self.backdrop) {
            (Some(surface), _) => surface.at(x, y, w, h),
            (None, Backdrop::Gradient) => {
                let t = (u - 0.5) * self.dir.0 + (v - 0.5) * self.dir.1 + 0.5;
                mix(t)
            }
            (None, Backdrop::Vignette) => {
                let r2 = ((u - 0.5).powi(2) + (v - 0.5).powi(2)) * 2.0;
                self.bg_a.map(|k| k * (1.0 - self.dir.0 * r2))
            }
            _ => mix(v),
        };
        if self.shadow > 0.0 {
            let (by, bx, hw) = self.product.base;
            let dx = (x - bx) / (hw * 1.35);
            let dy = (y - by) / (w.min(h) * 0.035);
            let s = self.shadow * (-(dx * dx).powi(2) - dy * dy).exp();
            c = c.map(|k| k * (1.0 - s));
        }
        c
    }

    fn render(
        &self,
        w: u32,
        h: u32,
        degradation: &Degradation,
        seed: u64,
    ) -> (RgbaImage, RgbaImage, GrayImage) {
        let Degradation {
            cast,
            exposure,
            gamma,
            noise,
            ..
        } = *degradation;
        let gains = cast.map(|c| c * exposure.exp2());
        let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = (0..h)
            .into_par_iter()
            .map(|y| {
                let mut r = Vec::with_capacity(w as usize * 4);
                let mut d = Vec::with_capacity(w as usize * 4);
                let mut m = Vec::with_capacity(w as usize);
                for x in 0..w {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    let (cover, fg) = self.product.sample(px, py, seed);
                    let bg = self.backdrop_at(px, py, w as f32, h as f32);
                    let lin: [f32; 3] = [0, 1, 2].map(|k| fg[k] * cover + bg[k] * (1.0 - cover));
                    r.extend(lin.map(encode));
                    r.push(255);
                    for k in 0..3 {
                        let mut s = linear_to_srgb(lin[k] * gains[k]);
                        if gamma != 1.0 {
                            s = s.clamp(0.0, 1.0).powf(gamma);
                        }
                        s += hash_gauss(seed, x, y, k as u32) * noise / 255.0;
                        d.push((s * 255.0 + 0.5).clamp(0.0, 255.0) as u8);
                    }
                    d.push(255);
                    m.push((cover * 255.0 + 0.5) as u8);
                }
                (r, d, m)
            })
            .collect();
        let mut reference = Vec::with_capacity((w * h * 4) as usize);
        let mut degraded = Vec::with_capacity((w * h * 4) as usize);
        let mut mask = Vec::with_capacity((w * h) as usize);
        for (r, d, m) in rows {
            reference.extend(r);
            degraded.extend(d);
            mask.extend(m);
        }
        let rgba = |v| RgbaImage::from_raw(w, h, v).expect("buffer matches size");
        (
            rgba(reference),
            rgba(degraded),
            GrayImage::from_raw(w, h, mask).expect("buffer matches size"),
        )
    }
}

fn product_colours(rng: &mut Rng, backdrop: Backdrop, hue_bg: f32) -> ([f32; 3], [f32; 3]) {
    let hue = if backdrop == Backdrop::Coloured {
        (hue_bg + rng.range(0.3, 0.7)).fract()
    } else {
        rng.unit()
    };
    let roll = rng.unit();
    let colour = if backdrop.is_light() && roll < 0.22 {
        // Light products: cream, white, pale grey.
        let v = rng.range(0.4, 0.6);
        [v * rng.range(0.97, 1.03), v, v * rng.range(0.9, 1.0)]
    } else if roll < 0.32 {
        let v = rng.range(0.02, 0.08);
        [v, v, v * 1.1]
    } else {
        hsv(hue, rng.range(0.35, 0.9), rng.range(0.25, 0.85))
    };
    let label = hsv(
        (hue + 0.5).fract(),
        rng.range(0.1, 0.8),
        rng.range(0.6, 0.95),
    );
    (colour, label)
}

/// HSV in `[0, 1]` to linear RGB (value is applied in sRGB space, then decoded).
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let rgb = match i as i32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    };
    rgb.map(crate::ops::colour::srgb_to_linear)
}

/// Writes a grey matte as an opaque RGBA (handy for viewing and for PNG round trips).
pub fn mask_to_rgba(mask: &GrayImage) -> RgbaImage {
    RgbaImage::from_fn(mask.width(), mask.height(), |x, y| {
        let Luma([v]) = *mask.get_pixel(x, y);
        Rgba([v, v, v, 255])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a: Vec<Case> = cases(3, 5, 120, 200).collect();
        let b: Vec<Case> = cases(3, 5, 120, 200).collect();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.name, y.name);
            assert_eq!(x.image, y.image);
            assert_eq!(x.mask, y.mask);
            let (w, h) = x.image.dimensions();
            assert!(
                w.max(h) <= 200 && w.min(h) >= 120 && w % 2 == 0 && h % 2 == 0,
                "{w}x{h}"
            );
            assert_eq!(x.reference.dimensions(), (w, h));
            assert_eq!(x.mask.dimensions(), (w, h));
        }
        let other = make_case(4, 0, 120, 200);
        assert_ne!(
            other.image, a[0].image,
            "a different seed gives a different case"
        );
    }

    #[test]
    fn masks_are_soft_and_backdrops_cycle() {
        let all: Vec<Case> = cases(1, 10, 150, 160).collect();
        for c in &all {
            let soft = c
                .mask
                .pixels()
                .filter(|p| p.0[0] > 0 && p.0[0] < 255)
                .count();
            let full = c.mask.pixels().filter(|p| p.0[0] == 255).count();
            assert!(
                soft > 20 && full > 1000,
                "{}: soft {soft} full {full}",
                c.name
            );
        }
        for b in Backdrop::ALL {
            assert!(all.iter().any(|c| c.backdrop == b));
            assert_eq!(Backdrop::from_name(b.name()), Some(b));
        }
        assert!(!Backdrop::Coloured.is_light() && Backdrop::Vignette.is_light());
    }

    /// A fingerprint of everything [`cases`] yields; other tests and the benchmarks depend on the
    /// stream byte for byte, so a change to the generator must not move it.
    fn stream_crc(seed: u64, count: usize, min: u32, max: u32) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for c in cases(seed, count, min, max) {
            h.update(c.name.as_bytes());
            h.update(c.image.as_raw());
            h.update(c.reference.as_raw());
            h.update(c.mask.as_raw());
            for v in c.cast.iter().chain([&c.exposure]) {
                h.update(&v.to_bits().to_le_bytes());
            }
        }
        h.finalize()
    }

    #[test]
    fn the_classic_stream_is_pinned() {
        assert_eq!(stream_crc(7, 10, 120, 200), 1_641_679_178);
        assert_eq!(stream_crc(5, 6, 300, 400), 3_143_455_004);
    }
}
