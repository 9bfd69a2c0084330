//! `retouch check --preset NAME PATH...`: validates finished images against a marketplace
//! preset's rules (`marketplace`), processing nothing. PATHs are image files, folders (searched
//! recursively for png, jpg, jpeg and webp), run reports (the outputs a `report.csv` lists, local
//! or in S3), and S3 locations (`s3://bucket/key.jpg`, or `s3://bucket/prefix/`: every image
//! under it), read with GetObject. Prints one line per image that breaks a rule, naming each
//! rule, then a summary; exits 1 when any image breaks a rule or cannot be read.

use std::path::{Path, PathBuf};

use retouch::codec;
use retouch::manifest::parse_s3;
use retouch::marketplace::{self, Preset, Violation};

use super::args::CheckArgs;
use super::code;
use super::s3_access::{S3Access, is_s3};

/// Images larger than this many megapixels are refused (a marketplace image is at most 100).
const MAX_MEGAPIXELS: u32 = 120;

/// One image to check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::File(p) => write!(f, "{}", p.display()),
            Target::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

pub(super) async fn validate(preset: &str, args: &CheckArgs) -> anyhow::Result<i32> {
    let Some(preset) = Preset::parse(preset) else {
        eprintln!("error: unknown preset `{preset}`");
        return Ok(code::USAGE);
    };
    let mut s3 = S3Access::new(&args.s3);
    let mut targets = Vec::new();
    for path in &args.paths {
        if let Err(e) = collect(path, &mut s3, &mut targets).await {
            eprintln!("error: {}: {e:#}", path.display());
            return Ok(code::USAGE);
        }
    }
    if targets.is_empty() {
        eprintln!("error: no images found in the paths given");
        return Ok(code::USAGE);
    }
    let rules = preset.rules();
    let (mut passed, mut failed, mut unreadable) = (0usize, 0usize, 0usize);
    for target in &targets {
        let bytes = match target {
            Target::File(path) => std::fs::read(path).map_err(anyhow::Error::from),
            Target::S3 { bucket, key } => s3.get(bucket, key).await,
        };
        match bytes.and_then(|b| validate_bytes(&b, &rules)) {
            Ok(v) if v.is_empty() => passed += 1,
            Ok(v) => {
                failed += 1;
                let names: Vec<String> = v.iter().map(|v| v.name()).collect();
                let why: Vec<String> = v.iter().map(|v| v.explain()).collect();
                println!("{target}: {} ({})", names.join(";"), why.join("; "));
            }
            Err(e) => {
                unreadable += 1;
                println!("{target}: unreadable: {e}");
            }
        }
    }
    println!(
        "{preset}: {passed} of {} images pass, {failed} break a rule, {unreadable} unreadable",
        targets.len()
    );
    Ok(if failed + unreadable == 0 {
        code::OK
    } else {
        code::SOME_FAILED
    })
}

/// Every rule the image in `bytes` breaks.
fn validate_bytes(bytes: &[u8], rules: &marketplace::Rules) -> anyhow::Result<Vec<Violation>> {
    let decoded = codec::decode(bytes, MAX_MEGAPIXELS)?;
    let is_jpeg = decoded.format == image::ImageFormat::Jpeg;
    let mut violations = marketplace::check(&decoded.image, rules).violations;
    violations.extend(marketplace::check_file(
        is_jpeg,
        decoded.icc.as_deref(),
        rules,
    ));
    violations.sort();
    violations.dedup();
    Ok(violations)
}

/// Adds the images `path` names: itself, those under it, or those a report lists.
async fn collect(path: &Path, s3: &mut S3Access, targets: &mut Vec<Target>) -> anyhow::Result<()> {
    let text = path.to_string_lossy();
    if is_s3(&text) {
        let loc = parse_s3(&text).map_err(|e| anyhow::anyhow!(e))?;
        if has_ext(&loc.key, "csv") {
            let bytes = s3.get(&loc.bucket, &loc.key).await?;
            return report_outputs(&bytes, None, targets);
        }
        if is_image_name(&loc.key) {
            targets.push(Target::S3 {
                bucket: loc.bucket,
                key: loc.key,
            });
            return Ok(());
        }
        let prefix = match loc.key.as_str() {
            "" => String::new(),
            k if k.ends_with('/') => k.to_owned(),
            k => format!("{k}/"),
        };
        let mut keys = s3.client().await.list(&loc.bucket, &prefix).await?;
        keys.retain(|k| is_image_name(k));
        if keys.is_empty() {
            anyhow::bail!("no images under this prefix");
        }
        targets.extend(keys.into_iter().map(|key| Target::S3 {
            bucket: loc.bucket.clone(),
            key,
        }));
    } else if path.is_dir() {
        let mut found = Vec::new();
        walk(path, &mut found)?;
        found.sort();
        targets.extend(found.into_iter().map(Target::File));
    } else if has_ext(&text, "csv") {
        let bytes = std::fs::read(path)?;
        report_outputs(&bytes, Some(path), targets)?;
    } else if path.is_file() {
        targets.push(Target::File(path.to_owned()));
    } else {
        anyhow::bail!("no such file or folder");
    }
    Ok(())
}

fn has_ext(name: &str, ext: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// A report's output path: as written (relative to where the run ran), else relative to the
/// report's folder.
fn resolve(report: &Path, out: &Path) -> PathBuf {
    if out.is_absolute() || out.exists() {
        return out.to_owned();
    }
    let beside = report.parent().map(|d| d.join(out));
    beside
        .filter(|p| p.exists())
        .unwrap_or_else(|| out.to_owned())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else if is_image_name(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_image_name(name: impl AsRef<Path>) -> bool {
    name.as_ref()
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg", "webp"].contains(&e.to_ascii_lowercase().as_str()))
}

/// The outputs a run report lists (its `output` column), each once: local ones relative to
/// where the run ran or to the report's folder (`report`, when it is a local file), S3 ones
/// read from S3.
fn report_outputs(
    bytes: &[u8],
    report: Option<&Path>,
    targets: &mut Vec<Target>,
) -> anyhow::Result<()> {
    let mut reader = csv::Reader::from_reader(bytes);
    let column = reader
        .headers()?
        .iter()
        .position(|h| h == "output")
        .ok_or_else(|| anyhow::anyhow!("not a retouch report (no `output` column)"))?;
    let mut seen = std::collections::BTreeSet::new();
    for record in reader.records() {
        let record = record?;
        let Some(out) = record.get(column).filter(|s| !s.is_empty()) else {
            continue;
        };
        if !seen.insert(out.to_owned()) {
            continue;
        }
        if is_s3(out) {
            let loc = parse_s3(out).map_err(|e| anyhow::anyhow!("{out}: {e}"))?;
            targets.push(Target::S3 {
                bucket: loc.bucket,
                key: loc.key,
            });
        } else {
            let path = Path::new(out);
            targets.push(Target::File(match report {
                Some(report) => resolve(report, path),
                None => path.to_owned(),
            }));
        }
    }
    Ok(())
}
