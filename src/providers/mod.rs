//! Backends that perform one step on one image: the built-in local implementations, and remote
//! models. Each classifies its own failures; none decides which backend to use (that is the
//! router's job) or retries (the scheduler's).

pub mod bedrock;
pub mod local;
