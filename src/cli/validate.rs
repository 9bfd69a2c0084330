//! `retouch check --preset NAME PATH...`: validates finished images against a marketplace
//! preset's rules (`marketplace`), processing nothing. PATHs are image files, folders (searched
//! recursively for png, jpg, jpeg and webp) and run reports (the local outputs a `report.csv`
//! lists). Prints one line per image that breaks a rule, naming each rule, then a summary;
//! exits 1 when any image breaks a rule or cannot be read.

use std::path::{Path, PathBuf};

use retouch::codec;
use retouch::marketplace::{self, Preset, Violation};

use super::code;

/// Images larger than this many megapixels are refused (a marketplace image is at most 100).
const MAX_MEGAPIXELS: u32 = 120;

pub(super) fn validate(preset: &str, paths: &[PathBuf]) -> anyhow::Result<i32> {
    let Some(preset) = Preset::parse(preset) else {
        eprintln!("error: unknown preset `{preset}`");
        return Ok(code::USAGE);
    };
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        if let Err(e) = collect(path, &mut files, &mut skipped) {
            eprintln!("error: {}: {e}", path.display());
            return Ok(code::USAGE);
        }
    }
    if files.is_empty() {
        eprintln!("error: no images found in the paths given");
        return Ok(code::USAGE);
    }
    let rules = preset.rules();
    let (mut passed, mut failed, mut unreadable) = (0usize, 0usize, 0usize);
    for file in &files {
        match validate_file(file, &rules) {
            Ok(v) if v.is_empty() => passed += 1,
            Ok(v) => {
                failed += 1;
                let names: Vec<String> = v.iter().map(|v| v.name()).collect();
                let why: Vec<String> = v.iter().map(|v| v.explain()).collect();
                println!(
                    "{}: {} ({})",
                    file.display(),
                    names.join(";"),
                    why.join("; ")
                );
            }
            Err(e) => {
                unreadable += 1;
                println!("{}: unreadable: {e}", file.display());
            }
        }
    }
    for s in &skipped {
        println!("{s}: not checked (only local files are)");
    }
    println!(
        "{preset}: {passed} of {} images pass, {failed} break a rule, {unreadable} unreadable",
        files.len()
    );
    Ok(if failed + unreadable == 0 {
        code::OK
    } else {
        code::SOME_FAILED
    })
}

/// Every rule `file` breaks.
fn validate_file(file: &Path, rules: &marketplace::Rules) -> anyhow::Result<Vec<Violation>> {
    let bytes = std::fs::read(file)?;
    let decoded = codec::decode(&bytes, MAX_MEGAPIXELS)?;
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
fn collect(path: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<String>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut found = Vec::new();
        walk(path, &mut found)?;
        found.sort();
        files.extend(found);
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        report_outputs(path, files, skipped)?;
    } else if path.is_file() {
        files.push(path.to_owned());
    } else {
        anyhow::bail!("no such file or folder");
    }
    Ok(())
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

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg", "webp"].contains(&e.to_ascii_lowercase().as_str()))
}

/// The outputs a run report lists (its `output` column), each once; S3 outputs are noted as not
/// checked.
fn report_outputs(
    report: &Path,
    files: &mut Vec<PathBuf>,
    skipped: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut reader = csv::Reader::from_path(report)?;
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
        if out.starts_with("s3://") {
            skipped.push(out.to_owned());
        } else {
            files.push(resolve(report, Path::new(out)));
        }
    }
    Ok(())
}
