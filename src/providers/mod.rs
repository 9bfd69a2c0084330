//! providers
pub mod bedrock;
