//! Amazon Bedrock backend: request adapters per model family and the runtime client.
//!
//! Split so CPU work stays off Tokio: [`encode_request`] and [`decode_response`] are pure and
//! synchronous (run them on rayon); only [`BedrockClient::invoke`] is async. Failures are
//! classified here ([`RemoteError::action`]); the scheduler owns retries and fallbacks. This is
//! the only module that imports the Bedrock SDK.

mod client;
mod decode;
mod encode;
mod error;
mod pixels;

use image::RgbaImage;

pub use client::{BedrockClient, ConnectError, ConnectSettings, ConverseAnswer, ConverseRequest};
pub use decode::decode_response;
pub use encode::encode_request;
pub use error::{RemoteError, RetryAction};

use crate::catalog::{Exclusion, Op};

/// Version of the Amazon Nova Canvas adapter's request/response handling: bump when it changes
/// what a model returns for the same input (cached results of older versions are then redone).
pub const NOVA_ADAPTER_VERSION: u32 = 1;
/// Version of the Amazon Titan Image Generator adapter.
pub const TITAN_ADAPTER_VERSION: u32 = 1;
/// Version of the Stability AI adapters.
pub const STABILITY_ADAPTER_VERSION: u32 = 1;

/// The adapter version serving a remote model id, by its provider prefix (`amazon.nova-`,
/// `amazon.titan-`, `stability.`, with or without an inference-profile prefix).
pub fn adapter_version(model: &str) -> u32 {
    let id = model.trim_start_matches("us.");
    if id.starts_with("amazon.nova") {
        NOVA_ADAPTER_VERSION
    } else if id.starts_with("amazon.titan") {
        TITAN_ADAPTER_VERSION
    } else if id.starts_with("stability.") {
        STABILITY_ADAPTER_VERSION
    } else {
        // Unknown family: a distinct version so it never shares keys with a known adapter.
        0
    }
}

/// Step parameters that reach the model; `None` means the catalog's default for the op.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteParams {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub similarity: Option<f32>,
    /// Upscale: the final size the step wants; the model's output is resized to it.
    pub target: Option<(u32, u32)>,
    pub seed: Option<u32>,
    /// Outpaint: the margins to add to the original image.
    pub margins: Option<crate::ops::outpaint::Margins>,
    /// Inpaint and erase: what to find in the image.
    pub mask_prompt: Option<String>,
    /// Inpaint and erase: the image's mask file (white = change), when the step gives one.
    pub mask: Option<std::sync::Arc<crate::manifest::Mask>>,
    /// Generate: the aspect ratio asked (`w`:`h`).
    pub aspect: Option<(u32, u32)>,
    /// Replace-bg: the product cut out of the original (its backdrop becomes the mask); cut out
    /// here when not given.
    pub product: Option<std::sync::Arc<RgbaImage>>,
    /// Variation: the step's style picture, for models that take one (`style_field`).
    pub style: Option<std::sync::Arc<crate::manifest::Picture>>,
}

/// A ready-to-send request and what [`decode_response`] needs to map the answer back.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    pub invoke_id: String,
    /// `InvokeModel`: the JSON body sent. `Converse`: a [`ConverseEdit`] as JSON (the client
    /// builds the SDK call from it).
    pub body: Vec<u8>,
    pub api: Api,
    pub mapping: Mapping,
}

/// Which runtime API a request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `InvokeModel` with a model-specific JSON body (Nova Canvas, Titan, Stability).
    Invoke,
    /// `Converse` with an image and an instruction, answered with an image (catalog task
    /// `CONVERSE`: Nova 2 Omni).
    Converse,
}

/// An instruction edit (or, without an image, a generation) through `Converse`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConverseEdit {
    pub instruction: String,
    /// The image, base64, and its format (`png` or `jpeg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// What a `Converse` edit answered, as the client hands it on (JSON): the first image of the
/// reply (base64), why it stopped, and the tokens used.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConverseImageAnswer {
    #[serde(default)]
    pub image: Option<String>,
    pub stop_reason: String,
    /// From the answer's `usage`; absent when it had none or an unreadable one (then the call
    /// is charged its price, never nothing).
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// The reply's text, when it gave some (a refusal says why).
    #[serde(default)]
    pub text: String,
}

/// How the sent image relates to the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub original: (u32, u32),
    /// Size after fitting to the model's input rules.
    pub sent: (u32, u32),
    /// The size the model should return (catalog output rule).
    pub expected_output: (u32, u32),
    /// The original had transparency (flattened for sending, re-applied to the result).
    pub had_alpha: bool,
    pub target: Option<(u32, u32)>,
    /// Outpaint: the margins added to the original (the answer is mapped back to the original
    /// size plus these, and the original pasted back at them).
    pub margins: Option<crate::ops::outpaint::Margins>,
}

/// A decoded result, already mapped back to the size the step expects.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: RgbaImage,
    /// Images the response returned (each is billed).
    pub images_billed: u32,
}

/// Why a request could not be built (nothing was sent, nothing is billed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdapterError {
    #[error("model `{model}` cannot do {op}")]
    Unsupported { model: String, op: Op },
    #[error("model `{model}` cannot take this image: {reason}")]
    Excluded { model: String, reason: Exclusion },
    #[error("model `{model}`: encoded image exceeds {max_bytes} bytes")]
    TooLarge { model: String, max_bytes: u64 },
    #[error("catalog task `{task}` has no adapter")]
    UnknownTask { task: String },
    #[error("model `{model}` takes prompts of at most {max} characters; this one has {chars}")]
    PromptTooLong {
        model: String,
        chars: usize,
        max: usize,
    },
    #[error("model `{model}` cannot take the style picture: {reason}")]
    StyleExcluded { model: String, reason: Exclusion },
    #[error("model `{model}`: nothing to extend (the image already has the aspect asked for)")]
    NothingToExtend { model: String },
}

impl AdapterError {
    /// The report's reason when this keeps a model from taking the image.
    pub fn reason(&self) -> crate::reason::Reason {
        use crate::reason::Reason;
        match self {
            AdapterError::PromptTooLong { .. } => Reason::FallbackPromptTooLong,
            AdapterError::Excluded { reason, .. } | AdapterError::StyleExcluded { reason, .. } => {
                match reason {
                    Exclusion::AspectOutOfRange { .. } => Reason::FallbackAspectRatio,
                    Exclusion::TooSmallToUpscale { .. } => Reason::FallbackTooSmall,
                    _ => Reason::FallbackTooLarge,
                }
            }
            _ => Reason::FallbackTooLarge,
        }
    }
}

#[cfg(test)]
mod tests;
