//! Failure classification for Bedrock calls: what went wrong and what the scheduler should do.
//!
//! Owns `RemoteError`, its mapping from SDK errors and response bodies, and the retry policy
//! per kind. The SDK's own retries are off (see `client`), so this is the only retry policy.
//! A message never carries more than a few hundred bytes of what the service sent.

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};

use crate::reason::Reason;

/// The most of a message (which may quote a whole response) kept in a `RemoteError`.
const MAX_MESSAGE: usize = 300;

/// The substring Bedrock puts in every content-filter message (input and output).
pub(super) const CONTENT_FILTER_TEXT: &str = "blocked by our content filters";
/// The message for a retired (past end-of-life) or unknown model id.
pub(super) const INVALID_MODEL_TEXT: &str = "The provided model identifier is invalid";

/// What the scheduler should do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Transient: retry the same model with backoff.
    Retry,
    /// This image failed on this model: try the next model (or local) now.
    FallBack,
    /// The model is unusable for the whole run (access, retired): stop sending it anything.
    OpenCircuit,
}

/// A failed Bedrock call, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error("throttled by Bedrock")]
    Throttled,
    #[error("model not ready")]
    ModelNotReady,
    #[error("Bedrock server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("timed out")]
    Timeout,
    #[error("network error: {message}")]
    Network { message: String },
    #[error("access denied: {message}")]
    AccessDenied { message: String },
    #[error("model not found: {message}")]
    ModelNotFound { message: String },
    #[error("model identifier is invalid (retired or unknown): {message}")]
    InvalidModel { message: String },
    #[error("service quota exceeded: {message}")]
    QuotaExceeded { message: String },
    #[error("blocked by content filter: {detail}")]
    ContentFiltered { detail: String },
    #[error("request rejected: {message}")]
    Validation { message: String },
    #[error("model failed on this input: {message}")]
    ModelError { message: String },
    /// Stability's `finish_reasons: ["Inference error"]`: a model-side hiccup worth a retry.
    #[error("model inference error")]
    InferenceError,
    #[error("unreadable response: {message}")]
    BadResponse { message: String },
    #[error("client configuration or credentials problem: {message}")]
    Config { message: String },
}

impl RemoteError {
    /// What to do next.
    pub fn action(&self) -> RetryAction {
        use RemoteError::*;
        match self {
            Throttled
            | ModelNotReady
            | Server { .. }
            | Timeout
            | Network { .. }
            | InferenceError => RetryAction::Retry,
            AccessDenied { .. }
            | ModelNotFound { .. }
            | InvalidModel { .. }
            | QuotaExceeded { .. }
            | Config { .. } => RetryAction::OpenCircuit,
            ContentFiltered { .. } | Validation { .. } | ModelError { .. } | BadResponse { .. } => {
                RetryAction::FallBack
            }
        }
    }

    /// The report reason used when this error makes a step fall back.
    pub fn reason(&self) -> Reason {
        use RemoteError::*;
        match self {
            Throttled => Reason::FallbackThrottled,
            ModelNotReady => Reason::FallbackModelNotReady,
            Server { .. } => Reason::FallbackServerError,
            Timeout => Reason::FallbackTimeout,
            Network { .. } => Reason::FallbackNetwork,
            AccessDenied { .. } => Reason::FallbackAccessDenied,
            ModelNotFound { .. } => Reason::FallbackModelNotFound,
            InvalidModel { .. } => Reason::FallbackModelInvalid,
            QuotaExceeded { .. } => Reason::FallbackQuotaExceeded,
            ContentFiltered { .. } => Reason::FallbackContentFiltered,
            Validation { .. } => Reason::FallbackValidation,
            ModelError { .. } | InferenceError => Reason::FallbackModelError,
            BadResponse { .. } => Reason::FallbackBadResponse,
            Config { .. } => Reason::FallbackClientConfig,
        }
    }

    /// For a failure that came with a 200 answer (see `PreparedCall::finish`): whether that
    /// answer was billed. A content-filtered answer returned no image and is not.
    pub fn answer_billed(&self) -> bool {
        !matches!(self, RemoteError::ContentFiltered { .. })
    }

    /// Classifies a `ValidationException` message: retired model, content filter, or plain.
    pub fn from_validation(message: &str) -> RemoteError {
        let message = message.to_string();
        if message.contains(INVALID_MODEL_TEXT) {
            RemoteError::InvalidModel { message }
        } else if message.contains(CONTENT_FILTER_TEXT) {
            RemoteError::ContentFiltered { detail: message }
        } else {
            RemoteError::Validation { message }
        }
    }

    /// Classifies an SDK failure of any Bedrock Runtime operation (`InvokeModel`, `Converse`):
    /// their errors share codes and meanings.
    pub fn from_sdk<E, R>(err: SdkError<E, R>) -> RemoteError
    where
        E: ProvideErrorMetadata,
        R: std::fmt::Debug,
    {
        match err {
            SdkError::ServiceError(ctx) => RemoteError::from_service(&ctx.into_err()),
            SdkError::TimeoutError(_) => RemoteError::Timeout,
            SdkError::DispatchFailure(d) if d.is_timeout() => RemoteError::Timeout,
            SdkError::DispatchFailure(d) if d.is_user() || d.is_other() => RemoteError::Config {
                message: clip(format!("{:?}", d)),
            },
            SdkError::DispatchFailure(d) => RemoteError::Network {
                message: clip(format!("{:?}", d)),
            },
            // Its debug form holds the raw response, body and all.
            SdkError::ResponseError(r) => RemoteError::BadResponse {
                message: clip(format!("{r:?}")),
            },
            SdkError::ConstructionFailure(c) => RemoteError::Config {
                message: clip(format!("{c:?}")),
            },
            other => RemoteError::Network {
                message: other.to_string(),
            },
        }
    }

    /// By the error's code (the `x-amzn-ErrorType` header), the same for every operation.
    fn from_service(e: &impl ProvideErrorMetadata) -> RemoteError {
        let message = clip(e.message().unwrap_or_default().to_string());
        match e.code() {
            Some("ThrottlingException") => RemoteError::Throttled,
            Some("ModelNotReadyException") => RemoteError::ModelNotReady,
            Some("InternalServerException") => RemoteError::Server {
                status: 500,
                message,
            },
            Some("ServiceUnavailableException") => RemoteError::Server {
                status: 503,
                message,
            },
            Some("ModelTimeoutException") => RemoteError::Timeout,
            Some("AccessDeniedException") => RemoteError::AccessDenied { message },
            Some("ResourceNotFoundException") => RemoteError::ModelNotFound { message },
            Some("ServiceQuotaExceededException") => RemoteError::QuotaExceeded { message },
            Some("ValidationException") => RemoteError::from_validation(&message),
            Some("ModelErrorException") => RemoteError::ModelError { message },
            other => RemoteError::from_unmodelled(other, message),
        }
    }

    /// An error code the SDK does not model (newer service, proxy in between).
    fn from_unmodelled(code: Option<&str>, message: String) -> RemoteError {
        match code {
            Some(c) if c.contains("Throttl") || c.contains("TooManyRequests") => {
                RemoteError::Throttled
            }
            Some(c) if c.contains("AccessDenied") || c.contains("Unrecognized") => {
                RemoteError::AccessDenied { message }
            }
            Some(c) if c.contains("Signature") || c.contains("Token") => {
                RemoteError::AccessDenied { message }
            }
            _ => RemoteError::Server {
                status: 0,
                message: format!("{code:?}: {message}"),
            },
        }
    }
}

/// `message` cut to [`MAX_MESSAGE`] bytes, saying how much was left out.
fn clip(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let cut = message.len() - end;
    format!("{}… ({cut} more bytes not shown)", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;

    #[test]
    fn a_response_that_cannot_be_read_is_not_quoted_whole() {
        let raw = format!(
            "HttpResponse {{ body: {:?} }}",
            "{\"images\": [\"".repeat(2_000)
        );
        let err = SdkError::<InvokeModelError, String>::response_error(
            std::io::Error::other("body broke off"),
            raw,
        );
        let e = RemoteError::from_sdk(err);
        assert_eq!(
            e.reason(),
            RemoteError::BadResponse {
                message: String::new()
            }
            .reason()
        );
        let text = e.to_string();
        assert!(
            text.len() < MAX_MESSAGE + 80,
            "{} bytes: {text}",
            text.len()
        );
        assert!(text.ends_with(" more bytes not shown)"), "{text}");
        assert_eq!(clip("short".into()), "short");
    }

    #[test]
    fn validation_messages_are_told_apart() {
        let retired = RemoteError::from_validation("The provided model identifier is invalid.");
        assert_eq!(retired.action(), RetryAction::OpenCircuit);
        let filtered = RemoteError::from_validation(
            "This request has been blocked by our content filters. Please adjust your input image to submit a new request.",
        );
        assert_eq!(filtered.reason(), Reason::FallbackContentFiltered);
        assert_eq!(filtered.action(), RetryAction::FallBack);
        let plain = RemoteError::from_validation("extraneous key [x] is not permitted");
        assert_eq!(
            (plain.action(), plain.reason()),
            (RetryAction::FallBack, Reason::FallbackValidation)
        );
    }

    #[test]
    fn actions_per_kind() {
        assert_eq!(RemoteError::Throttled.action(), RetryAction::Retry);
        assert_eq!(RemoteError::InferenceError.action(), RetryAction::Retry);
        let denied = RemoteError::AccessDenied {
            message: String::new(),
        };
        assert_eq!(denied.action(), RetryAction::OpenCircuit);
        assert_eq!(denied.reason(), Reason::FallbackAccessDenied);
    }
}
