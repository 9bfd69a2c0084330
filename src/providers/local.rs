//! The built-in local implementation of every op: free, offline, always available.
//!
//! Translates a step's manifest parameters into [`crate::ops`] options and runs the op. Local
//! remove-bg runs a segmentation network when one is installed (`retouch models install`) and
//! the step's `local_model:` allows it, combined with the backdrop model; otherwise the backdrop
//! model alone (the classical method). Which method serves each step is settled once, before the
//! run ([`LocalOps::resolve`]), and named in the report's model column: `local` for the
//! classical method (and every other local op), `local:<network>` for a network. Synchronous and
//! CPU-bound: the scheduler calls it on the CPU pool.

use std::sync::Arc;

use image::RgbaImage;

use crate::catalog::{LocalModel, local_model};
use crate::manifest::{Fallback, LocalMethod, ModelRef, NewBackground, OpParams, Step};
use crate::model_store::{ModelStore, StoreError};
use crate::ops::fuse::Fusion;
use crate::ops::replace_bg::Behind;
use crate::ops::saliency::{NetInput, SaliencyNet};
use crate::ops::{self, OpError};
use crate::qa::{self, Qa};

/// Version of the built-in local ops: bump when any local op's output changes (cached local
/// results of older versions are then recomputed).
pub const OPS_VERSION: u32 = 1;

/// The local method of each step of a run.
#[derive(Debug, Clone, Default)]
pub struct LocalOps {
    /// By step index; a step with no entry runs the classical method.
    networks: Vec<Option<Network>>,
    /// By step index: the background picture of a replace-bg step.
    pictures: Vec<Option<Arc<RgbaImage>>>,
}

/// A loaded network and the model name it is reported under.
#[derive(Debug, Clone)]
struct Network {
    /// `local:<name>`.
    model: String,
    net: Arc<SaliencyNet>,
}

/// A segmentation network giving remote cut-outs a second opinion: the local remove-bg's own
/// mask of the photo, to compare a result with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reviewer(Arc<SaliencyNet>);

impl Reviewer {
    /// The quality checks of a remote cut-out `output` of `input`, held against the network's
    /// own cut-out ([`qa::second_opinion`]): the backdrop model fitted for that cut-out serves
    /// the checks too, so the photo's backdrop is fitted once. No second opinion when the
    /// network was unsure of the photo (its cut-out is then no opinion) or fails.
    /// Synchronous and CPU-bound: one inference and one local cut-out.
    pub fn check(&self, input: &RgbaImage, output: &RgbaImage) -> Qa {
        let sure = self
            .0
            .assess(input)
            .ok()
            .filter(|s| !qa::unsure(s.confidence));
        let Some(saliency) = sure else {
            return qa::remove_bg(output, None, qa::backdrop_like(input).as_deref());
        };
        let own = ops::remove_bg::cut_out(input, Some(&saliency.map), Fusion::Combined);
        let like = own.backdrop_like.as_deref();
        let checked = qa::remove_bg(output, None, like);
        let mask: Vec<bool> = own.image.pixels().map(|p| p.0[3] >= 128).collect();
        match qa::second_opinion(output, &mask, like) {
            Some(flag) => checked.with(flag),
            None => checked,
        }
    }
}

/// A local result and its quality checks.
#[derive(Debug, Clone)]
pub struct LocalOutput {
    pub image: RgbaImage,
    pub qa: Qa,
}

/// Why a run cannot use the local method its manifest asks for.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("step {step} (remove-bg): {source}")]
    Network {
        /// 1-based, as the report prints it.
        step: usize,
        #[source]
        source: StoreError,
    },
    #[error("step {step} (replace-bg): cannot use background_image {}: {detail}", path.display())]
    Picture {
        step: usize,
        path: std::path::PathBuf,
        detail: String,
    },
}

/// Pictures larger than this many megapixels are refused as backgrounds.
const MAX_PICTURE_MEGAPIXELS: u32 = 100;

/// What [`LocalOps::resolve`] settled, and what the user should hear about it.
#[derive(Debug)]
pub struct Resolved {
    pub ops: LocalOps,
    /// Said once per run (the classical method standing in for a network, for instance).
    pub notes: Vec<String>,
}

impl LocalOps {
    /// Every step classical (no network): what a machine with none installed runs.
    pub fn classical() -> LocalOps {
        LocalOps::default()
    }

    /// Settles the local method of every step that may run locally (its models include `local`,
    /// or it falls back to local) and loads each network it needs, verified against its pinned
    /// checksum. A step naming a network that is not installed, or an installed file that fails
    /// its checksum, stops the run before any work. `local_model: auto` with no network
    /// installed runs the classical method, with one note saying how to install one. A remove-bg
    /// step that cannot run locally loads the installed network too, for a second opinion on its
    /// remote cut-outs ([`LocalOps::reviewer`]); one that fails to load is then only a note.
    /// Networks come from `store` (`None`: no model folder could be found, so none is installed).
    pub fn resolve(steps: &[Step], store: Option<&ModelStore>) -> Result<Resolved, LocalError> {
        let mut networks = Vec::with_capacity(steps.len());
        let mut loaded: Vec<(&'static str, Arc<SaliencyNet>)> = Vec::new();
        let mut classical_for_lack = Vec::new();
        let mut review_lost = Vec::new();
        for step in steps {
            let OpParams::RemoveBg(p) = &step.params else {
                networks.push(None);
                continue;
            };
            let may_run_locally =
                step.models.contains(&ModelRef::Local) || step.fallback == Fallback::Local;
            // A step that cannot run locally still loads an installed network: it gives the
            // remote results a second opinion (`LocalOps::reviewer`), and is never required.
            let wanted = match (&p.local_model, may_run_locally) {
                (LocalMethod::Classical, _) => None,
                (LocalMethod::Network(name), true) => local_model(name),
                (LocalMethod::Network(name), false) => {
                    local_model(name).filter(|m| store.is_some_and(|s| s.installed(m).is_some()))
                }
                (LocalMethod::Auto, _) => {
                    let best = store.and_then(ModelStore::best_installed);
                    if best.is_none() && may_run_locally {
                        classical_for_lack.push(step.index + 1);
                    }
                    best
                }
            };
            let Some(model) = wanted else {
                networks.push(None);
                continue;
            };
            let net = match loaded.iter().find(|(n, _)| *n == model.name) {
                Some((_, net)) => net.clone(),
                None => match load(store, model) {
                    Ok(net) => {
                        let net = Arc::new(net);
                        loaded.push((&model.name, net.clone()));
                        net
                    }
                    // Only a second opinion for a step that cannot run locally: never fatal.
                    Err(e) if !may_run_locally => {
                        review_lost.push(format!(
                            "step {}: the installed network {} could not be loaded ({e}), so its remote cut-outs get no second opinion",
                            step.index + 1,
                            model.name
                        ));
                        networks.push(None);
                        continue;
                    }
                    Err(source) => {
                        return Err(LocalError::Network {
                            step: step.index + 1,
                            source,
                        });
                    }
                },
            };
            networks.push(Some(Network {
                model: format!("{}:{}", ModelRef::LOCAL, model.name),
                net,
            }));
        }
        let mut notes = review_lost;
        if !classical_for_lack.is_empty() {
            let steps: Vec<String> = classical_for_lack.iter().map(|s| s.to_string()).collect();
            notes.push(format!(
                "remove-bg (step {}) runs locally with the classical method: no segmentation network is installed; `retouch models install u2netp` (4.6 MB) installs one",
                steps.join(", ")
            ));
        }
        let pictures = steps.iter().map(picture).collect::<Result<_, _>>()?;
        Ok(Resolved {
            ops: LocalOps { networks, pictures },
            notes,
        })
    }

    /// Writes each background picture's digest into its step (`steps` as given to
    /// [`LocalOps::resolve`]), so the step cache sees a changed picture.
    pub fn pin_pictures(&self, steps: &mut [Step]) {
        for (step, pic) in steps.iter_mut().zip(&self.pictures) {
            if let (OpParams::ReplaceBg(p), Some(pic)) = (&mut step.params, pic)
                && let Some(NewBackground::Image { digest, .. }) = &mut p.behind
            {
                *digest = Some(blake3::hash(pic.as_raw()).to_hex().to_string());
            }
        }
    }

    fn network(&self, step: &Step) -> Option<&Network> {
        self.networks.get(step.index).and_then(Option::as_ref)
    }

    /// What holds a remote remove-bg result for `step` against the local network's own cut-out
    /// of the same photo ([`qa::second_opinion`]), when a network is loaded for the step.
    pub fn reviewer(&self, step: &Step) -> Option<Reviewer> {
        if step.op != crate::manifest::Op::RemoveBg {
            return None;
        }
        self.network(step).map(|n| Reviewer(n.net.clone()))
    }

    /// The report's model for `step` run locally: `local`, or `local:<network>`.
    pub fn model(&self, step: &Step) -> &str {
        self.network(step)
            .map_or(ModelRef::LOCAL, |n| n.model.as_str())
    }

    /// Runs `step` locally on `image`, and the quality checks on its result.
    pub fn run_step(&self, step: &Step, image: &RgbaImage) -> Result<LocalOutput, OpError> {
        match &step.params {
            OpParams::RemoveBg(p) => {
                let saliency = match self.network(step) {
                    Some(n) => Some(n.net.assess(image)?),
                    None => None,
                };
                let cut = ops::remove_bg::cut_out(
                    image,
                    saliency.as_ref().map(|s| &s.map),
                    Fusion::Combined,
                );
                let confidence = saliency.map(|s| s.confidence);
                let qa = qa::remove_bg(&cut.image, confidence, cut.backdrop_like.as_deref());
                let image = match p.background {
                    Some(bg) => ops::remove_bg::flatten(&cut.image, bg.0),
                    None => cut.image,
                };
                Ok(LocalOutput { image, qa })
            }
            OpParams::FixLighting(p) => {
                let out = ops::lighting::fix_lighting(
                    image,
                    &ops::lighting::LightingOptions {
                        strength: p.strength,
                    },
                );
                let qa = qa::fix_lighting(image, &out);
                Ok(LocalOutput { image: out, qa })
            }
            OpParams::Upscale(p) => {
                let (w, h) = p.target.output_size(image.width(), image.height());
                let out = ops::upscale::resize(
                    image,
                    w,
                    h,
                    &ops::upscale::ResizeOptions { sharpen: p.sharpen },
                )?;
                let qa = qa::upscale(&out, (w, h));
                Ok(LocalOutput { image: out, qa })
            }
            OpParams::ReplaceBg(p) => {
                let cut = ops::replace_bg::product_matte(image);
                let qa = qa::remove_bg(&cut.image, None, cut.backdrop_like.as_deref());
                let picture = self.pictures.get(step.index).and_then(Option::as_ref);
                let behind = match (&p.behind, picture) {
                    (_, Some(pic)) => Behind::Picture(pic),
                    (Some(NewBackground::Colour(c)), None) => Behind::Colour(c.0),
                    // The manifest check requires a background for a step that may run locally.
                    _ => Behind::Colour([255, 255, 255]),
                };
                let out = ops::replace_bg::replace(&cut.image, behind, p.shadow);
                Ok(LocalOutput { image: out, qa })
            }
            OpParams::Masked(p) => {
                // The manifest allows a local route only with a mask file; the scheduler reads
                // the image's mask before the step runs.
                let Some(mask) = p.mask() else {
                    return Err(OpError::NoLocal(step.op));
                };
                let (w, h) = image.dimensions();
                let mask = ops::fill::mask_at(&mask.pixels, w, h);
                let out = ops::fill::fill(image, &mask);
                let qa = qa::fill(&out, (w, h), ops::fill::changed_fraction(&mask));
                Ok(LocalOutput { image: out, qa })
            }
            OpParams::Variation(_) | OpParams::Generate(_) => Err(OpError::NoLocal(step.op)),
            OpParams::Outpaint(p) => {
                let m = p.margins(image.dimensions());
                let out = ops::outpaint::extend(image, m);
                let qa = qa::outpaint(&out.image, m.extended(image.dimensions()), out.textured);
                Ok(LocalOutput {
                    image: out.image,
                    qa,
                })
            }
            OpParams::Frame(p) => {
                let framed = ops::frame::frame(image, &p.options)?;
                let qa = qa::frame(
                    &framed.image,
                    p.options.frame_size(),
                    framed.scale,
                    Some(&p.rules()),
                );
                Ok(LocalOutput {
                    image: framed.image,
                    qa,
                })
            }
        }
    }
}

/// Reads and decodes a replace-bg step's background picture.
fn picture(step: &Step) -> Result<Option<Arc<RgbaImage>>, LocalError> {
    let OpParams::ReplaceBg(p) = &step.params else {
        return Ok(None);
    };
    let Some(NewBackground::Image { path, .. }) = &p.behind else {
        return Ok(None);
    };
    let failed = |detail: String| LocalError::Picture {
        step: step.index + 1,
        path: path.clone(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let decoded =
        crate::codec::decode(&bytes, MAX_PICTURE_MEGAPIXELS).map_err(|e| failed(e.to_string()))?;
    Ok(Some(Arc::new(decoded.image)))
}

/// How `model` wants its input, in the terms the network runner takes.
pub fn net_input(model: &LocalModel) -> NetInput {
    NetInput {
        side: model.input.side,
        mean: model.input.mean,
        std: model.input.std,
    }
}

/// Reads, verifies and loads `model`.
fn load(store: Option<&ModelStore>, model: &LocalModel) -> Result<SaliencyNet, StoreError> {
    let bytes = store.ok_or(StoreError::NoFolder)?.load(model)?;
    crate::onnx_engine::load(&bytes, net_input(model)).map_err(|e| StoreError::Unusable {
        model: model.name.clone(),
        detail: e.to_string(),
    })
}
