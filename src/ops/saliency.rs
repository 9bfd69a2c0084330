//! Salient-object segmentation with a U²-Net-family network (ONNX), run in-process by tract.
//!
//! The network sees the photo resized to its input square, scaled by the image's maximum and
//! normalised per channel (ImageNet mean and std), exactly as rembg feeds the same weights; its
//! first output is the fused saliency map, min-max normalised and resized back to the photo. The
//! weights come in as bytes (reading and verifying the file is the caller's job), so this stays
//! pure and synchronous like every op. One inference runs single-threaded; the scheduler runs one
//! image per core.

use std::io::Cursor;
use std::sync::Arc;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{GrayImage, RgbaImage};
use tract_onnx::prelude::*;

use super::OpError;

/// How a network wants its input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetInput {
    /// The side of the square input (320 for U²-Net).
    pub side: u32,
    /// Per-channel mean and standard deviation, applied after scaling by the image's maximum.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// How sure the network was of an image, from its raw (not normalised) map: a map is always
/// stretched to `[0, 1]` for the matte, so only the raw values tell a clear product from a guess.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkConfidence {
    /// Share of the map above one half.
    pub confident: f32,
    /// Of the map above 0.1, the share below 0.9.
    pub uncertain: f32,
}

/// A saliency map at the photo's size and how sure the network was.
#[derive(Debug, Clone)]
pub struct Saliency {
    /// 255 = the salient object.
    pub map: GrayImage,
    pub confidence: NetworkConfidence,
}

/// A loaded, optimised network. Cheap to share (`Arc` inside); safe to run from many threads.
#[derive(Clone)]
pub struct SaliencyNet {
    plan: Arc<TypedRunnableModel>,
    input: NetInput,
}

impl std::fmt::Debug for SaliencyNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaliencyNet")
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl SaliencyNet {
    /// Loads and optimises the ONNX graph in `onnx` for `input`.
    pub fn from_onnx(onnx: &[u8], input: NetInput) -> Result<SaliencyNet, OpError> {
        let side = input.side as usize;
        let fail = |e: TractError| OpError::Network(e.to_string());
        let plan = tract_onnx::onnx()
            .model_for_read(&mut Cursor::new(onnx))
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, side, side]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(fail)?;
        Ok(SaliencyNet { plan, input })
    }

    /// The saliency map of `img` and how sure the network was.
    pub fn assess(&self, img: &RgbaImage) -> Result<Saliency, OpError> {
        let side = self.input.side;
        let tensor = self.input_tensor(img)?;
        let outputs = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| OpError::Network(e.to_string()))?;
        let first = outputs
            .first()
            .ok_or_else(|| OpError::Network("the network returned nothing".into()))?;
        let view = first
            .to_plain_array_view::<f32>()
            .map_err(|e| OpError::Network(e.to_string()))?;
        let values: Vec<f32> = view.iter().copied().collect();
        if values.len() != (side * side) as usize {
            return Err(OpError::Network(format!(
                "the network's map has {} values, expected {side}×{side}",
                values.len()
            )));
        }
        let small = normalised_map(&values, side);
        Ok(Saliency {
            map: resize_gray(&small, img.width(), img.height()),
            confidence: confidence(&values),
        })
    }

    /// `img` resized to the input square, scaled by its maximum and normalised, as NCHW f32.
    fn input_tensor(&self, img: &RgbaImage) -> Result<Tensor, OpError> {
        let side = self.input.side;
        let small = resize_rgba(img, side, side);
        let max = small
            .pixels()
            .flat_map(|p| p.0[..3].iter().copied())
            .max()
            .unwrap_or(0)
            .max(1) as f32;
        let plane = (side * side) as usize;
        let mut data = vec![0f32; 3 * plane];
        for (i, p) in small.pixels().enumerate() {
            for c in 0..3 {
                let v = p.0[c] as f32 / max;
                data[c * plane + i] = (v - self.input.mean[c]) / self.input.std[c];
            }
        }
        let shape = [1, 3, side as usize, side as usize];
        Tensor::from_shape(&shape, &data).map_err(|e| OpError::Network(e.to_string()))
    }
}

fn confidence(values: &[f32]) -> NetworkConfidence {
    let n = values.len().max(1) as f32;
    let confident = values.iter().filter(|&&v| v > 0.5).count() as f32 / n;
    let some = values.iter().filter(|&&v| v > 0.1).count();
    let doubt = values.iter().filter(|&&v| v > 0.1 && v < 0.9).count();
    NetworkConfidence {
        confident,
        uncertain: doubt as f32 / some.max(1) as f32,
    }
}

/// The map min-max normalised to `[0, 255]`, as rembg does.
fn normalised_map(values: &[f32], side: u32) -> GrayImage {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = (hi - lo).max(1e-6);
    let bytes = values
        .iter()
        .map(|&v| (((v - lo) / span) * 255.0 + 0.5).clamp(0.0, 255.0) as u8)
        .collect();
    GrayImage::from_raw(side, side, bytes).expect("side × side values")
}

fn resize_rgba(img: &RgbaImage, w: u32, h: u32) -> RgbaImage {
    let mut dst = RgbaImage::new(w, h);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(img, &mut dst, &opts)
        .expect("RGBA to RGBA of non-zero size");
    dst
}

fn resize_gray(img: &GrayImage, w: u32, h: u32) -> GrayImage {
    let src = Image::from_vec_u8(
        img.width(),
        img.height(),
        img.as_raw().clone(),
        PixelType::U8,
    )
    .expect("a grey buffer of its own size");
    let mut dst = Image::new(w, h, PixelType::U8);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut dst, &opts)
        .expect("grey to grey of non-zero size");
    GrayImage::from_raw(w, h, dst.into_vec()).expect("w × h bytes")
}
