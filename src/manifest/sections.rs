//! Checks for every top-level section except `steps:` (see `steps`), each turning a checked
//! `serde_yaml::Value` into its domain type or pushing diagnostics.
//!
//! Paths are only joined onto the manifest's folder here; nothing touches the file system.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_yaml::Value;

use super::check::{Checker, Fields, FloatRange};
use super::places;
use super::suggest;
use super::types::{
    AwsSettings, Budget, InputSpec, Limits, OutputFormat, OutputSpec, Place, S3Endpoint,
    S3Location, SharedState, Step, Usd,
};

pub(super) const OUTPUT_KEYS: &[&str] = &["dir", "format", "quality", "presign", "sidecar"];
pub(super) const LIMITS_KEYS: &[&str] = &[
    "concurrency",
    "downloads",
    "attempts",
    "max_megapixels",
    "rpm",
];
pub(super) const BUDGET_KEYS: &[&str] = &["max_usd", "per_image_max_usd", "daily_max_usd"];
pub(super) const AWS_KEYS: &[&str] = &["region", "regions", "profile", "s3"];
pub(super) const AWS_S3_KEYS: &[&str] = &["endpoint_url", "path_style"];

/// `version:` must be exactly 1.
pub(super) fn version(ck: &mut Checker, fields: &Fields) -> Option<u32> {
    let v = ck.required(fields, "version")?;
    let n = ck.int(v, "version", 0, i64::from(u32::MAX))?;
    if n != 1 {
        let help = "this version of retouch reads manifest version 1; set `version: 1`".into();
        ck.error(
            "version",
            format!("unsupported manifest version {n} in version"),
            Some(help),
        );
        return None;
    }
    Some(1)
}

/// `name:`: non-empty, `[A-Za-z0-9._-]+`.
pub(super) fn name(ck: &mut Checker, fields: &Fields) -> Option<String> {
    let v = ck.required(fields, "name")?;
    let s = ck.non_empty_string(v, "name")?;
    let is_valid = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !is_valid {
        let help = "use only letters, digits, `.`, `_` and `-`, e.g. `shoes-2024`".into();
        ck.error(
            "name",
            format!("invalid pipeline name `{s}` in name"),
            Some(help),
        );
        return None;
    }
    Some(s.to_owned())
}

/// `inputs:`: a non-empty list of local globs and `s3://` prefixes or globs.
pub(super) fn inputs(ck: &mut Checker, fields: &Fields) -> Option<Vec<InputSpec>> {
    let v = ck.required(fields, "inputs")?;
    let items = ck.list(v, "inputs")?;
    if items.is_empty() {
        let help = "list at least one glob, e.g. `inputs: [\"photos/**/*.jpg\"]`".into();
        ck.error("inputs", "inputs must not be empty".into(), Some(help));
        return None;
    }
    let specs: Vec<Option<InputSpec>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| input(ck, item, &format!("inputs[{i}]")))
        .collect();
    specs.into_iter().collect()
}

fn input(ck: &mut Checker, v: &Value, path: &str) -> Option<InputSpec> {
    let s = ck.non_empty_string(v, path)?;
    if !places::is_s3(s) {
        return glob(ck, v, path).map(|pattern| InputSpec::LocalGlob { pattern });
    }
    match places::s3_input(s) {
        Ok(spec) => Some(spec),
        Err(why) => {
            let help = "write `s3://bucket/prefix/` or `s3://bucket/prefix/**/*.jpg`".into();
            ck.error(
                path,
                format!("bad S3 input `{s}` in {path}: {why}"),
                Some(help),
            );
            None
        }
    }
}

/// Extensions of prompts files (`generate` reads them).
pub(super) const PROMPTS_EXTENSIONS: &[&str] = &["csv", "jsonl", "yaml", "yml", "json"];

fn is_prompts_file(path: &str) -> bool {
    std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PROMPTS_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Inputs and steps together: a pipeline whose first step is `generate` reads prompts files
/// (local paths), and no other step may be `generate`; a prompts file given to a pipeline of
/// photos is named as the mistake it is.
pub(super) fn prompt_inputs(
    ck: &mut Checker,
    inputs: Vec<InputSpec>,
    steps: &[Step],
) -> Option<Vec<InputSpec>> {
    let mut ok = true;
    for step in steps.iter().skip(1).filter(|s| s.op.makes_image()) {
        let path = format!("steps[{}].op", step.index);
        let help = "move the generate step first: later steps work on the images it makes".into();
        ck.error(
            &path,
            format!("generate makes a pipeline's images from prompts, so it can only be steps[0]; {path} is generate"),
            Some(help),
        );
        ok = false;
    }
    let generates = steps.first().is_some_and(|s| s.op.makes_image());
    let mut out = Vec::with_capacity(inputs.len());
    for (i, spec) in inputs.into_iter().enumerate() {
        let path = format!("inputs[{i}]");
        match (generates, spec) {
            (true, InputSpec::LocalGlob { pattern }) if is_prompts_file(&pattern) => {
                out.push(InputSpec::Prompts { path: pattern });
            }
            // `s3://bucket/prompts.csv` reads as the prefix `prompts.csv/`: it is the object.
            (
                true,
                InputSpec::S3 {
                    bucket,
                    prefix,
                    pattern: None,
                },
            ) if is_prompts_file(prefix.trim_end_matches('/')) => {
                let key = prefix.trim_end_matches('/').to_owned();
                out.push(InputSpec::S3Prompts { bucket, key });
            }
            (true, spec) => {
                let help = format!(
                    "list prompts files ({}) with `id` and `prompt` columns, local or in S3, \
                     e.g. `inputs: [prompts.csv]` or `inputs: [\"s3://bucket/prompts.csv\"]`",
                    PROMPTS_EXTENSIONS.join(", ")
                );
                ck.error(
                    &path,
                    format!("`{spec}` in {path} is not a prompts file, which a pipeline starting with generate reads"),
                    Some(help),
                );
                ok = false;
            }
            (false, InputSpec::LocalGlob { pattern }) if is_prompts_file(&pattern) => {
                let help = "start the steps with `- { op: generate, models: [stability-core], fallback: skip }` \
                            to make images from it, or list photos (`photos/**/*.jpg`)"
                    .into();
                ck.error(
                    &path,
                    format!("`{pattern}` in {path} is a prompts file, which only a pipeline whose first step is generate reads"),
                    Some(help),
                );
                ok = false;
            }
            (false, spec) => out.push(spec),
        }
    }
    ok.then_some(out)
}

/// `exclude:`: an optional list of globs.
pub(super) fn exclude(ck: &mut Checker, fields: &Fields) -> Option<Vec<String>> {
    match fields.get("exclude") {
        None => Some(Vec::new()),
        Some(v) => glob_list(ck, v, "exclude"),
    }
}

/// A list of glob strings; every bad entry is reported.
fn glob_list(ck: &mut Checker, v: &Value, path: &str) -> Option<Vec<String>> {
    let items = ck.list(v, path)?;
    let globs: Vec<Option<String>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| glob(ck, item, &format!("{path}[{i}]")))
        .collect();
    globs.into_iter().collect()
}

fn glob(ck: &mut Checker, v: &Value, path: &str) -> Option<String> {
    let pattern = ck.non_empty_string(v, path)?;
    if places::is_s3(pattern) {
        let help = "exclude patterns match paths relative to each input's prefix or glob base, \
                    e.g. `**/*_thumb.*`"
            .into();
        ck.error(
            path,
            format!("`{pattern}` in {path} must be a pattern, not an S3 location"),
            Some(help),
        );
        return None;
    }
    if let Err(e) = globset::Glob::new(pattern) {
        let help =
            "globs use `*`, `**`, `?`, `[abc]` and `{a,b}`; brackets and braces must be closed"
                .into();
        ck.error(
            path,
            format!("invalid glob `{pattern}` in {path}: {}", e.kind()),
            Some(help),
        );
        return None;
    }
    Some(pattern.to_owned())
}

/// `output:`.
pub(super) fn output(ck: &mut Checker, fields: &Fields) -> Option<OutputSpec> {
    let v = ck.required(fields, "output")?;
    let out = ck.fields(v, "output", OUTPUT_KEYS)?;
    let dir = ck
        .required(&out, "dir")
        .and_then(|v| ck.non_empty_string(v, "output.dir"))
        .and_then(|d| folder_location(ck, d, "output.dir"));
    let format = match out.get("format") {
        None => Some(OutputFormat::Png),
        Some(v) => output_format(ck, v),
    };
    let quality = match out.get("quality") {
        None => Some(90),
        Some(v) => ck.int(v, "output.quality", 1, 100).map(|q| q as u8),
    };
    let presign = match out.get("presign") {
        None => Some(None),
        Some(v) => presign(ck, v, dir.as_ref()).map(Some),
    };
    let sidecar = match out.get("sidecar") {
        None => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => {
            ck.type_error("output.sidecar", v, "true or false");
            None
        }
    };
    Some(OutputSpec {
        dir: dir?,
        format: format?,
        quality: quality?,
        presign: presign?,
        sidecar: sidecar?,
    })
}

/// A local folder (joined onto the manifest's folder) or an `s3://bucket/prefix/`.
fn folder_location(ck: &mut Checker, s: &str, path: &str) -> Option<Place> {
    if !places::is_s3(s) {
        return Some(Place::Local(places::normalize(&ck.base_dir.join(s))));
    }
    match places::s3_folder(s) {
        Ok(loc) => Some(Place::S3(loc)),
        Err(why) => {
            let help = "write `s3://bucket/prefix/`".into();
            ck.error(
                path,
                format!("bad S3 location `{s}` in {path}: {why}"),
                Some(help),
            );
            None
        }
    }
}

/// `output.presign: 24h`: only for S3 outputs, at most 7 days.
fn presign(ck: &mut Checker, v: &Value, dir: Option<&Place>) -> Option<std::time::Duration> {
    let s = ck.string(v, "output.presign")?;
    let d = match places::duration(s) {
        Ok(d) => d,
        Err(why) => {
            let help = "write a whole number with s, m, h or d, e.g. `24h` or `90m`".into();
            ck.error(
                "output.presign",
                format!("{why} in output.presign"),
                Some(help),
            );
            return None;
        }
    };
    if dir.is_some_and(|d| !d.is_s3()) {
        let help = "presigned URLs are for S3 outputs; remove `presign` or write to `s3://`".into();
        ck.error(
            "output.presign",
            "output.presign needs an S3 output.dir".into(),
            Some(help),
        );
        return None;
    }
    Some(d)
}

fn output_format(ck: &mut Checker, v: &Value) -> Option<OutputFormat> {
    let s = ck.string(v, "output.format")?;
    match s {
        "png" => Some(OutputFormat::Png),
        "jpeg" | "jpg" => Some(OutputFormat::Jpeg),
        "webp" => Some(OutputFormat::Webp),
        _ => {
            let valid = ["png", "jpeg", "jpg", "webp"];
            let help = suggest::help(s, valid, "valid formats: png, jpeg (or jpg), webp".into());
            ck.error(
                "output.format",
                format!("unknown output format `{s}` in output.format"),
                Some(help),
            );
            None
        }
    }
}

/// `limits:` (all optional).
pub(super) fn limits(ck: &mut Checker, fields: &Fields) -> Option<Limits> {
    let Some(v) = fields.get("limits") else {
        return Some(Limits::default());
    };
    let lim = ck.fields(v, "limits", LIMITS_KEYS)?;
    let d = Limits::default();
    let concurrency = opt_int(ck, &lim, "concurrency", 1, 1024, d.concurrency as i64);
    let downloads = opt_int(ck, &lim, "downloads", 1, 1024, d.downloads as i64);
    let attempts = opt_int(ck, &lim, "attempts", 1, 10, i64::from(d.attempts));
    let max_mp = opt_int(
        ck,
        &lim,
        "max_megapixels",
        1,
        1000,
        i64::from(d.max_megapixels),
    );
    let rpm = match lim.get("rpm") {
        None => Some(BTreeMap::new()),
        Some(v) => model_map(ck, v, "limits.rpm", |ck, v, path| {
            ck.int(v, path, 1, 100_000).map(|n| n as u32)
        }),
    };
    Some(Limits {
        concurrency: concurrency? as usize,
        downloads: downloads? as usize,
        rpm: rpm?,
        attempts: attempts? as u32,
        max_megapixels: max_mp? as u32,
    })
}

fn opt_int(
    ck: &mut Checker,
    fields: &Fields,
    key: &str,
    min: i64,
    max: i64,
    default: i64,
) -> Option<i64> {
    match fields.get(key) {
        None => Some(default),
        Some(v) => ck.int(v, &fields.path(key), min, max),
    }
}

/// `budget:` (all optional).
pub(super) fn budget(ck: &mut Checker, fields: &Fields) -> Option<Budget> {
    let Some(v) = fields.get("budget") else {
        return Some(Budget::default());
    };
    let b = ck.fields(v, "budget", BUDGET_KEYS)?;
    let mut amount = |key: &str| match b.get(key) {
        None => Some(None),
        Some(v) => usd(ck, v, &b.path(key)).map(Some),
    };
    let max_usd = amount("max_usd");
    let per_image = amount("per_image_max_usd");
    let daily = amount("daily_max_usd");
    Some(Budget {
        max_usd: max_usd?,
        per_image_max_usd: per_image?,
        daily_max_usd: daily?,
    })
}

/// A dollar amount >= 0.
fn usd(ck: &mut Checker, v: &Value, path: &str) -> Option<Usd> {
    let x = ck.float(v, path, FloatRange::inclusive(0.0, 1.0e9))?;
    Usd::from_dollars(x)
}

/// `aws:` (all optional).
pub(super) fn aws(ck: &mut Checker, fields: &Fields) -> Option<AwsSettings> {
    let Some(v) = fields.get("aws") else {
        return Some(AwsSettings::default());
    };
    let a = ck.fields(v, "aws", AWS_KEYS)?;
    let region = match a.get("region") {
        None => Some(None),
        Some(v) => region(ck, v).map(Some),
    };
    let regions = match a.get("regions") {
        None => Some(Vec::new()),
        Some(v) => region_list(ck, v),
    };
    let profile = match a.get("profile") {
        None => Some(None),
        Some(v) => ck
            .non_empty_string(v, "aws.profile")
            .map(|p| Some(p.to_owned())),
    };
    let s3 = match a.get("s3") {
        None => Some(S3Endpoint::default()),
        Some(v) => s3_endpoint(ck, v),
    };
    Some(AwsSettings {
        region: region?,
        regions: regions?,
        profile: profile?,
        s3: s3?,
    })
}

/// `aws.s3: { endpoint_url, path_style }`.
fn s3_endpoint(ck: &mut Checker, v: &Value) -> Option<S3Endpoint> {
    let f = ck.fields(v, "aws.s3", AWS_S3_KEYS)?;
    let endpoint_url = match f.get("endpoint_url") {
        None => Some(None),
        Some(v) => ck.non_empty_string(v, "aws.s3.endpoint_url").and_then(|u| {
            if u.starts_with("http://") || u.starts_with("https://") {
                Some(Some(u.to_owned()))
            } else {
                let help = "e.g. `http://minio.internal:9000`".into();
                let message =
                    format!("aws.s3.endpoint_url `{u}` must start with http:// or https://");
                ck.error("aws.s3.endpoint_url", message, Some(help));
                None
            }
        }),
    };
    let path_style = match f.get("path_style") {
        None => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => {
            ck.type_error("aws.s3.path_style", v, "true or false");
            None
        }
    };
    Some(S3Endpoint {
        endpoint_url: endpoint_url?,
        path_style: path_style?,
    })
}

fn region(ck: &mut Checker, v: &Value) -> Option<String> {
    region_at(ck, v, "aws.region")
}

fn region_at(ck: &mut Checker, v: &Value, path: &str) -> Option<String> {
    let s = ck.string(v, path)?;
    if !is_region_shaped(s) {
        let help = "regions look like `us-east-1`, `eu-west-2` or `us-gov-west-1`".into();
        ck.error(
            path,
            format!("invalid AWS region `{s}` in {path}"),
            Some(help),
        );
        return None;
    }
    Some(s.to_owned())
}

/// `aws.regions: [us-east-1, us-west-2]`: every region the run may call a model in.
fn region_list(ck: &mut Checker, v: &Value) -> Option<Vec<String>> {
    let items = ck.list(v, "aws.regions")?;
    if items.is_empty() {
        let help = "leave `aws.regions` out to allow the regions of the run's own geography".into();
        ck.error(
            "aws.regions",
            "aws.regions must not be empty".into(),
            Some(help),
        );
        return None;
    }
    let regions: Vec<Option<String>> = items
        .iter()
        .enumerate()
        .map(|(i, v)| region_at(ck, v, &format!("aws.regions[{i}]")))
        .collect();
    regions.into_iter().collect()
}

/// `xx-word(-word)*-N`, lowercase.
fn is_region_shaped(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    let is_lower = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase());
    first.len() == 2
        && is_lower(first)
        && !middle.is_empty()
        && middle.iter().all(is_lower)
        && !last.is_empty()
        && last.chars().all(|c| c.is_ascii_digit())
}

/// `catalog:`: an optional path joined onto the manifest's folder (existence checked later).
pub(super) fn catalog_path(ck: &mut Checker, fields: &Fields) -> Option<Option<PathBuf>> {
    match fields.get("catalog") {
        None => Some(None),
        Some(v) => ck
            .non_empty_string(v, "catalog")
            .map(|p| Some(places::normalize(&ck.base_dir.join(p)))),
    }
}

/// `state:`: the state folder (run history, step cache), joined onto the manifest's folder;
/// default `.retouch` next to the manifest.
pub(super) fn state(ck: &mut Checker, fields: &Fields) -> Option<PathBuf> {
    match fields.get("state") {
        None => Some(places::normalize(&ck.base_dir.join(".retouch"))),
        Some(v) => ck
            .non_empty_string(v, "state")
            .map(|p| places::normalize(&ck.base_dir.join(p))),
    }
}

/// `shared:`: `cache:`, an S3 prefix (`s3://bucket/prefix/`) where paid step results are kept
/// for every machine (it may not overlap the output folder); `dynamodb_table:`, the DynamoDB
/// table that coordinates the machines (claims, the run and daily caps, rate limits), which
/// needs the cache (the results its claims wait for).
pub(super) fn shared(ck: &mut Checker, fields: &Fields) -> Option<SharedState> {
    let Some(v) = fields.get("shared") else {
        return Some(SharedState::default());
    };
    let f = ck.fields(v, "shared", &["cache", "dynamodb_table"])?;
    let cache = match f.get("cache") {
        None => None,
        Some(v) => Some(shared_cache(ck, &f.path("cache"), v)?),
    };
    let table = match f.get("dynamodb_table") {
        None => None,
        Some(v) => Some(dynamodb_table(ck, &f.path("dynamodb_table"), v)?),
    };
    if table.is_some() && cache.is_none() {
        let path = f.path("dynamodb_table");
        ck.key_error(
            &path,
            format!("{path} needs shared.cache: machines waiting for a step another one is doing read its result there"),
            Some("add `cache: s3://my-bucket/retouch-cache/` under `shared:`".into()),
        );
        return None;
    }
    Some(SharedState {
        cache,
        dynamodb_table: table,
    })
}

fn shared_cache(ck: &mut Checker, path: &str, v: &Value) -> Option<S3Location> {
    let s = ck.non_empty_string(v, path)?;
    let help = "e.g. `cache: s3://my-bucket/retouch-cache/` (a prefix of its own)".to_owned();
    if !places::is_s3(s) {
        let message = format!("{path} must be an S3 prefix, not `{s}`");
        ck.key_error(path, message, Some(help));
        return None;
    }
    match places::parse_s3(s) {
        Ok(mut loc) => {
            if !loc.key.is_empty() && !loc.key.ends_with('/') {
                loc.key.push('/');
            }
            Some(loc)
        }
        Err(why) => {
            ck.key_error(
                path,
                format!("bad S3 location `{s}` in {path}: {why}"),
                Some(help),
            );
            None
        }
    }
}

/// A DynamoDB table name: 3 to 255 of `a-z A-Z 0-9 _ - .`.
fn dynamodb_table(ck: &mut Checker, path: &str, v: &Value) -> Option<String> {
    let s = ck.non_empty_string(v, path)?;
    let valid = (3..=255).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        ck.key_error(
            path,
            format!("`{s}` is not a DynamoDB table name"),
            Some("3 to 255 letters, digits, `_`, `-` or `.`, e.g. `retouch-coordination`".into()),
        );
        return None;
    }
    Some(s.to_owned())
}

/// `prices:`: model name → USD per image, keyed by canonical id.
pub(super) fn prices(ck: &mut Checker, fields: &Fields) -> Option<BTreeMap<String, Usd>> {
    match fields.get("prices") {
        None => Some(BTreeMap::new()),
        Some(v) => model_map(ck, v, "prices", usd),
    }
}

/// `report:`: optional local path or `s3://bucket/key`; default `<output.dir>/report.csv`.
pub(super) fn report(
    ck: &mut Checker,
    fields: &Fields,
    output: Option<&OutputSpec>,
) -> Option<Place> {
    let Some(v) = fields.get("report") else {
        return output.map(|o| o.dir.join("report.csv"));
    };
    let s = ck.non_empty_string(v, "report")?;
    if !places::is_s3(s) {
        return Some(Place::Local(places::normalize(&ck.base_dir.join(s))));
    }
    match places::s3_object(s) {
        Ok(loc) => Some(Place::S3(loc)),
        Err(why) => {
            ck.error(
                "report",
                format!("bad S3 location `{s}` in report: {why}"),
                None,
            );
            None
        }
    }
}

/// A mapping from model names (aliases or ids) to values, re-keyed by canonical id.
fn model_map<T>(
    ck: &mut Checker,
    v: &Value,
    path: &str,
    value: impl Fn(&mut Checker, &Value, &str) -> Option<T>,
) -> Option<BTreeMap<String, T>> {
    let Some(map) = v.as_mapping() else {
        ck.type_error(path, v, "a mapping of model names to values");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            ck.error(path, format!("keys in {path} must be model names"), None);
            ok = false;
            continue;
        };
        let key_path = format!("{path}.{name}");
        let id = super::model_names::canonical_id(ck, name, &key_path);
        let val = value(ck, v, &key_path);
        match (id, val) {
            (Some(id), Some(val)) => {
                if out.insert(id.clone(), val).is_some() {
                    let message = format!(
                        "model `{id}` appears twice in {path} (as `{name}` and another name)"
                    );
                    ck.key_error(&key_path, message, None);
                    ok = false;
                }
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_shapes() {
        for good in [
            "us-east-1",
            "eu-central-1",
            "us-gov-west-1",
            "ap-southeast-2",
        ] {
            assert!(is_region_shaped(good), "{good}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "u-east-1",
            "us--1",
            "",
            "us-east-x",
        ] {
            assert!(!is_region_shaped(bad), "{bad}");
        }
    }
}
