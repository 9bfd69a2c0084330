//! Marketplace framing: crop to the product, scale it to fill a share of a frame of a given
//! aspect and size, centre it, and composite it onto an exact colour.
//!
//! The product is the image's alpha when it has transparency (a cut-out from `remove-bg`, any
//! model's), else what the classical backdrop model cuts out ([`super::remove_bg::cut_out`]), or,
//! with [`Backdrop::Keep`], the whole image. Deterministic: the same input and options give the
//! same bytes. Every pixel the product does not cover is exactly the backdrop colour.

use image::{Rgba, RgbaImage};

use super::OpError;
use super::fuse::Fusion;
use super::remove_bg::{cut_out, flatten};
use super::upscale::{ResizeOptions, resize};

/// Alpha from which a pixel counts as product when measuring its bounding box.
const SOLID: u8 = 128;
/// Alpha at or below which a resampled pixel is cleared (invisible ringing, not product).
const HAZE: u8 = 3;
/// Source pixels kept around the bounding box so soft edges are not clipped.
const EDGE_PAD: u32 = 3;

/// What to do with an opaque photo's own backdrop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backdrop {
    /// Cut the product out (classical backdrop model) and put it on the frame's colour.
    #[default]
    Cut,
    /// Keep the photo whole (a scene from `replace-bg`): it is the product, padded with colour.
    Keep,
}

/// How to frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameOptions {
    /// Width : height of the frame.
    pub aspect: (u32, u32),
    /// The product's bounding box fills this share of the frame (its larger side share).
    pub fill: f32,
    /// The frame's long side, in pixels.
    pub size: u32,
    /// The frame's colour.
    pub background: [u8; 3],
    pub backdrop: Backdrop,
}

impl FrameOptions {
    /// The frame's size: `size` on the long side, the other side from the aspect.
    pub fn frame_size(&self) -> (u32, u32) {
        let (aw, ah) = (self.aspect.0.max(1) as f64, self.aspect.1.max(1) as f64);
        let size = self.size.max(1) as f64;
        if aw >= ah {
            (self.size.max(1), ((size * ah / aw).round() as u32).max(1))
        } else {
            (((size * aw / ah).round() as u32).max(1), self.size.max(1))
        }
    }
}

/// A framed image.
#[derive(Debug, Clone)]
pub struct Framed {
    /// Opaque.
    pub image: RgbaImage,
    /// How much the product was scaled (above 1: enlarged, so softer than the frame's size
    /// suggests).
    pub scale: f32,
}

/// Frames `img` as `opts` says. Fails when there is no product to frame (an empty cut-out).
pub fn frame(img: &RgbaImage, opts: &FrameOptions) -> Result<Framed, OpError> {
    let has_alpha = img.pixels().any(|p| p.0[3] < 255);
    let cut;
    let source = match (has_alpha, opts.backdrop) {
        (false, Backdrop::Cut) => {
            cut = cut_out(img, None, Fusion::Combined).image;
            &cut
        }
        _ => img,
    };
    let (x0, y0, x1, y1) = product_box(source).ok_or(OpError::NoProduct)?;
    let (bw, bh) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
    let (fw, fh) = opts.frame_size();
    let fill = f64::from(opts.fill.clamp(0.01, 1.0));
    // The largest scale at which the box fits `fill` of the frame on both axes.
    let scale = (fill * fw as f64 / bw).min(fill * fh as f64 / bh);
    // Crop with a little room for soft edges, scale, and centre the box.
    let (w, h) = source.dimensions();
    let (cx0, cy0) = (x0.saturating_sub(EDGE_PAD), y0.saturating_sub(EDGE_PAD));
    let (cx1, cy1) = ((x1 + EDGE_PAD).min(w - 1), (y1 + EDGE_PAD).min(h - 1));
    let crop = image::imageops::crop_imm(source, cx0, cy0, cx1 - cx0 + 1, cy1 - cy0 + 1).to_image();
    let sw = (((cx1 - cx0 + 1) as f64 * scale).round() as u32).max(1);
    let sh = (((cy1 - cy0 + 1) as f64 * scale).round() as u32).max(1);
    let mut scaled = resize(&crop, sw, sh, &ResizeOptions::default())?;
    // Resampling rings faintly into the transparent surround: below HAZE it is no product.
    for p in scaled.pixels_mut() {
        if p.0[3] <= HAZE {
            p.0[3] = 0;
        }
    }
    let box_cx = ((x0 + x1 + 1) as f64 / 2.0 - cx0 as f64) * scale;
    let box_cy = ((y0 + y1 + 1) as f64 / 2.0 - cy0 as f64) * scale;
    let ox = (fw as f64 / 2.0 - box_cx).round() as i64;
    let oy = (fh as f64 / 2.0 - box_cy).round() as i64;
    let mut canvas = RgbaImage::from_pixel(fw, fh, Rgba([0, 0, 0, 0]));
    image::imageops::replace(&mut canvas, &scaled, ox, oy);
    let image = flatten(&canvas, opts.background);
    Ok(Framed {
        image,
        scale: scale as f32,
    })
}

/// The bounding box (inclusive) of the pixels at least half opaque.
fn product_box(img: &RgbaImage) -> Option<(u32, u32, u32, u32)> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p.0[3] >= SOLID {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    (x0 != u32::MAX).then_some((x0, y0, x1, y1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marketplace::{Preset, check};

    fn amazon() -> FrameOptions {
        let d = Preset::AmazonMain.frame();
        FrameOptions {
            aspect: d.aspect,
            fill: d.fill,
            size: d.size,
            background: d.background,
            backdrop: Backdrop::Cut,
        }
    }

    /// A transparent `w`×`h` canvas with an opaque product box at (x, y) of `pw`×`ph`.
    fn cut_out_box(w: u32, h: u32, (x, y): (u32, u32), (pw, ph): (u32, u32)) -> RgbaImage {
        let mut img = RgbaImage::from_pixel(w, h, Rgba([0, 0, 0, 0]));
        for yy in y..y + ph {
            for xx in x..x + pw {
                img.put_pixel(xx, yy, Rgba([30, 90, 160, 255]));
            }
        }
        img
    }

    #[test]
    fn a_cut_out_is_centred_at_the_fill_on_pure_white() {
        let img = cut_out_box(640, 480, (40, 100), (200, 300));
        let out = frame(&img, &amazon()).unwrap();
        assert_eq!(out.image.dimensions(), (2000, 2000));
        let m = check(&out.image, &Preset::AmazonMain.rules());
        assert_eq!(m.violations, vec![]);
        assert!((m.fill - 0.9).abs() < 0.003, "fill {}", m.fill);
        // Centred: the product's middle row spans the middle of the frame.
        let row: Vec<u32> = (0..2000)
            .filter(|&x| out.image.get_pixel(x, 1000).0 != [255, 255, 255, 255])
            .collect();
        let mid = (row[0] + row[row.len() - 1]) / 2;
        assert!(mid.abs_diff(1000) <= 2, "centre at {mid}");
        assert!((out.scale - 6.0).abs() < 0.01, "scale {}", out.scale);
    }

    #[test]
    fn wide_frames_and_tall_products() {
        let img = cut_out_box(300, 300, (10, 10), (50, 280));
        let opts = FrameOptions {
            aspect: (4, 3),
            fill: 0.5,
            size: 800,
            ..amazon()
        };
        let out = frame(&img, &opts).unwrap();
        assert_eq!(out.image.dimensions(), (800, 600));
        let m = check(
            &out.image,
            &crate::marketplace::Rules {
                min_fill: 0.5,
                min_long_side: 800,
                max_long_side: 800,
                aspect: Some((4, 3)),
                ..Preset::AmazonMain.rules()
            },
        );
        assert_eq!(m.violations, vec![]);
        assert!((m.fill - 0.5).abs() < 0.01, "fill {}", m.fill);
    }

    #[test]
    fn an_empty_cut_out_cannot_be_framed() {
        let img = RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 0]));
        assert!(matches!(frame(&img, &amazon()), Err(OpError::NoProduct)));
    }

    #[test]
    fn framing_is_deterministic() {
        let img = cut_out_box(320, 240, (100, 50), (90, 120));
        let a = frame(&img, &amazon()).unwrap().image;
        let b = frame(&img, &amazon()).unwrap().image;
        assert!(a == b);
    }

    #[test]
    fn a_kept_scene_is_padded_not_cut() {
        let mut scene = RgbaImage::from_pixel(400, 200, Rgba([200, 180, 120, 255]));
        scene.put_pixel(10, 10, Rgba([0, 0, 0, 255]));
        let opts = FrameOptions {
            fill: 1.0,
            size: 800,
            backdrop: Backdrop::Keep,
            ..amazon()
        };
        let out = frame(&scene, &opts).unwrap().image;
        assert_eq!(out.dimensions(), (800, 800));
        // The scene spans the full width, white above and below it.
        assert_eq!(out.get_pixel(400, 400).0, [200, 180, 120, 255]);
        assert_eq!(out.get_pixel(400, 10).0, [255, 255, 255, 255]);
        assert_eq!(out.get_pixel(3, 400).0, [200, 180, 120, 255]);
    }
}
