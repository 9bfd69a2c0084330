//! Background replacement by compositing: the product (a cut-out's alpha, else what the
//! classical backdrop model cuts out) over a colour or a background picture, with an optional
//! soft contact shadow where the product stands. Linear-light compositing, the product's own
//! pixels untouched. The remote routes (a scene from a prompt) live with the adapters; they
//! reuse [`product_matte`] and [`composite`] to put the original product back over the scene.

use image::RgbaImage;
use rayon::prelude::*;

use super::colour::{decode, encode};
use super::filter::Plane;
use super::fuse::Fusion;
use super::remove_bg::{CutOut, cut_out};

/// What goes behind the product.
#[derive(Debug, Clone, Copy)]
pub enum Behind<'a> {
    Colour([u8; 3]),
    /// Scaled to cover the frame (cropped, centred).
    Picture(&'a RgbaImage),
}

/// The product of `img` as a cut-out (its alpha when it has transparency, else the classical
/// backdrop model's), and which pixels looked like the backdrop (for the quality checks).
pub fn product_matte(img: &RgbaImage) -> CutOut {
    if img.pixels().any(|p| p.0[3] < 255) {
        return CutOut {
            image: img.clone(),
            backdrop_like: None,
        };
    }
    cut_out(img, None, Fusion::Combined)
}

/// The cut-out `product` over `behind`, with a contact shadow of `shadow` strength (0: none,
/// 1: the darkest). Opaque, the product's size.
pub fn replace(product: &RgbaImage, behind: Behind<'_>, shadow: f32) -> RgbaImage {
    let (w, h) = product.dimensions();
    let mut back = match behind {
        Behind::Colour(c) => RgbaImage::from_pixel(w, h, image::Rgba([c[0], c[1], c[2], 255])),
        Behind::Picture(p) => cover(p, w, h),
    };
    if shadow > 0.0
        && let Some(s) = contact_shadow(product, shadow)
    {
        darken(&mut back, &s);
    }
    composite(product, &back)
}

/// `product` over the opaque `back` (same size) in linear light: alpha 255 keeps the product's
/// pixel, alpha 0 the background's, bit for bit.
pub fn composite(product: &RgbaImage, back: &RgbaImage) -> RgbaImage {
    let mut out = back.clone();
    out.par_chunks_mut(4)
        .zip(product.par_chunks(4))
        .for_each(|(o, p)| {
            let a = p[3];
            match a {
                0 => {}
                255 => o[..3].copy_from_slice(&p[..3]),
                _ => {
                    let a = f32::from(a) / 255.0;
                    for k in 0..3 {
                        o[k] = encode(decode(p[k]) * a + decode(o[k]) * (1.0 - a));
                    }
                }
            }
            o[3] = 255;
        });
    out
}

/// `pic` scaled to cover `w`×`h` and centre-cropped.
fn cover(pic: &RgbaImage, w: u32, h: u32) -> RgbaImage {
    let (pw, ph) = (pic.width().max(1) as f64, pic.height().max(1) as f64);
    let s = (w as f64 / pw).max(h as f64 / ph);
    let (sw, sh) = (
        ((pw * s).ceil() as u32).max(w),
        ((ph * s).ceil() as u32).max(h),
    );
    let scaled = image::imageops::resize(pic, sw, sh, image::imageops::FilterType::Lanczos3);
    let (x, y) = ((sw - w) / 2, (sh - h) / 2);
    let mut out = image::imageops::crop_imm(&scaled, x, y, w, h).to_image();
    for p in out.pixels_mut() {
        p.0[3] = 255;
    }
    out
}

/// A soft elliptical shadow under the product's base: as wide as the product's lowest tenth,
/// flat, blurred; opacity up to `strength` × 0.6. `None` when the product is empty.
fn contact_shadow(product: &RgbaImage, strength: f32) -> Option<Plane> {
    let (w, h) = (product.width() as usize, product.height() as usize);
    let solid = |x: usize, y: usize| product.get_pixel(x as u32, y as u32).0[3] >= 128;
    let (mut top, mut bottom) = (None, None);
    for y in 0..h {
        if (0..w).any(|x| solid(x, y)) {
            top.get_or_insert(y);
            bottom = Some(y);
        }
    }
    let (top, bottom) = (top?, bottom?);
    let base_from = bottom - (bottom - top) / 10;
    let (mut x0, mut x1) = (usize::MAX, 0);
    for y in base_from..=bottom {
        for x in 0..w {
            if solid(x, y) {
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
        }
    }
    let cx = (x0 + x1) as f32 / 2.0;
    let rx = ((x1 - x0 + 1) as f32 / 2.0 * 1.05).max(2.0);
    let ry = (rx * 0.12).max(1.5);
    let cy = bottom as f32 - ry * 0.3;
    let opacity = strength.clamp(0.0, 1.0) * 0.6;
    let ellipse = Plane::from_fn(w, h, |x, y| {
        let dx = (x as f32 - cx) / rx;
        let dy = (y as f32 - cy) / ry;
        if dx * dx + dy * dy <= 1.0 {
            opacity
        } else {
            0.0
        }
    });
    Some(ellipse.gaussian(ry.max(2.0)))
}

/// Multiplies the background's linear light by `1 - shadow`.
fn darken(back: &mut RgbaImage, shadow: &Plane) {
    back.par_chunks_mut(4).enumerate().for_each(|(i, p)| {
        let s = shadow.data[i];
        if s > 0.0 {
            for c in &mut p[..3] {
                *c = encode(decode(*c) * (1.0 - s));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    fn cut_out_box() -> RgbaImage {
        let mut img = RgbaImage::from_pixel(120, 100, Rgba([0, 0, 0, 0]));
        for y in 20..80 {
            for x in 40..80 {
                img.put_pixel(x, y, Rgba([200, 30, 30, 255]));
            }
        }
        // A soft edge pixel.
        img.put_pixel(39, 50, Rgba([200, 30, 30, 128]));
        img
    }

    #[test]
    fn the_product_is_kept_and_the_colour_is_exact_elsewhere() {
        let out = replace(&cut_out_box(), Behind::Colour([10, 120, 200]), 0.0);
        assert_eq!(out.get_pixel(50, 50).0, [200, 30, 30, 255]);
        assert_eq!(out.get_pixel(5, 5).0, [10, 120, 200, 255]);
        let edge = out.get_pixel(39, 50).0;
        assert!(edge[0] > 10 && edge[0] < 200 && edge[3] == 255, "{edge:?}");
    }

    #[test]
    fn the_shadow_falls_under_the_product_only() {
        let out = replace(&cut_out_box(), Behind::Colour([240, 240, 240]), 1.0);
        // Just below the base, centred: darker than the backdrop.
        let under = out.get_pixel(60, 81).0[0];
        assert!(under < 225, "under the product: {under}");
        // Far above and to the sides: untouched.
        assert_eq!(out.get_pixel(60, 5).0, [240, 240, 240, 255]);
        assert_eq!(out.get_pixel(2, 80).0, [240, 240, 240, 255]);
        // The product itself is never shaded.
        assert_eq!(out.get_pixel(60, 79).0, [200, 30, 30, 255]);
    }

    #[test]
    fn a_picture_covers_the_frame() {
        let pic = RgbaImage::from_fn(30, 10, |x, _| {
            if x < 15 {
                Rgba([0, 255, 0, 255])
            } else {
                Rgba([0, 0, 255, 255])
            }
        });
        let out = replace(&cut_out_box(), Behind::Picture(&pic), 0.0);
        assert_eq!(out.dimensions(), (120, 100));
        assert_eq!(out.get_pixel(2, 50).0[1], 255, "left is green");
        assert_eq!(out.get_pixel(117, 50).0[2], 255, "right is blue");
    }

    #[test]
    fn an_opaque_photo_is_cut_out_first() {
        let mut photo = RgbaImage::from_pixel(160, 120, Rgba([235, 235, 235, 255]));
        for y in 30..90 {
            for x in 50..110 {
                photo.put_pixel(x, y, Rgba([40, 60, 160, 255]));
            }
        }
        let cut = product_matte(&photo);
        let out = replace(&cut.image, Behind::Colour([255, 200, 0]), 0.0);
        assert_eq!(out.get_pixel(5, 5).0, [255, 200, 0, 255]);
        assert_eq!(out.get_pixel(80, 60).0, [40, 60, 160, 255]);
    }
}
