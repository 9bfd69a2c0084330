//! Resampling (up and down) with a Lanczos3 kernel via fast_image_resize (SIMD), alpha
//! premultiplied so transparent neighbours never bleed dark fringes, plus an optional mild
//! unsharp mask. Used for the upscale step and for fitting remote-model size limits.

use super::OpError;
use super::filter::Plane;
use fast_image_resize::{FilterType, ResizeAlg, Resizer};
use image::RgbaImage;
use rayon::prelude::*;

/// How to resample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResizeOptions {
    /// Unsharp-mask amount in `0..=1` applied after resampling; 0 (the default) disables it.
    pub sharpen: f32,
}

/// Resamples `img` to exactly `width`×`height`.
pub fn resize(
    img: &RgbaImage,
    width: u32,
    height: u32,
    opts: &ResizeOptions,
) -> Result<RgbaImage, OpError> {
    let (src_w, src_h) = img.dimensions();
    if src_w == 0 || src_h == 0 || width == 0 || height == 0 {
        return Err(OpError::ZeroSize {
            src_w,
            src_h,
            dst_w: width,
            dst_h: height,
        });
    }
    let mut out = RgbaImage::new(width, height);
    if (src_w, src_h) == (width, height) {
        out.clone_from(img);
    } else {
        let options = fast_image_resize::ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .use_alpha(true);
        Resizer::new().resize(img, &mut out, &options)?;
    }
    let amount = opts.sharpen.clamp(0.0, 1.0);
    if amount > 0.0 {
        unsharp(&mut out, amount);
    }
    Ok(out)
}

/// Unsharp mask (radius ~1 px) on straight colour against an alpha-weighted local mean, so a
/// transparent neighbour never darkens an edge; alpha untouched.
fn unsharp(img: &mut RgbaImage, amount: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let gain = amount * 1.2;
    let weight =
        Plane::from_fn(w, h, |x, y| img.get_pixel(x as u32, y as u32).0[3] as f32).gaussian(1.0);
    let blurred: Vec<Plane> = (0..3)
        .map(|c| {
            Plane::from_fn(w, h, |x, y| {
                let p = img.get_pixel(x as u32, y as u32).0;
                p[c] as f32 * p[3] as f32
            })
            .gaussian(1.0)
        })
        .collect();
    img.par_chunks_mut(w * 4).enumerate().for_each(|(y, row)| {
        for (x, p) in row.chunks_mut(4).enumerate() {
            let wsum = weight.at(x, y);
            if p[3] == 0 || wsum <= 0.0 {
                continue;
            }
            for c in 0..3 {
                let v = p[c] as f32;
                let local = blurred[c].at(x, y) / wsum;
                p[c] = (v + gain * (v - local)).clamp(0.0, 255.0).round() as u8;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testset::{cases, metrics::psnr};
    use image::{Rgba, imageops};

    #[test]
    fn zero_sizes_are_errors_and_sizes_are_exact() {
        let img = RgbaImage::from_pixel(10, 8, Rgba([1, 2, 3, 255]));
        assert!(matches!(
            resize(&img, 0, 5, &ResizeOptions::default()),
            Err(OpError::ZeroSize { .. })
        ));
        assert!(resize(&RgbaImage::new(0, 3), 5, 5, &ResizeOptions::default()).is_err());
        for (w, h) in [(21, 16), (5, 3), (10, 8), (1, 1)] {
            let out = resize(&img, w, h, &ResizeOptions { sharpen: 0.5 }).unwrap();
            assert_eq!(out.dimensions(), (w, h));
            assert!(
                out.pixels().all(|p| p.0 == [1, 2, 3, 255]),
                "flat stays flat"
            );
        }
    }

    #[test]
    fn no_dark_fringe_around_transparent_surround() {
        // A white opaque square on fully transparent *black*: unpremultiplied resampling
        // would drag the black into the edge pixels.
        let img = RgbaImage::from_fn(40, 40, |x, y| {
            if (10..30).contains(&x) && (10..30).contains(&y) {
                Rgba([255, 255, 255, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        });
        let out = resize(&img, 100, 100, &ResizeOptions { sharpen: 0.3 }).unwrap();
        let edge: Vec<_> = out.pixels().filter(|p| p.0[3] >= 16).collect();
        assert!(
            edge.iter().any(|p| p.0[3] < 240),
            "there are soft edge pixels"
        );
        let darkest = edge.iter().map(|p| p.0[0]).min();
        assert!(darkest >= Some(240), "no dark fringe: {darkest:?}");
    }

    #[test]
    fn upscale_2x_psnr_at_least_image_lanczos3() {
        let (mut ours_sum, mut theirs_sum) = (0.0, 0.0);
        for case in cases(11, 4, 240, 320) {
            let orig = case.reference;
            let (w, h) = orig.dimensions();
            let small = resize(&orig, w / 2, h / 2, &ResizeOptions::default()).unwrap();
            let ours = resize(&small, w, h, &ResizeOptions::default()).unwrap();
            let theirs = imageops::resize(&small, w, h, imageops::FilterType::Lanczos3);
            ours_sum += psnr(&ours, &orig);
            theirs_sum += psnr(&theirs, &orig);
        }
        assert!(
            ours_sum >= theirs_sum - 0.05 * 4.0,
            "ours {ours_sum} vs image {theirs_sum}"
        );
    }
}
