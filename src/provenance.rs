//! What an output is made of: its input, every step (op, model, why, prompts, what this run paid,
//! quality score), the pipeline and the run, as a JSON sidecar next to the output
//! (`output.sidecar: true`) and as S3 user metadata on S3 outputs (always, within S3's 2 KB
//! user-metadata limit). Pure: rows and the manifest in, bytes and headers out; the sinks write
//! them. The state store keeps the same facts as report rows.

use serde_json::{Value, json};

use crate::ledger::StepRecord;
use crate::manifest::{Manifest, OpParams};
use crate::sources::PromptRow;

/// S3's limit on all user-defined metadata of an object (keys and values), in bytes.
pub const S3_METADATA_LIMIT: usize = 2048;

/// The sidecar JSON of one output: `rows` are the image's rows of this run, in step order.
/// `made_from` is the prompts-file row a `generate` step made the image from: its prompt,
/// negative prompt, seed and aspect ratio are what that step was asked.
pub fn sidecar(
    manifest: &Manifest,
    run_id: Option<&str>,
    rows: &[StepRecord],
    output: &str,
    made_from: Option<&PromptRow>,
) -> Vec<u8> {
    let steps: Vec<Value> = rows
        .iter()
        .map(|r| {
            let step = manifest.steps.get(r.step);
            if let (Some(row), Some(step)) = (made_from, step)
                && let OpParams::Generate(p) = &step.params
            {
                let (w, h) = row.aspect_ratio.unwrap_or(p.aspect);
                return json!({
                    "step": r.step + 1,
                    "op": r.op.as_str(),
                    "model": r.model,
                    "reason": r.reason.as_str(),
                    "status": r.status.as_str(),
                    "id": row.id,
                    "prompt": row.prompt,
                    "negative_prompt": row.negative_prompt.clone().or_else(|| step.negative_prompt.clone()),
                    "seed": row.seed(),
                    "aspect_ratio": format!("{w}:{h}"),
                    "paid_this_run_usd": r.cost.to_string(),
                    "qa": r.qa.as_ref().map(|q| q.score_text()),
                    "qa_flags": r.qa.as_ref().map(|q| q.flags_text()),
                });
            }
            json!({
                "step": r.step + 1,
                "op": r.op.as_str(),
                "model": r.model,
                "reason": r.reason.as_str(),
                "status": r.status.as_str(),
                "prompt": step.and_then(|s| s.prompt.clone()),
                "negative_prompt": step.and_then(|s| s.negative_prompt.clone()),
                "paid_this_run_usd": r.cost.to_string(),
                "qa": r.qa.as_ref().map(|q| q.score_text()),
                "qa_flags": r.qa.as_ref().map(|q| q.flags_text()),
            })
        })
        .collect();
    let input = rows.first().map_or("", |r| r.image.as_str());
    let value = json!({
        "retouch": env!("CARGO_PKG_VERSION"),
        "pipeline": manifest.name,
        "run_id": run_id,
        "input": input,
        "output": output,
        "steps": steps,
    });
    let mut bytes = serde_json::to_vec_pretty(&value).expect("JSON values always serialise");
    bytes.push(b'\n');
    bytes
}

/// S3 user metadata (`x-amz-meta-…` without the prefix) for one output, ASCII only, the whole
/// within [`S3_METADATA_LIMIT`]: the pipeline, the run, the input, and `steps` as
/// `op=model` pairs; long values are cut (the sidecar has everything).
pub fn s3_metadata(
    manifest: &Manifest,
    run_id: Option<&str>,
    rows: &[StepRecord],
    made_from: Option<&PromptRow>,
) -> Vec<(String, String)> {
    let steps: Vec<String> = rows
        .iter()
        .map(|r| format!("{}={}", r.op.as_str(), r.model))
        .collect();
    let mut out = vec![
        ("retouch-pipeline".to_owned(), ascii(&manifest.name)),
        ("retouch-steps".to_owned(), ascii(&steps.join(";"))),
    ];
    if let Some(id) = run_id {
        out.push(("retouch-run".to_owned(), ascii(id)));
    }
    if let Some(r) = rows.first() {
        out.push(("retouch-input".to_owned(), ascii(&r.image)));
    }
    if let Some(row) = made_from {
        out.push(("retouch-seed".to_owned(), row.seed().to_string()));
        out.push(("retouch-prompt".to_owned(), ascii(&row.prompt)));
    }
    fit(&mut out);
    out
}

/// Cuts the longest values (marking each cut with `...`) until the whole is within
/// [`S3_METADATA_LIMIT`].
fn fit(kv: &mut [(String, String)]) {
    while size(kv) > S3_METADATA_LIMIT {
        let excess = size(kv) - S3_METADATA_LIMIT;
        let Some(longest) = kv.iter_mut().max_by_key(|(_, v)| v.len()) else {
            return;
        };
        let keep = longest.1.len().saturating_sub(excess + 3);
        if keep == 0 {
            longest.1.clear();
            return;
        }
        longest.1.truncate(keep);
        longest.1.push_str("...");
    }
}

fn size(kv: &[(String, String)]) -> usize {
    kv.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Printable ASCII, everything else percent-encoded (S3 metadata travels in HTTP headers).
fn ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_ascii_and_within_the_limit() {
        assert_eq!(ascii("caf\u{e9} 100%"), "caf%C3%A9 100%25");
        let mut kv = vec![
            ("retouch-input".to_owned(), "x".repeat(5000)),
            ("retouch-run".to_owned(), "r1".to_owned()),
        ];
        fit(&mut kv);
        assert!(size(&kv) <= S3_METADATA_LIMIT);
        assert!(kv[0].1.ends_with("..."));
        assert_eq!(kv[1].1, "r1");
    }
}
