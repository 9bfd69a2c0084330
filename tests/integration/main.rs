//! Integration tests: one binary, driving the real `retouch` executable and library, and the real
//! AWS SDK clients against in-process doubles on 127.0.0.1.

mod harness;
mod support;

mod account;
mod bedrock_adapters;
mod bedrock_routing;
mod cli_run;
#[cfg(feature = "moto")]
mod coordination;
mod deploy;
mod escalation;
mod frame;
mod generate;
mod grader;
mod guided_edits;
mod hostile;
mod local_network;
mod masks;
mod omni;
mod outpaint;
mod provenance;
mod qa;
mod replace_bg;
mod report_cmd;
mod reruns;
mod s3;
mod safety;
mod shards;
mod shared_cache;
