//! The step cache shared by every machine: paid step results in S3, so a run on any machine
//! (another shard, a retried Batch job on a fresh host) reuses work any other paid for.
//!
//! Layout under the manifest's `shared.cache` prefix: `steps/<step key hex>.json` (what the
//! result is: its blob, model, original cost, latency, size, quality flags) and
//! `blobs/<blake3 hex>` (the result's lossless PNG). Both are written create-only (`PutObject`
//! with `If-None-Match: *`): an object already there (412) is the same content (blobs are named
//! by their hash; a step key names one result), so a second writer simply finds it. The blob is
//! written before the entry that names it, so a reader never finds an entry without its pixels;
//! a blob is checked against its name when read, so a damaged one is a miss, never a corrupt
//! output (and is deleted with its entry, so the result paid for again replaces it). The local
//! SQLite store stays the run's own record: a shared hit is copied into it.

use serde::{Deserialize, Serialize};

use super::{CachedStep, StepKey};
use crate::manifest::S3Location;
use crate::money::Usd;
use crate::qa::Qa;
use crate::s3_client::{S3, S3Error};

/// A cached result larger than this is not read (a 100 MP PNG is about 400 MB; results are far
/// smaller).
const MAX_BLOB_BYTES: u64 = 512 << 20;
/// An entry larger than this is not one retouch wrote.
const MAX_ENTRY_BYTES: u64 = 64 << 10;
/// The entry format.
const ENTRY_VERSION: u32 = 1;

/// The shared tier of the step cache: an S3 prefix.
#[derive(Debug, Clone)]
pub struct SharedCache {
    s3: S3,
    bucket: String,
    /// Ends in `/` (or is empty: the whole bucket).
    prefix: String,
}

/// A step entry as stored in S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    version: u32,
    blob: String,
    model: String,
    cost_micros: i64,
    latency_ms: u64,
    out_w: u32,
    out_h: u32,
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qa_flags: Option<String>,
}

/// What [`SharedCache::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// This call created the entry.
    Written,
    /// Another run had published it already.
    AlreadyThere,
}

impl SharedCache {
    /// The shared cache at `loc` (a prefix), reached through `s3`.
    pub fn new(s3: S3, loc: &S3Location) -> SharedCache {
        let prefix = match loc.key.as_str() {
            "" => String::new(),
            k if k.ends_with('/') => k.to_owned(),
            k => format!("{k}/"),
        };
        SharedCache {
            s3,
            bucket: loc.bucket.clone(),
            prefix,
        }
    }

    fn entry_key(&self, key: &StepKey) -> String {
        format!("{}steps/{}.json", self.prefix, key.to_hex())
    }

    fn blob_key(&self, hex: &str) -> String {
        format!("{}blobs/{hex}", self.prefix)
    }

    /// The entry published under `key`, without its blob (a dry run's look: what a run would
    /// find). `Ok(None)`: nothing published, or a result kept without pixels.
    pub async fn entry(&self, key: &StepKey) -> Result<Option<CachedStep>, S3Error> {
        let entry_key = self.entry_key(key);
        let Some(bytes) = self
            .s3
            .get_optional(&self.bucket, &entry_key, MAX_ENTRY_BYTES)
            .await?
        else {
            return Ok(None);
        };
        let Some(step) = decode(&bytes) else {
            tracing::warn!(
                "s3://{}/{entry_key} is not a step entry; ignored",
                self.bucket
            );
            return Ok(None);
        };
        // Only paid results with their pixels are shared.
        Ok(Some(step).filter(|step| !step.blob.is_empty()))
    }

    /// The result published under `key`, with its blob's bytes (verified against their name;
    /// `None` for a result kept without pixels). `Ok(None)`: nothing published, or its blob is
    /// missing or damaged.
    pub async fn fetch(&self, key: &StepKey) -> Result<Option<(CachedStep, Vec<u8>)>, S3Error> {
        let Some(step) = self.entry(key).await? else {
            return Ok(None);
        };
        let blob_key = self.blob_key(&step.blob);
        let blob = self
            .s3
            .get_optional(&self.bucket, &blob_key, MAX_BLOB_BYTES)
            .await?;
        match blob {
            Some(b) if blake3::hash(&b).to_hex().as_str() == step.blob => Ok(Some((step, b))),
            Some(_) => {
                // Damaged: drop the entry and its blob, so the result paid for next (by this
                // run) can be published in their place rather than be refused as present.
                tracing::warn!(
                    "s3://{}/{blob_key} does not match its name; dropping it and its entry",
                    self.bucket
                );
                self.s3.delete(&self.bucket, &self.entry_key(key)).await?;
                self.s3.delete(&self.bucket, &blob_key).await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Publishes `step` under `key` with its blob's bytes `blob` (blob first, then the entry;
    /// both create-only).
    pub async fn publish(
        &self,
        key: &StepKey,
        step: &CachedStep,
        blob: Vec<u8>,
    ) -> Result<Published, S3Error> {
        debug_assert_eq!(blake3::hash(&blob).to_hex().as_str(), step.blob);
        self.s3
            .put_if_absent(&self.bucket, &self.blob_key(&step.blob), blob, "image/png")
            .await?;
        let created = self
            .s3
            .put_if_absent(
                &self.bucket,
                &self.entry_key(key),
                encode(step),
                "application/json",
            )
            .await?;
        Ok(if created {
            Published::Written
        } else {
            Published::AlreadyThere
        })
    }
}

fn encode(step: &CachedStep) -> Vec<u8> {
    let entry = Entry {
        version: ENTRY_VERSION,
        blob: step.blob.clone(),
        model: step.model.clone(),
        cost_micros: step.cost.micros(),
        latency_ms: step.latency_ms,
        out_w: step.out_w,
        out_h: step.out_h,
        created_at: step.created_at,
        qa_flags: step.qa.as_ref().map(Qa::flags_text),
    };
    serde_json::to_vec(&entry).expect("an entry always serialises")
}

fn decode(bytes: &[u8]) -> Option<CachedStep> {
    let e: Entry = serde_json::from_slice(bytes).ok()?;
    if e.version != ENTRY_VERSION || !super::cache::is_hex(&e.blob) {
        return None;
    }
    let qa = match &e.qa_flags {
        Some(text) => Some(Qa::parse_flags(text)?),
        None => None,
    };
    Some(CachedStep {
        blob: e.blob,
        model: e.model,
        cost: Usd(e.cost_micros),
        latency_ms: e.latency_ms,
        out_w: e.out_w,
        out_h: e.out_h,
        created_at: e.created_at,
        qa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_foreign_ones_are_refused() {
        let step = CachedStep {
            blob: blake3::hash(b"png").to_hex().to_string(),
            model: "us.stability.stable-image-remove-background-v1:0".into(),
            cost: Usd(70_000),
            latency_ms: 1234,
            out_w: 640,
            out_h: 480,
            created_at: 1_764_000_000,
            qa: Some(Qa::of(vec![])),
        };
        assert_eq!(decode(&encode(&step)), Some(step.clone()));
        let mut other = serde_json::to_value(Entry {
            version: 2,
            blob: step.blob.clone(),
            model: String::new(),
            cost_micros: 0,
            latency_ms: 0,
            out_w: 1,
            out_h: 1,
            created_at: 0,
            qa_flags: None,
        })
        .unwrap();
        assert_eq!(decode(other.to_string().as_bytes()), None, "a newer format");
        other["version"] = 1.into();
        other["blob"] = "../../etc/passwd".into();
        assert_eq!(
            decode(other.to_string().as_bytes()),
            None,
            "not a blob name"
        );
        assert_eq!(decode(b"{}"), None);
    }
}
