//! YAML manifest → validated [`Manifest`], or every diagnostic at once.
//!
//! Owns the manifest format (version 1). `guard` refuses oversized, non-UTF-8 or deeply nested
//! text before any parser sees it; `yaml` parses the rest into a `Value` (via serde_yaml); small
//! `check_*` style functions (`sections`, `steps`, `models`) walk it, pushing a [`Diagnostic`] for
//! every unknown key, wrong type, out-of-range value or unknown model, and build the domain types
//! only when nothing was wrong. `spans` maps key paths back to line and column. Reads only the
//! manifest file itself: no globbing, no existence checks (the engine does those). No `Raw*` type
//! or YAML value leaves this module.

mod check;
mod diagnostic;
mod guard;
mod model_names;
mod places;
mod sections;
mod spans;
mod steps;
mod suggest;
mod types;
mod yaml;

pub use diagnostic::{Diagnostic, Location, ManifestErrors, Position};
pub use places::{MAX_PRESIGN, normalize, parse_s3};
pub use types::*;

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::catalog::Catalog;
use check::Checker;
use spans::{Spans, join_key};

/// Every top-level key, in the order the docs list them.
const TOP_KEYS: &[&str] = &[
    "version", "name", "inputs", "exclude", "output", "steps", "limits", "budget", "aws",
    "catalog", "prices", "report", "state", "shared",
];

/// Reads and validates the manifest at `path`. A read failure, a file over the size limit and
/// bytes that are not UTF-8 are each a single diagnostic.
pub fn load(path: &Path, catalog: &Catalog) -> Result<Manifest, ManifestErrors> {
    let fail = |d| Err(ManifestErrors::new(path.to_owned(), vec![d]));
    let bytes = match read_capped(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            let message = format!("cannot read manifest: {e}");
            return fail(Diagnostic::new(message, Location::default()));
        }
    };
    if let Err(d) = guard::size(bytes.len()) {
        return fail(d);
    }
    match guard::utf8(&bytes) {
        Ok(text) => parse(text, path, catalog),
        Err(d) => fail(d),
    }
}

/// The manifest's `catalog:` value joined onto its folder, read before validation (the model
/// names in the manifest depend on the catalog). `None` when the file has no such string or is
/// not a manifest at all; [`load`] then reports why.
pub fn catalog_key(path: &Path) -> Option<PathBuf> {
    let bytes = read_capped(path).ok()?;
    guard::size(bytes.len()).ok()?;
    let text = guard::utf8(&bytes).ok()?;
    // The same guard as `parse`: serde_yaml took minutes over a nesting bomb.
    guard::depth(text).ok()?;
    let root = yaml::from_str(text).ok()?;
    let rel = root.get("catalog")?.as_str()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    Some(dir.join(rel))
}

/// The file's bytes, reading at most one byte past the size limit (enough to refuse it).
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let limit = guard::MAX_BYTES as u64 + 1;
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Validates manifest `text` that was read from `path`; relative paths in it are resolved onto
/// `path`'s folder.
pub fn parse(text: &str, path: &Path, catalog: &Catalog) -> Result<Manifest, ManifestErrors> {
    let fail = |diagnostics| Err(ManifestErrors::new(path.to_owned(), diagnostics));
    // Before any YAML parser: both take time quadratic in nesting depth.
    if let Err(d) = guard::size(text.len()).and_then(|()| guard::depth(text)) {
        return fail(vec![d]);
    }
    let root: Value = match yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return fail(syntax_errors(&e, text)),
    };
    let base_dir = base_dir(path);
    let spans = Spans::index(text);
    let mut ck = Checker::new(catalog, &base_dir, &spans);
    let manifest = validate(&mut ck, &root, path);
    match manifest {
        Some(m) if ck.diagnostics.is_empty() => Ok(m),
        _ if ck.diagnostics.is_empty() => fail(vec![Diagnostic::new(
            "manifest is invalid (no details were recorded; this is a bug in retouch)",
            Location::default(),
        )]),
        _ => fail(ck.diagnostics),
    }
}

/// The manifest's folder; `.` for a bare file name so joined paths stay usable.
fn base_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// serde_yaml stops at the first problem; for duplicate keys, which it reports without a
/// position, the locator finds every one. The locator only runs for those: on text serde_yaml
/// refused it may take far longer than serde_yaml did.
fn syntax_errors(e: &serde_yaml::Error, text: &str) -> Vec<Diagnostic> {
    if !e.to_string().contains("duplicate entry") {
        return vec![syntax_error(e)];
    }
    let spans = Spans::index(text);
    match spans.duplicates() {
        [] => vec![syntax_error(e)],
        duplicates => duplicates.iter().map(duplicate_key).collect(),
    }
}

fn duplicate_key(dup: &spans::Duplicate) -> Diagnostic {
    let parent = match dup.parent.as_str() {
        "" => String::new(),
        p => format!(" in {p}"),
    };
    let (key, first) = (&dup.key, dup.first.line);
    let message = format!("duplicate key `{key}`{parent} (first given on line {first})");
    let location = Location {
        key_path: join_key(&dup.parent, key),
        position: Some(dup.position),
    };
    Diagnostic::new(message, location).with_help("give each key once")
}

fn syntax_error(e: &serde_yaml::Error) -> Diagnostic {
    let position = e.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    });
    let location = Location {
        key_path: String::new(),
        position,
    };
    Diagnostic::new(format!("invalid YAML: {e}"), location)
        .with_help("check indentation, and quote values containing `: `, `#` or `{`")
}

/// Runs every check; `Some` only if each section produced a value.
fn validate(ck: &mut Checker, root: &Value, path: &Path) -> Option<Manifest> {
    if root.is_null() {
        let help = "a manifest needs at least version, name, inputs, output and steps";
        ck.error("", "the manifest is empty".into(), Some(help.into()));
        return None;
    }
    let f = ck.fields(root, "", TOP_KEYS)?;
    let version = sections::version(ck, &f);
    let name = sections::name(ck, &f);
    let inputs = sections::inputs(ck, &f);
    let exclude = sections::exclude(ck, &f);
    let output = sections::output(ck, &f);
    let steps = steps::steps(ck, &f);
    let limits = sections::limits(ck, &f);
    let budget = sections::budget(ck, &f);
    let aws = sections::aws(ck, &f);
    let catalog = sections::catalog_path(ck, &f);
    let prices = sections::prices(ck, &f);
    let report = sections::report(ck, &f, output.as_ref());
    let state = sections::state(ck, &f);
    let shared = sections::shared(ck, &f);
    if let (
        Some(out),
        Some(SharedState {
            cache: Some(cache), ..
        }),
    ) = (&output, &shared)
        && let Place::S3(dir) = &out.dir
        && dir.bucket == cache.bucket
        && (dir.key.starts_with(&cache.key) || cache.key.starts_with(&dir.key))
    {
        let message = format!(
            "shared.cache s3://{}/{} overlaps the output folder {}: outputs and cached results would mix",
            cache.bucket, cache.key, out.dir
        );
        let help = "give the cache a prefix of its own, e.g. s3://bucket/retouch-cache/".to_owned();
        ck.key_error("shared.cache", message, Some(help));
        return None;
    }
    let inputs = match (inputs, &steps) {
        (Some(inputs), Some(steps)) => sections::prompt_inputs(ck, inputs, steps),
        (inputs, _) => inputs,
    };
    Some(Manifest {
        path: path.to_owned(),
        base_dir: ck.base_dir.to_owned(),
        version: version?,
        name: name?,
        inputs: inputs?,
        exclude: exclude?,
        output: output?,
        steps: steps?,
        limits: limits?,
        report: report?,
        budget: budget?,
        aws: aws?,
        catalog: catalog?,
        prices: prices?,
        state: state?,
        shared: shared?,
    })
}

#[cfg(test)]
mod tests;
