//! Output images for the Bedrock double: real pixels of the right size, cheaply made.
//!
//! Background removal keys out pixels close to the mean border colour (a plausible alpha for
//! product shots on plain backdrops); variation resizes and auto-levels; upscale resizes.

use std::io::Cursor;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageFormat, RgbaImage};

/// RGBA, same size, alpha 0 near the border colour ramping to 255 beyond a distance of 60.
pub(super) fn remove_bg(img: &DynamicImage) -> DynamicImage {
    let rgba = img.to_rgba8();
    let bg = border_mean(&rgba);
    let mut out = rgba.clone();
    for p in out.pixels_mut() {
        let d: f64 = (0..3)
            .map(|c| (f64::from(p[c]) - bg[c]).powi(2))
            .sum::<f64>()
            .sqrt();
        p[3] = ((d - 30.0) * 255.0 / 30.0).clamp(0.0, 255.0) as u8;
    }
    DynamicImage::ImageRgba8(out)
}

/// `cut` with everything below its kept pixels' vertical middle made transparent.
pub(super) fn crop_lower_half(cut: DynamicImage) -> DynamicImage {
    let mut rgba = cut.to_rgba8();
    let rows: Vec<u32> = rgba
        .enumerate_pixels()
        .filter(|(_, _, p)| p[3] >= 128)
        .map(|(_, y, _)| y)
        .collect();
    if let (Some(top), Some(bottom)) = (rows.iter().min(), rows.iter().max()) {
        let cut_at = (top + bottom) / 2;
        for (_, y, p) in rgba.enumerate_pixels_mut() {
            if y > cut_at {
                p[3] = 0;
            }
        }
    }
    DynamicImage::ImageRgba8(rgba)
}

fn border_mean(img: &RgbaImage) -> [f64; 3] {
    let (w, h) = img.dimensions();
    let mut sum = [0.0; 3];
    let mut n = 0.0;
    for (x, y, p) in img.enumerate_pixels() {
        if x == 0 || y == 0 || x == w - 1 || y == h - 1 {
            for c in 0..3 {
                sum[c] += f64::from(p[c]);
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n)
}

/// `w`×`h` RGB, each channel stretched to the full range ("even lighting").
pub(super) fn variation(img: &DynamicImage, w: u32, h: u32) -> DynamicImage {
    let mut rgb = imageops::resize(&img.to_rgb8(), w, h, FilterType::Triangle);
    for c in 0..3 {
        let (lo, hi) = rgb
            .pixels()
            .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[c]), hi.max(p[c])));
        if hi > lo {
            for p in rgb.pixels_mut() {
                p[c] = ((u32::from(p[c] - lo) * 255) / u32::from(hi - lo)) as u8;
            }
        }
    }
    DynamicImage::ImageRgb8(rgb)
}

/// The "scene" the double paints: a green-to-blue gradient wherever the mask is white (or,
/// without a mask, the image is transparent); everything else kept.
pub(super) fn inpaint(img: &DynamicImage, mask: Option<&image::GrayImage>) -> DynamicImage {
    let mut out = img.to_rgba8();
    let h = out.height().max(1);
    for (x, y, p) in out.enumerate_pixels_mut() {
        let repaint = match mask {
            Some(m) => m.get_pixel(x, y)[0] >= 128,
            None => p[3] < 128,
        };
        if repaint {
            let t = (y * 255 / h) as u8;
            *p = image::Rgba([20, 255 - t, t, 255]);
        }
    }
    DynamicImage::ImageRgba8(out)
}

/// The middle third of the image painted yellow (what the search found, replaced).
pub(super) fn search_replace(img: &DynamicImage) -> DynamicImage {
    let mut out = img.to_rgba8();
    let (w, h) = out.dimensions();
    for (x, y, p) in out.enumerate_pixels_mut() {
        if x >= w / 3 && x < 2 * w / 3 && y >= h / 3 && y < 2 * h / 3 {
            *p = image::Rgba([250, 200, 0, 255]);
        }
    }
    DynamicImage::ImageRgba8(out)
}

/// The image with margins (left, right, up, down) painted a flat purple, the original in place.
pub(super) fn outpaint(img: &DynamicImage, [l, r, u, d]: [u32; 4]) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let mut out = RgbaImage::from_pixel(w + l + r, h + u + d, image::Rgba([120, 40, 160, 255]));
    imageops::replace(&mut out, &img.to_rgba8(), i64::from(l), i64::from(u));
    DynamicImage::ImageRgba8(out)
}

/// `w`×`h`, resampled.
pub(super) fn upscale(img: &DynamicImage, w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(imageops::resize(&img.to_rgb8(), w, h, FilterType::Triangle))
}

/// Base64 of the image in `format` (png | jpeg | webp).
pub(super) fn encode_b64(img: &DynamicImage, format: &str) -> String {
    let mut buf = Cursor::new(Vec::new());
    let (fmt, img) = match format {
        "jpeg" => (ImageFormat::Jpeg, DynamicImage::ImageRgb8(img.to_rgb8())),
        "webp" => (ImageFormat::WebP, DynamicImage::ImageRgba8(img.to_rgba8())),
        _ => (ImageFormat::Png, img.clone()),
    };
    img.write_to(&mut buf, fmt).expect("in-memory encode");
    B64.encode(buf.into_inner())
}

/// A picture "of" `prompt` at `w`×`h`: a light backdrop and an ellipse whose colour follows the
/// prompt (so different prompts give different images, and none is blank).
pub(super) fn generate(prompt: &str, w: u32, h: u32) -> DynamicImage {
    let hash = prompt.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    let colour = [
        (hash & 0xff) as u8 / 2 + 40,
        ((hash >> 8) & 0xff) as u8 / 2 + 40,
        ((hash >> 16) & 0xff) as u8 / 2 + 40,
    ];
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    let (rx, ry) = (f64::from(w) * 0.3, f64::from(h) * 0.3);
    let img = RgbaImage::from_fn(w, h, |x, y| {
        let (dx, dy) = ((f64::from(x) - cx) / rx, (f64::from(y) - cy) / ry);
        if dx * dx + dy * dy <= 1.0 {
            image::Rgba([colour[0], colour[1], colour[2], 255])
        } else {
            image::Rgba([245, 245, 243, 255])
        }
    });
    DynamicImage::ImageRgba8(img)
}

/// The mask's pixels painted the border's mean colour (the object gone); every other pixel's red
/// nudged up by 4, as a model's re-encoding changes pixels it was not asked to.
pub(super) fn erase(img: &DynamicImage, mask: Option<&image::GrayImage>) -> DynamicImage {
    let mut out = img.to_rgba8();
    let bg = border_mean(&out).map(|v| v.round() as u8);
    for (x, y, p) in out.enumerate_pixels_mut() {
        let inside = mask.is_some_and(|m| m.get_pixel(x, y)[0] >= 128);
        if inside {
            *p = image::Rgba([bg[0], bg[1], bg[2], 255]);
        } else {
            p[0] = p[0].saturating_add(4);
        }
    }
    DynamicImage::ImageRgba8(out)
}

/// The image a little brighter and warmer (an instruction edit's answer), at its size.
pub(super) fn relight(img: &DynamicImage) -> DynamicImage {
    let mut out = img.to_rgba8();
    for p in out.pixels_mut() {
        p[0] = p[0].saturating_add(12);
        p[1] = p[1].saturating_add(8);
        p[2] = p[2].saturating_add(4);
    }
    DynamicImage::ImageRgba8(out)
}

/// The size for the first `W:H` ratio named in `text` (about one megapixel), 1024×1024 if none.
pub(super) fn size_for_ratio_in(text: &str) -> (u32, u32) {
    let ratio = text.split_whitespace().find_map(|word| {
        let word = word
            .trim_matches(|c: char| !c.is_ascii_digit() && c != ':')
            .trim_matches(':');
        let (w, h) = word.split_once(':')?;
        Some((w.parse::<f64>().ok()?, h.parse::<f64>().ok()?))
    });
    match ratio {
        Some((w, h)) if w > 0.0 && h > 0.0 => {
            let side = |v: f64| ((v / 64.0).round() * 64.0) as u32;
            (
                side((1_048_576.0 * w / h).sqrt()),
                side((1_048_576.0 * h / w).sqrt()),
            )
        }
        _ => (1024, 1024),
    }
}

/// Style transfer: the image at its own size, a third of the way toward the style picture's
/// mean colour (so a test can see the style picture reached the model).
pub(super) fn style_transfer(img: &DynamicImage, style: &DynamicImage) -> DynamicImage {
    let s = style.to_rgb8();
    let n = f64::from(s.width()) * f64::from(s.height());
    let mut mean = [0f64; 3];
    for p in s.pixels() {
        for c in 0..3 {
            mean[c] += f64::from(p[c]) / n;
        }
    }
    let mut out = img.to_rgba8();
    for p in out.pixels_mut() {
        for c in 0..3 {
            p[c] = (f64::from(p[c]) * 2.0 / 3.0 + mean[c] / 3.0).round() as u8;
        }
    }
    DynamicImage::ImageRgba8(out)
}
