//! The Bedrock Runtime client: one `InvokeModel` call (bytes in, bytes out), or one `Converse`
//! call asking a vision model about an image (text and image in, text and token usage out).
//!
//! Owns SDK configuration (region, profile, endpoint override, timeouts) and turns SDK errors
//! into [`RemoteError`]s. The SDK's own retries are disabled (one attempt): the scheduler
//! retries with its own backoff and rate limits, and double retrying would blur both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::{ProvideCredentials, Region};
use aws_sdk_bedrockruntime::primitives::Blob;

use super::RemoteError;

/// How to reach Bedrock. Unset fields follow the standard AWS environment and config files
/// (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, …).
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Endpoint override (a test double, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Per-attempt read timeout. AWS recommends at least 300 s for image models.
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    /// Upper bound on resolving credentials at connect time, so a machine without any (and
    /// without instance metadata) fails fast instead of hanging.
    pub credentials_timeout: Duration,
}

impl Default for ConnectSettings {
    fn default() -> ConnectSettings {
        ConnectSettings {
            region: None,
            profile: None,
            endpoint_url: None,
            read_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            credentials_timeout: Duration::from_secs(5),
        }
    }
}

/// Why no client could be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "no AWS credentials found ({detail}); set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`"
    )]
    NoCredentials { detail: String },
    #[error("no AWS region configured; set `aws.region` in the manifest or AWS_REGION")]
    NoRegion,
}

/// A Bedrock Runtime client. Cheap to clone; share one per run. Calls go to its region unless
/// another is named ([`BedrockClient::invoke_in`]): a client per other region is made from the
/// same configuration (credentials, endpoint, timeouts) the first time it is needed.
#[derive(Debug, Clone)]
pub struct BedrockClient {
    inner: aws_sdk_bedrockruntime::Client,
    regional: Arc<Mutex<HashMap<String, aws_sdk_bedrockruntime::Client>>>,
}

impl BedrockClient {
    /// Loads AWS configuration and checks that credentials resolve (bounded by
    /// `credentials_timeout`).
    pub async fn connect(settings: &ConnectSettings) -> Result<BedrockClient, ConnectError> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(timeouts);
        let region = aws_config::meta::region::RegionProviderChain::first_try(
            settings.region.clone().map(Region::new),
        )
        .or_default_provider()
        .or_else(Region::from_static("us-east-1"));
        loader = loader.region(region);
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(ConnectError::NoRegion);
        }
        check_credentials(&sdk, settings.credentials_timeout).await?;
        Ok(BedrockClient::from_conf(
            aws_sdk_bedrockruntime::Config::new(&sdk),
        ))
    }

    /// The region calls go to.
    pub fn region(&self) -> Option<String> {
        self.inner.config().region().map(|r| r.to_string())
    }

    /// A client from a ready SDK config (tests point it at the in-process double).
    pub fn from_conf(conf: aws_sdk_bedrockruntime::Config) -> BedrockClient {
        BedrockClient {
            inner: aws_sdk_bedrockruntime::Client::from_conf(conf),
            regional: Arc::default(),
        }
    }

    /// The client for `region` (`None`: this client's own).
    fn client_in(&self, region: Option<&str>) -> aws_sdk_bedrockruntime::Client {
        match region {
            Some(r) if self.region().as_deref() != Some(r) => {
                let mut clients = self.regional.lock().expect("regional clients");
                clients
                    .entry(r.to_owned())
                    .or_insert_with(|| {
                        let conf = self
                            .inner
                            .config()
                            .to_builder()
                            .region(Region::new(r.to_owned()))
                            .build();
                        aws_sdk_bedrockruntime::Client::from_conf(conf)
                    })
                    .clone()
            }
            _ => self.inner.clone(),
        }
    }

    /// One `InvokeModel` call with a JSON body in this client's region; returns the response
    /// body.
    pub async fn invoke(&self, invoke_id: &str, body: Vec<u8>) -> Result<Vec<u8>, RemoteError> {
        self.invoke_in(None, invoke_id, body).await
    }

    /// One `InvokeModel` call in `region` (`None`: this client's own).
    pub async fn invoke_in(
        &self,
        region: Option<&str>,
        invoke_id: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError> {
        let out = self
            .client_in(region)
            .invoke_model()
            .model_id(invoke_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .send()
            .await
            .map_err(RemoteError::from_sdk)?;
        Ok(out.body.into_inner())
    }
}

/// A question for a vision model through `Converse`: a system prompt, then one user message with
/// an image and the question.
#[derive(Debug, Clone)]
pub struct ConverseRequest {
    pub system: String,
    pub image_png: Vec<u8>,
    pub question: String,
    pub max_tokens: i32,
}

/// A `Converse` answer: the text of the reply and what it was billed in tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConverseAnswer {
    pub text: String,
    /// Input and output tokens from the answer's `usage`; `None` when it has none or an
    /// unreadable one (see `billed_tokens`): the call was still billed, so the caller charges
    /// the most it could have cost.
    pub tokens: Option<(u64, u64)>,
}

impl BedrockClient {
    /// One `Converse` call in `region` (`None`: this client's own).
    pub async fn converse(
        &self,
        region: Option<&str>,
        model_id: &str,
        request: &ConverseRequest,
    ) -> Result<ConverseAnswer, RemoteError> {
        use aws_sdk_bedrockruntime::types::{
            ContentBlock, ConversationRole, ConverseOutput, ImageBlock, ImageFormat, ImageSource,
            InferenceConfiguration, Message, SystemContentBlock,
        };
        let config = |e: aws_sdk_bedrockruntime::error::BuildError| RemoteError::Config {
            message: e.to_string(),
        };
        let image = ImageBlock::builder()
            .format(ImageFormat::Png)
            .source(ImageSource::Bytes(Blob::new(request.image_png.clone())))
            .build()
            .map_err(config)?;
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Image(image))
            .content(ContentBlock::Text(request.question.clone()))
            .build()
            .map_err(config)?;
        let inference = InferenceConfiguration::builder()
            .max_tokens(request.max_tokens)
            .temperature(0.0)
            .build();
        let out = self
            .client_in(region)
            .converse()
            .model_id(model_id)
            .system(SystemContentBlock::Text(request.system.clone()))
            .messages(message)
            .inference_config(inference)
            .send()
            .await
            .map_err(RemoteError::from_sdk)?;
        let tokens = billed_tokens(out.usage());
        let text = match out.output() {
            Some(ConverseOutput::Message(m)) => m
                .content()
                .iter()
                .filter_map(|c| c.as_text().ok().cloned())
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        };
        Ok(ConverseAnswer { text, tokens })
    }
}

impl BedrockClient {
    /// One `Converse` instruction edit in `region` (`None`: this client's own): a user message
    /// with the image (when there is one) and the instruction. Returns a
    /// [`super::ConverseImageAnswer`] as JSON: the reply's first image, why it stopped, the
    /// tokens used (none when its `usage` is missing or unreadable).
    pub async fn converse_image(
        &self,
        region: Option<&str>,
        model_id: &str,
        edit: &[u8],
    ) -> Result<Vec<u8>, RemoteError> {
        use aws_sdk_bedrockruntime::types::{
            ContentBlock, ConversationRole, ConverseOutput, ImageBlock, ImageFormat, ImageSource,
            Message,
        };
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD as B64;
        let config = |message: String| RemoteError::Config { message };
        let edit: super::ConverseEdit =
            serde_json::from_slice(edit).map_err(|e| config(e.to_string()))?;
        let mut message = Message::builder().role(ConversationRole::User);
        if let Some(b64) = &edit.image {
            let bytes = B64.decode(b64).map_err(|e| config(e.to_string()))?;
            let format = match edit.format.as_deref() {
                Some("jpeg") => ImageFormat::Jpeg,
                _ => ImageFormat::Png,
            };
            let image = ImageBlock::builder()
                .format(format)
                .source(ImageSource::Bytes(Blob::new(bytes)))
                .build()
                .map_err(|e| config(e.to_string()))?;
            message = message.content(ContentBlock::Image(image));
        }
        let message = message
            .content(ContentBlock::Text(edit.instruction.clone()))
            .build()
            .map_err(|e| config(e.to_string()))?;
        let out = self
            .client_in(region)
            .converse()
            .model_id(model_id)
            .messages(message)
            .send()
            .await
            .map_err(RemoteError::from_sdk)?;
        let tokens = billed_tokens(out.usage());
        let (mut image, mut text) = (None, String::new());
        if let Some(ConverseOutput::Message(m)) = out.output() {
            for block in m.content() {
                match block {
                    ContentBlock::Image(img) if image.is_none() => {
                        if let Some(ImageSource::Bytes(b)) = img.source() {
                            image = Some(B64.encode(b.as_ref()));
                        }
                    }
                    ContentBlock::Text(t) => text.push_str(t),
                    _ => {}
                }
            }
        }
        let answer = super::ConverseImageAnswer {
            image,
            stop_reason: out.stop_reason().as_str().to_owned(),
            input_tokens: tokens.map(|t| t.0),
            output_tokens: tokens.map(|t| t.1),
            text,
        };
        Ok(serde_json::to_vec(&answer).expect("JSON values always serialise"))
    }
}

/// The input and output tokens a `Converse` answer was billed for: `None` for an answer
/// without `usage`, or with a count that is missing, zero or negative. Such an answer was
/// still billed; reading its count as zero, or refusing it as an error (errors are not billed),
/// would record a paid call as free, so callers charge the most the call could cost instead.
///
/// Zero counts as missing because the SDK cannot tell them apart: it fills a required member
/// the answer left out with its default (`usage` becomes a `TokenUsage` of zeros). No real
/// answer reads zero tokens: every request sends an instruction, and every answer says at
/// least a word or carries an image.
fn billed_tokens(usage: Option<&aws_sdk_bedrockruntime::types::TokenUsage>) -> Option<(u64, u64)> {
    let usage = usage?;
    let count = |n: i32| u64::try_from(n).ok().filter(|&n| n > 0);
    Some((count(usage.input_tokens())?, count(usage.output_tokens())?))
}

async fn check_credentials(
    sdk: &aws_config::SdkConfig,
    limit: Duration,
) -> Result<(), ConnectError> {
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| ConnectError::NoCredentials {
            detail: "no credentials provider".into(),
        })?;
    match tokio::time::timeout(limit, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ConnectError::NoCredentials {
            detail: e.to_string(),
        }),
        Err(_) => Err(ConnectError::NoCredentials {
            detail: format!("credential lookup took over {} s", limit.as_secs()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_bedrockruntime::types::TokenUsage;

    use super::billed_tokens;

    fn usage(input: i32, output: i32) -> TokenUsage {
        TokenUsage::builder()
            .input_tokens(input)
            .output_tokens(output)
            .total_tokens(input + output)
            .build()
            .unwrap()
    }

    #[test]
    fn token_counts_are_read_only_when_the_answer_gives_them_whole() {
        assert_eq!(billed_tokens(Some(&usage(1234, 56))), Some((1234, 56)));
        // What the SDK makes of an answer without `usage`, or with a count left out.
        assert_eq!(billed_tokens(Some(&usage(0, 0))), None);
        assert_eq!(billed_tokens(Some(&usage(1234, 0))), None);
        assert_eq!(billed_tokens(Some(&usage(0, 56))), None);
        assert_eq!(billed_tokens(Some(&usage(-1, 56))), None);
        assert_eq!(billed_tokens(Some(&usage(1234, -5))), None);
        assert_eq!(billed_tokens(None), None);
    }
}
