//! Pixel plumbing for the Bedrock adapters: resize, flatten onto white, encode, read alpha.
//!
//! Synchronous and pure (runs on rayon with the rest of encode/decode). Owns nothing about
//! request bodies. Applying a returned matte to the original is `ops::apply_alpha`, shared with
//! the local remove-bg.

use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{GrayImage, ImageFormat, RgbImage, RgbaImage};

/// Resamples to exactly `w`×`h` (a no-op copy when the size already matches).
pub(super) fn resize(img: &RgbaImage, w: u32, h: u32) -> RgbaImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    imageops::resize(img, w, h, FilterType::CatmullRom)
}

/// Whether any pixel is not fully opaque.
pub(super) fn has_transparency(img: &RgbaImage) -> bool {
    img.pixels().any(|p| p[3] != 255)
}

/// Composites onto white and drops alpha: Nova and Titan accept 8-bit RGB only.
pub(super) fn flatten_on_white(img: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y);
        let a = u32::from(p[3]);
        let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    })
}

/// The alpha channel, resampled to `w`×`h`.
pub(super) fn alpha_at(img: &RgbaImage, w: u32, h: u32) -> GrayImage {
    let a = GrayImage::from_fn(img.width(), img.height(), |x, y| {
        image::Luma([img.get_pixel(x, y)[3]])
    });
    if a.dimensions() == (w, h) {
        a
    } else {
        imageops::resize(&a, w, h, FilterType::Triangle)
    }
}

/// The mask of what a model may repaint: white where `cut_out` is transparent (the backdrop),
/// black on the product, at `w`×`h`, as a PNG.
pub(super) fn backdrop_mask_png(cut_out: &RgbaImage, w: u32, h: u32) -> Option<Vec<u8>> {
    let mut mask = alpha_at(cut_out, w, h);
    for p in mask.pixels_mut() {
        // Pure black and white only; half-transparent edges stay the product's.
        p.0[0] = if p.0[0] < 128 { 255 } else { 0 };
    }
    let mut buf = Cursor::new(Vec::new());
    mask.write_to(&mut buf, ImageFormat::Png).ok()?;
    Some(buf.into_inner())
}

/// A mask file's pixels as the black-and-white PNG a model takes, at `w`×`h`: white where the
/// mask is at least half white.
pub(super) fn mask_png(mask: &GrayImage, w: u32, h: u32) -> Option<Vec<u8>> {
    let mut m = if mask.dimensions() == (w, h) {
        mask.clone()
    } else {
        imageops::resize(mask, w, h, FilterType::Triangle)
    };
    for p in m.pixels_mut() {
        p.0[0] = if p.0[0] >= 128 { 255 } else { 0 };
    }
    let mut buf = Cursor::new(Vec::new());
    m.write_to(&mut buf, ImageFormat::Png).ok()?;
    Some(buf.into_inner())
}

/// Encodes RGB as PNG, or as JPEG (quality 92) if the PNG exceeds `max_bytes`.
/// `None` when even the JPEG is too large.
pub(super) fn encode_rgb(img: &RgbImage, max_bytes: u64, jpeg_ok: bool) -> Option<Vec<u8>> {
    let png = encode(img, ImageFormat::Png)?;
    if png.len() as u64 <= max_bytes {
        return Some(png);
    }
    if !jpeg_ok {
        return None;
    }
    let mut buf = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 92);
    img.write_with_encoder(enc).ok()?;
    (buf.len() as u64 <= max_bytes).then_some(buf)
}

fn encode(img: &RgbImage, format: ImageFormat) -> Option<Vec<u8>> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).ok()?;
    Some(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_and_alpha_round_trip() {
        let mut img = RgbaImage::from_pixel(4, 2, image::Rgba([0, 0, 0, 255]));
        img.put_pixel(0, 0, image::Rgba([0, 0, 0, 0]));
        assert!(has_transparency(&img));
        let flat = flatten_on_white(&img);
        assert_eq!(flat.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(flat.get_pixel(1, 0).0, [0, 0, 0]);
        assert_eq!(alpha_at(&img, 8, 4).dimensions(), (8, 4));
    }

    #[test]
    fn falls_back_to_jpeg_when_png_is_too_big() {
        let noise = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 37 + y * 91) as u8, (x * y) as u8, 7])
        });
        let png = encode_rgb(&noise, u64::MAX, true).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let jpeg = encode_rgb(&noise, png.len() as u64 - 1, true).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert!(encode_rgb(&noise, 10, true).is_none());
    }
}
