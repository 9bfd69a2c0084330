//! Shared helpers for integration tests: in-process doubles that speak the real wire protocols.
#![allow(dead_code)]

// The double's handlers return a ready HTTP error response as `Err`; size is no concern there.
#[allow(clippy::result_large_err)]
pub(crate) mod bedrock_control;
#[allow(clippy::result_large_err)]
pub(crate) mod bedrock_double;
pub(crate) mod dynamodb;
pub(crate) mod retouch;
pub(crate) mod s3_server;
