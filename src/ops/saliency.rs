//! Salient-object segmentation with a U²-Net-family network (ONNX), run in-process by tract.
//!
//! The network sees the photo resized to its input square, scaled by the image's maximum and
//! normalised per channel (ImageNet mean and std), exactly as rembg feeds the same weights; its
//! first output is the fused saliency map, min-max normalised and resized back to the photo. The
//! weights come in as bytes (reading and verifying the file is the caller's job), so this stays
//! pure and synchronous like every op. On tract one inference runs single-threaded and the
//! scheduler runs one image per core; on ONNX Runtime (feature `onnxruntime`, given an
//! environment the caller loaded) one inference at a time uses every core.

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
    engine: Engine,
    input: NetInput,
}

/// What runs the network.
#[derive(Clone)]
enum Engine {
    /// tract, pure Rust: one inference per thread, single-threaded each.
    Tract(Arc<TypedRunnableModel>),
    /// ONNX Runtime (feature `onnxruntime`, library named by `RETOUCH_ONNXRUNTIME`): one
    /// inference at a time, using every core.
    #[cfg(feature = "onnxruntime")]
    Ort(Arc<std::sync::Mutex<ort::session::Session>>),
}

impl std::fmt::Debug for SaliencyNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaliencyNet")
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl SaliencyNet {
    /// Loads and optimises the ONNX graph in `onnx` for `input`, to run on tract.
    pub fn from_onnx(onnx: &[u8], input: NetInput) -> Result<SaliencyNet, OpError> {
        SaliencyNet::with_tract(onnx, input)
    }

    /// The ONNX graph in `onnx` for `input`, to run on ONNX Runtime in `env` (loaded by the
    /// caller: see `crate::onnx_engine`).
    #[cfg(feature = "onnxruntime")]
    pub fn with_onnxruntime(
        env: &ort::environment::Environment,
        onnx: &[u8],
        input: NetInput,
    ) -> Result<SaliencyNet, OpError> {
        let session = onnxruntime::session(env, onnx)?;
        Ok(SaliencyNet {
            engine: Engine::Ort(Arc::new(std::sync::Mutex::new(session))),
            input,
        })
    }

    /// [`SaliencyNet::from_onnx`]: tract, pure Rust, in every build.
    pub fn with_tract(onnx: &[u8], input: NetInput) -> Result<SaliencyNet, OpError> {
        let side = input.side as usize;
        let fail = |e: TractError| OpError::Network(e.to_string());
        let plan = tract_onnx::onnx()
            .model_for_read(&mut Cursor::new(onnx))
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, side, side]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(fail)?;
        Ok(SaliencyNet {
            engine: Engine::Tract(plan),
            input,
        })
    }

    /// Which engine runs this network: `tract` or `onnxruntime`.
    pub fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Tract(_) => "tract",
            #[cfg(feature = "onnxruntime")]
            Engine::Ort(_) => "onnxruntime",
        }
    }

    /// The saliency map of `img` and how sure the network was.
    pub fn assess(&self, img: &RgbaImage) -> Result<Saliency, OpError> {
        let side = self.input.side;
        let data = self.input_data(img);
        let values = match &self.engine {
            Engine::Tract(plan) => run_tract(plan, data, side)?,
            #[cfg(feature = "onnxruntime")]
            Engine::Ort(session) => onnxruntime::run(session, data, side)?,
        };
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
    fn input_data(&self, img: &RgbaImage) -> Vec<f32> {
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
        data
    }
}

/// One inference with tract; the first output's values.
fn run_tract(
    plan: &Arc<TypedRunnableModel>,
    data: Vec<f32>,
    side: u32,
) -> Result<Vec<f32>, OpError> {
    let fail = |e: TractError| OpError::Network(e.to_string());
    let shape = [1, 3, side as usize, side as usize];
    let tensor = Tensor::from_shape(&shape, &data).map_err(fail)?;
    let outputs = plan.run(tvec!(tensor.into())).map_err(fail)?;
    let first = outputs
        .first()
        .ok_or_else(|| OpError::Network("the network returned nothing".into()))?;
    let view = first.to_plain_array_view::<f32>().map_err(fail)?;
    Ok(view.iter().copied().collect())
}

/// Sessions and inference on ONNX Runtime (the library is loaded by `crate::onnx_engine`).
#[cfg(feature = "onnxruntime")]
mod onnxruntime {
    use std::sync::Mutex;

    use ort::environment::Environment;
    use ort::session::Session;
    use ort::session::builder::GraphOptimizationLevel;

    use super::OpError;

    pub(super) fn session(env: &Environment, onnx: &[u8]) -> Result<Session, OpError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Session::builder(env)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_intra_threads(threads).map_err(|e| e.to_string()))
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(|e| e.to_string())
            })
            // The arena without the memory pattern: freed buffers are reused from one operator
            // to the next (27% faster than without the arena) and the peak stays that of one
            // inference; the pattern would reserve every buffer of the graph at once (measured
            // in BENCHMARKS.md: 0.124 s and 349 MB per u2netp inference this way, 0.191 s /
            // 358 MB with neither, 0.128 s / 543 MB with both).
            .and_then(|b| b.with_memory_pattern(false).map_err(|e| e.to_string()))
            // Idle pool threads sleep instead of spinning: a spinning thread holds a core the
            // matting of the image beside it needs (remove-bg at concurrency 2: 0.20 -> 0.18 s
            // per image; one image at a time 0.207 -> 0.198 s, BENCHMARKS.md).
            .and_then(|b| b.with_intra_op_spinning(false).map_err(|e| e.to_string()))
            .and_then(|b| {
                let cpu = ort::ep::CPU::default().with_arena_allocator(true).build();
                b.with_execution_providers([cpu]).map_err(|e| e.to_string())
            })
            .and_then(|mut b| b.commit_from_memory(onnx).map_err(|e| e.to_string()))
            .map_err(OpError::Network)
    }

    pub(super) fn run(
        session: &Mutex<Session>,
        data: Vec<f32>,
        side: u32,
    ) -> Result<Vec<f32>, OpError> {
        let fail = |e: ort::Error| OpError::Network(e.to_string());
        let s = side as usize;
        let tensor = ort::value::Tensor::from_array(([1usize, 3, s, s], data)).map_err(fail)?;
        let mut session = session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(ort::inputs![tensor]).map_err(fail)?;
        let (_, values) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
        Ok(values.to_vec())
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
