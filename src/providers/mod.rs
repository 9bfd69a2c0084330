//! Backends that perform one step on one image: the built-in local implementations, and remote
//! models. This file is the seam the scheduler calls through; the scheduler never sees a
//! request body, a response or an SDK type.
//!
//! A remote call has three parts, so the scheduler can keep what spans calls (money, rate
//! limits, retries, circuit breaking, fallback order) while a provider owns everything about
//! its API: [`PreparedCall::prepare`] fits the image to the model's input rules and encodes the
//! request (CPU work), [`Providers::attempt`] sends it once (async; the scheduler retries), and
//! [`PreparedCall::finish`] decodes the answer and maps it back onto the original image (size,
//! alpha at full resolution, backdrop colour) and says what was billed. Each provider classifies
//! its own failures ([`RemoteError::action`]). None decides which backend to use (the router's
//! job) or retries (the scheduler's). Adding a model family is an adapter module here plus
//! catalog data.

pub mod bedrock;
pub mod grader;
pub mod local;

use std::sync::Arc;

use image::RgbaImage;

pub use bedrock::{
    AdapterError, BedrockClient, ConnectError, ConnectSettings, RemoteError, RetryAction,
};

use crate::catalog::{ModelEntry, Op};
use crate::manifest::{OpParams, Step};
use crate::money::Usd;
use crate::qa::{self, Qa};

/// The version of the code that serves `model` (`local`, or a model id): part of every cache
/// key, so a changed adapter never serves a result an older one produced.
pub fn adapter_version(model: &str) -> u32 {
    if crate::manifest::ModelRef::is_local_name(model) {
        local::OPS_VERSION
    } else {
        bedrock::adapter_version(model)
    }
}

/// What one call was billed, in the unit its model is priced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billed {
    /// Images returned (image models bill per output image).
    Images(u32),
    /// Tokens read and written (models answering through `Converse`, from the answer's usage).
    Tokens { input: u64, output: u64 },
}

impl Billed {
    /// The cost at the catalog's `unit_price` (per image) or its `tokens` prices. Tokens without
    /// token prices cannot be priced: `None`, never zero.
    pub fn cost(self, unit_price: Usd, tokens: Option<crate::catalog::TokenPrices>) -> Option<Usd> {
        match self {
            Billed::Images(n) => Some(unit_price.times(n)),
            Billed::Tokens { input, output } => tokens.map(|t| t.cost(input, output)),
        }
    }
}

/// A model's answer, mapped back onto the original image.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub image: RgbaImage,
    pub billed: Billed,
    /// The local quality checks of the result.
    pub qa: Qa,
}

/// A call built for one image and model: sent once per attempt, its answer mapped back by
/// [`PreparedCall::finish`].
#[derive(Debug, Clone)]
pub struct PreparedCall {
    model: ModelEntry,
    op: Op,
    /// A backdrop colour the step asks for: the models return a cut-out, the colour is ours.
    background: Option<[u8; 3]>,
    /// Replace-bg: the product as cut out for the request, put back over the answer.
    product: Option<Arc<Product>>,
    /// The region to call the model in (`None`: the client's own).
    region: Option<String>,
    /// Inpaint and erase with a mask file: the answer is kept only inside it.
    mask: Option<Arc<crate::manifest::Mask>>,
    /// remove-bg: the local network that gives the answer a second opinion, when installed.
    reviewer: Option<local::Reviewer>,
    request: Request,
}

/// A replace-bg call's product: the cut-out and its quality checks.
#[derive(Debug)]
struct Product {
    cut: Arc<RgbaImage>,
    qa: Qa,
}

/// The request in its provider's terms.
#[derive(Debug, Clone)]
enum Request {
    Bedrock(bedrock::EncodedRequest),
}

impl PreparedCall {
    /// Prepares `step` on `image` for `model`: fits it to the model's input rules (resize,
    /// flatten transparency) and encodes the request. Synchronous and CPU-bound. Nothing is
    /// sent or billed when this fails.
    pub fn prepare(
        step: &Step,
        model: &ModelEntry,
        image: &RgbaImage,
    ) -> Result<PreparedCall, AdapterError> {
        let mut params = remote_params(step, image.dimensions());
        // replace-bg: the product is cut out once, for the mask sent and the result kept.
        let product = (step.op == Op::ReplaceBg).then(|| {
            let cut = crate::ops::replace_bg::product_matte(image);
            let qa = qa::remove_bg(&cut.image, None, cut.backdrop_like.as_deref());
            Arc::new(Product {
                cut: Arc::new(cut.image),
                qa,
            })
        });
        params.product = product.as_ref().map(|p| p.cut.clone());
        let request = bedrock::encode_request(model, step.op, image, &params)?;
        let mask = params.mask.clone();
        let background = match &step.params {
            OpParams::RemoveBg(p) => p.background.map(|c| c.0),
            _ => None,
        };
        Ok(PreparedCall {
            model: model.clone(),
            op: step.op,
            background,
            product,
            region: None,
            mask,
            reviewer: None,
            request: Request::Bedrock(request),
        })
    }

    /// The same call, its cut-out held against `reviewer`'s when it comes back.
    pub fn reviewed_by(mut self, reviewer: Option<local::Reviewer>) -> Self {
        self.reviewer = reviewer;
        self
    }

    /// The same call, sent to `region`.
    pub fn in_region(mut self, region: &str) -> PreparedCall {
        self.region = Some(region.to_owned());
        self
    }

    /// What an answer that gave no usable result was billed, at `price` per image: nothing for
    /// an image model's filtered answer; the tokens a `Converse` answer says it used (priced
    /// with the catalog's token prices; `price` when it has none or the answer gave no readable
    /// count), filtered or not; `price` for anything else that came back.
    pub fn billed_without_result(&self, answer: &[u8], e: &RemoteError, price: Usd) -> Usd {
        let Request::Bedrock(request) = &self.request;
        if request.api == bedrock::Api::Converse {
            let tokens = serde_json::from_slice::<bedrock::ConverseImageAnswer>(answer)
                .ok()
                .and_then(|a| a.input_tokens.zip(a.output_tokens))
                .map(|(input, output)| Billed::Tokens { input, output });
            return tokens
                .and_then(|t| t.cost(price, self.model.tokens))
                .unwrap_or(price);
        }
        if e.answer_billed() { price } else { Usd::ZERO }
    }

    /// Decodes a successful answer and maps it back onto `original`. Synchronous and
    /// CPU-bound. An error here came with a 200 answer: [`RemoteError::answer_billed`] says
    /// whether it was billed.
    pub fn finish(&self, answer: &[u8], original: &RgbaImage) -> Result<ModelOutput, RemoteError> {
        let Request::Bedrock(request) = &self.request;
        let decoded =
            bedrock::decode_response(&self.model, self.op, answer, original, &request.mapping)?;
        if let Some(product) = &self.product {
            // Our own product, pixel for pixel, over the model's scene.
            let image = crate::ops::replace_bg::composite(&product.cut, &decoded.image);
            return Ok(ModelOutput {
                image,
                billed: Billed::Images(decoded.images_billed),
                qa: product.qa.clone(),
            });
        }
        let qa = match self.op {
            Op::RemoveBg => match &self.reviewer {
                Some(reviewer) => reviewer.check(original, &decoded.image),
                None => qa::remove_bg(&decoded.image, None, qa::backdrop_like(original).as_deref()),
            },
            Op::Outpaint => {
                let expected = request.mapping.target.unwrap_or(original.dimensions());
                qa::outpaint(&decoded.image, expected, false)
            }
            Op::FixLighting | Op::Frame | Op::ReplaceBg => {
                qa::fix_lighting(original, &decoded.image)
            }
            // No free check measures these yet beyond the size (a grader can: `qa:`).
            Op::Inpaint | Op::Erase | Op::Variation => {
                qa::upscale(&decoded.image, original.dimensions())
            }
            Op::Upscale => {
                let expected = request.mapping.target.unwrap_or(original.dimensions());
                qa::upscale(&decoded.image, expected)
            }
            Op::Generate => qa::generate(&decoded.image, request.mapping.expected_output),
        };
        let image = match (self.background, &self.mask) {
            (Some(bg), _) => crate::ops::remove_bg::flatten(&decoded.image, bg),
            // The original, bit for bit, outside the mask.
            (None, Some(mask)) => crate::ops::fill::blend(original, &decoded.image, &mask.pixels),
            (None, None) => decoded.image,
        };
        Ok(ModelOutput {
            image,
            billed: Billed::Images(decoded.images_billed),
            qa,
        })
    }
}

/// The run's remote clients (one per provider that needs one). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Providers {
    bedrock: BedrockClient,
}

impl Providers {
    /// Resolves credentials and region through the standard AWS chain.
    pub async fn connect(settings: &ConnectSettings) -> Result<Providers, ConnectError> {
        BedrockClient::connect(settings).await.map(Providers::from)
    }

    /// The region the clients call, when known.
    pub fn region(&self) -> Option<String> {
        self.bedrock.region()
    }

    /// Sends a grading call once; retrying is the caller's decision.
    /// Sends a grading call once, in `region` (`None`: the client's own).
    pub async fn grade(
        &self,
        call: &grader::GradeCall,
        region: Option<&str>,
    ) -> Result<bedrock::ConverseAnswer, RemoteError> {
        self.bedrock
            .converse(region, &call.invoke_id, &call.request)
            .await
    }

    /// Sends `call` once and returns the raw answer; retrying is the caller's decision
    /// ([`RemoteError::action`]).
    pub async fn attempt(&self, call: &PreparedCall) -> Result<Vec<u8>, RemoteError> {
        let Request::Bedrock(request) = &call.request;
        let region = call.region.as_deref();
        match request.api {
            bedrock::Api::Invoke => {
                self.bedrock
                    .invoke_in(region, &request.invoke_id, request.body.clone())
                    .await
            }
            bedrock::Api::Converse => {
                self.bedrock
                    .converse_image(region, &request.invoke_id, &request.body)
                    .await
            }
        }
    }
}

impl From<BedrockClient> for Providers {
    fn from(bedrock: BedrockClient) -> Providers {
        Providers { bedrock }
    }
}

/// The step parameters a remote model sees.
fn remote_params(step: &Step, (w, h): (u32, u32)) -> bedrock::RemoteParams {
    let target = match &step.params {
        OpParams::Upscale(p) => Some(p.target.output_size(w, h)),
        _ => None,
    };
    let margins = match &step.params {
        OpParams::Outpaint(p) => Some(p.margins((w, h))),
        _ => None,
    };
    let (mask_prompt, mask) = match &step.params {
        OpParams::Masked(p) => (p.described().map(str::to_owned), p.mask().cloned()),
        _ => (None, None),
    };
    let (aspect, seed) = match &step.params {
        OpParams::Generate(p) => (Some(p.aspect), p.seed),
        _ => (None, None),
    };
    bedrock::RemoteParams {
        prompt: step.prompt.clone(),
        negative_prompt: step.negative_prompt.clone(),
        similarity: step.similarity,
        target,
        seed,
        margins,
        mask_prompt,
        mask,
        aspect,
        product: None,
        style: match &step.params {
            OpParams::Variation(p) => p.style.as_ref().and_then(|s| s.picture.clone()),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_versions_follow_the_family() {
        use bedrock::{NOVA_ADAPTER_VERSION, STABILITY_ADAPTER_VERSION, TITAN_ADAPTER_VERSION};
        assert_eq!(adapter_version("local"), local::OPS_VERSION);
        assert_eq!(
            adapter_version("amazon.nova-canvas-v1:0"),
            NOVA_ADAPTER_VERSION
        );
        assert_eq!(
            adapter_version("amazon.titan-image-generator-v2:0"),
            TITAN_ADAPTER_VERSION
        );
        assert_eq!(
            adapter_version("us.stability.stable-fast-upscale-v1:0"),
            STABILITY_ADAPTER_VERSION
        );
        assert_eq!(adapter_version("acme.unknown-v1"), 0);
    }
}
