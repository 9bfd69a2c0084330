//! Extending the canvas (outpainting) locally: the new margins continue the backdrop fitted to
//! the border ([`BackdropModel`], held constant beyond the frame instead of extrapolated), blended
//! from the real edge pixels over a short ramp so there is no seam. Seamless on plain sweeps,
//! white, gradients and vignettes; on textured or busy backdrops the extension is flat, which the
//! quality checks say ([`Extension::textured`]), so escalation can send those to a model.

use image::RgbaImage;
use rayon::prelude::*;

use super::backdrop::BackdropModel;
use super::colour::{decode, encode};

/// Pixels over which the extension blends from the replicated edge to the backdrop model.
const RAMP: f32 = 24.0;
/// Backdrop texture (see [`BackdropModel::texture`]) above which a flat extension shows.
pub const PLAIN_TEXTURE: f32 = 0.009;

/// Pixels added on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Margins {
    pub left: u32,
    pub right: u32,
    pub up: u32,
    pub down: u32,
}

impl Margins {
    /// The size of a `w`×`h` image extended by these margins.
    pub fn extended(&self, (w, h): (u32, u32)) -> (u32, u32) {
        (w + self.left + self.right, h + self.up + self.down)
    }

    /// The margins that bring `w`×`h` to the aspect `aw`:`ah`, split evenly between the two
    /// sides that grow (none when it is already wider or taller as asked).
    pub fn to_aspect((w, h): (u32, u32), (aw, ah): (u32, u32)) -> Margins {
        let (w64, h64, aw, ah) = (w as u64, h as u64, aw.max(1) as u64, ah.max(1) as u64);
        if w64 * ah < h64 * aw {
            // Too narrow: widen.
            let target = (h64 * aw).div_ceil(ah);
            let add = (target - w64) as u32;
            Margins {
                left: add / 2,
                right: add - add / 2,
                ..Margins::default()
            }
        } else {
            let target = (w64 * ah).div_ceil(aw);
            let add = target.saturating_sub(h64) as u32;
            Margins {
                up: add / 2,
                down: add - add / 2,
                ..Margins::default()
            }
        }
    }

    /// These margins scaled by `s` (for an image sent at another size), rounded.
    pub fn scaled(&self, s: f64) -> Margins {
        let f = |v: u32| (v as f64 * s).round() as u32;
        Margins {
            left: f(self.left),
            right: f(self.right),
            up: f(self.up),
            down: f(self.down),
        }
    }
}

/// An extended image.
#[derive(Debug, Clone)]
pub struct Extension {
    pub image: RgbaImage,
    /// The backdrop was textured or could not be modelled: the flat extension shows.
    pub textured: bool,
}

/// Extends `img` by `m`; the original pixels are kept exactly at (`m.left`, `m.up`).
pub fn extend(img: &RgbaImage, m: Margins) -> Extension {
    let (w, h) = img.dimensions();
    let (ow, oh) = m.extended((w, h));
    let model = BackdropModel::fit(img);
    let textured = model
        .as_ref()
        .is_none_or(|b| b.texture(img) > PLAIN_TEXTURE);
    let (wf, hf) = (w as f32, h as f32);
    let mut out = RgbaImage::new(ow, oh);
    out.par_chunks_mut(ow as usize * 4)
        .enumerate()
        .for_each(|(oy, row)| {
            for (ox, p) in row.chunks_mut(4).enumerate() {
                let (x, y) = (ox as i64 - m.left as i64, oy as i64 - m.up as i64);
                let inside = x >= 0 && y >= 0 && x < w as i64 && y < h as i64;
                if inside {
                    p.copy_from_slice(&img.get_pixel(x as u32, y as u32).0);
                    continue;
                }
                let cx = x.clamp(0, w as i64 - 1) as u32;
                let cy = y.clamp(0, h as i64 - 1) as u32;
                let edge = img.get_pixel(cx, cy).0;
                let colour = match &model {
                    Some(b) => {
                        let dist = ((x - cx as i64).abs().max((y - cy as i64).abs())) as f32;
                        let t = (dist / RAMP).min(1.0);
                        let px = (cx as f32 + 0.5).clamp(0.0, wf);
                        let py = (cy as f32 + 0.5).clamp(0.0, hf);
                        let back = b.at(px, py);
                        let mut c = [0u8; 4];
                        for k in 0..3 {
                            c[k] = encode(decode(edge[k]) * (1.0 - t) + back[k] * t);
                        }
                        c[3] = edge[3];
                        c
                    }
                    None => edge,
                };
                p.copy_from_slice(&colour);
            }
        });
    Extension {
        image: out,
        textured,
    }
}

/// Pastes `original` into `extended` at (`m.left`, `m.up`): a model's extension with the
/// original pixels exactly as they were.
pub fn keep_original(extended: &mut RgbaImage, original: &RgbaImage, m: Margins) {
    image::imageops::replace(extended, original, i64::from(m.left), i64::from(m.up));
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    /// A product on a smooth light-grey vertical gradient.
    fn sweep(w: u32, h: u32) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, y| {
            let inside = x > w / 3 && x < 2 * w / 3 && y > h / 3 && y < 2 * h / 3;
            if inside {
                Rgba([150, 40, 40, 255])
            } else {
                let v = 230 - (y * 20 / h) as u8;
                Rgba([v, v, v, 255])
            }
        })
    }

    #[test]
    fn margins_reach_an_aspect() {
        assert_eq!(
            Margins::to_aspect((300, 200), (1, 1)),
            Margins {
                up: 50,
                down: 50,
                ..Margins::default()
            }
        );
        assert_eq!(
            Margins::to_aspect((200, 300), (1, 1)),
            Margins {
                left: 50,
                right: 50,
                ..Margins::default()
            }
        );
        let m = Margins::to_aspect((301, 200), (16, 9));
        let (w, h) = m.extended((301, 200));
        assert!((w as f64 / h as f64 - 16.0 / 9.0).abs() < 0.01, "{w}x{h}");
        assert_eq!(Margins::to_aspect((400, 400), (1, 1)), Margins::default());
    }

    #[test]
    fn a_sweep_continues_without_a_seam_and_the_photo_is_kept() {
        let img = sweep(200, 150);
        let m = Margins {
            left: 40,
            right: 40,
            up: 0,
            down: 30,
        };
        let out = extend(&img, m);
        assert!(!out.textured);
        assert_eq!(out.image.dimensions(), (280, 180));
        // The original, exactly.
        assert_eq!(
            out.image.get_pixel(40 + 100, 75).0,
            img.get_pixel(100, 75).0
        );
        // Across the seam and far out, the backdrop continues within a couple of levels.
        for (ox, oy, ix, iy) in [(39, 10, 0, 10), (0, 100, 0, 100), (279, 140, 199, 140)] {
            let a = out.image.get_pixel(ox, oy).0[0] as i32;
            let b = img.get_pixel(ix, iy).0[0] as i32;
            assert!((a - b).abs() <= 2, "({ox},{oy}) {a} vs edge {b}");
        }
        let bottom = out.image.get_pixel(100, 179).0[0] as i32;
        assert!(
            (bottom - img.get_pixel(60, 149).0[0] as i32).abs() <= 3,
            "{bottom}"
        );
    }

    #[test]
    fn a_textured_backdrop_is_said() {
        let img = RgbaImage::from_fn(160, 120, |x, y| {
            let v = if (x / 6 + y / 6) % 2 == 0 { 120 } else { 200 };
            Rgba([v, v - 20, v - 40, 255])
        });
        assert!(
            extend(
                &img,
                Margins {
                    left: 10,
                    ..Margins::default()
                }
            )
            .textured
        );
    }
}
