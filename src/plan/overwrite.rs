//! What a run must never write over: its own inputs, the manifest, the catalog file, or a
//! folder where a file belongs.
//!
//! Checked after listing and planning and before anything is created (state folder, report,
//! outputs), by `check` and `run` alike. A file is recognised by its device and inode, not its
//! name, so `in/./a.png`, a symlink or a hard link to an input are all caught; a destination that
//! does not exist yet cannot be an input. Problems that would destroy a user's file are
//! [`Refusal`]s (the run does not start); layouts that are merely risky, such as an output folder
//! inside an input folder, are warnings. Reads file metadata only.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::Plan;
use crate::manifest::{InputSpec, Place, S3Location, normalize};
use crate::sinks::Destination;
use crate::sources::{InputLocation, LocalGlob};

/// Something the run would destroy; the run must not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the run would write, as the user knows it: `output out/a.png`, `report out/r.csv`.
    pub writer: String,
    /// What it would destroy, or why the location cannot be used.
    pub problem: String,
    /// How to fix it.
    pub help: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}\n  help: {}", self.writer, self.problem, self.help)
    }
}

/// What [`check`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<String>,
}

/// The places a run writes besides its outputs.
#[derive(Debug, Clone, Copy)]
pub struct Writes<'a> {
    /// Where the report goes (a local file, or an S3 object).
    pub report: &'a Place,
    /// The state folder.
    pub state: &'a Path,
}

const OUTPUT_HELP: &str =
    "write outputs to another folder (`output.dir`), or change `output.format`";
const REPORT_HELP: &str =
    "set `report:` (or --report) to a new file, e.g. `report.csv` in the output folder";
const STATE_HELP: &str = "set `state:` (or --state) to a folder, e.g. `.retouch`";

/// Checks `plan` and the run's other writes against every file the run reads.
pub fn check(plan: &Plan, writes: Writes<'_>) -> Findings {
    let mut findings = Findings::default();
    let protected = Protected::of(plan);
    check_outputs(plan, &protected, &mut findings);
    check_report(plan, writes.report, &protected, &mut findings);
    check_state(writes.state, &protected, &mut findings);
    findings.warnings.extend(overlapping_folders(plan));
    findings
}

/// Files the run reads, by identity.
struct Protected<'p> {
    plan: &'p Plan,
    /// Lazily filled: inputs are only looked at once some destination already exists.
    inputs: std::cell::OnceCell<HashMap<FileId, String>>,
}

impl<'p> Protected<'p> {
    fn of(plan: &'p Plan) -> Protected<'p> {
        Protected {
            plan,
            inputs: std::cell::OnceCell::new(),
        }
    }

    /// What the existing file at `path` is to the run, if it is something it reads.
    fn victim(&self, path: &Path) -> Option<String> {
        let id = FileId::of(path)?;
        let m = &self.plan.manifest;
        if FileId::of(&m.path).as_ref() == Some(&id) {
            return Some(format!("the manifest {}", m.path.display()));
        }
        if let Some(catalog) = &m.catalog
            && FileId::of(catalog).as_ref() == Some(&id)
        {
            return Some(format!("the catalog file {}", catalog.display()));
        }
        let inputs = self.inputs.get_or_init(|| local_inputs(self.plan));
        inputs.get(&id).map(|display| format!("input {display}"))
    }

    /// The input at S3 `loc`, if it is one.
    fn s3_victim(&self, loc: &S3Location) -> Option<String> {
        self.plan
            .images
            .iter()
            .find_map(|img| match &img.item.location {
                InputLocation::S3 { bucket, key } if *bucket == loc.bucket && *key == loc.key => {
                    Some(format!("input {}", img.item.display))
                }
                _ => None,
            })
    }
}

fn local_inputs(plan: &Plan) -> HashMap<FileId, String> {
    plan.images
        .iter()
        .filter_map(|img| match &img.item.location {
            InputLocation::Local(path) => Some((FileId::of(path)?, img.item.display.clone())),
            InputLocation::S3 { .. } => None,
        })
        .collect()
}

fn check_outputs(plan: &Plan, protected: &Protected<'_>, findings: &mut Findings) {
    let s3_inputs = plan
        .images
        .iter()
        .any(|i| matches!(i.item.location, InputLocation::S3 { .. }));
    for img in &plan.images {
        let victim = match &img.output {
            Ok(Destination::Local(path)) => protected.victim(path),
            Ok(Destination::S3(loc)) if s3_inputs => protected.s3_victim(loc),
            _ => None,
        };
        if let (Some(victim), Ok(dest)) = (victim, &img.output) {
            findings.refusals.push(Refusal {
                writer: format!("output {dest} (the result of {})", img.item.display),
                problem: format!("would overwrite {victim}"),
                help: OUTPUT_HELP,
            });
        }
    }
}

fn check_report(plan: &Plan, report: &Place, protected: &Protected<'_>, findings: &mut Findings) {
    let writer = format!("report {report}");
    let refuse = |problem: String| Refusal {
        writer: writer.clone(),
        problem,
        help: REPORT_HELP,
    };
    let victim = match report {
        Place::Local(path) if path.is_dir() => Some("is a folder; it must name a file".to_owned()),
        Place::Local(path) => protected
            .victim(path)
            .map(|v| format!("would overwrite {v}")),
        Place::S3(loc) => protected
            .s3_victim(loc)
            .map(|v| format!("would overwrite {v}")),
    };
    if let Some(problem) = victim {
        findings.refusals.push(refuse(problem));
        return;
    }
    let same = |dest: &Destination| match (dest, report) {
        (Destination::Local(d), Place::Local(r)) => same_path(d, r),
        (Destination::S3(d), Place::S3(r)) => d == r,
        _ => false,
    };
    if let Some(img) = plan
        .images
        .iter()
        .find(|img| img.output.as_ref().is_ok_and(same))
    {
        findings.refusals.push(refuse(format!(
            "is also the output of {}",
            img.item.display
        )));
    }
}

fn check_state(state: &Path, protected: &Protected<'_>, findings: &mut Findings) {
    let problem = match std::fs::metadata(state) {
        Ok(meta) if meta.is_dir() => return,
        Ok(_) => match protected.victim(state) {
            Some(victim) => format!("is {victim}, not a folder"),
            None => "is a file, not a folder".to_owned(),
        },
        Err(_) => return, // created when the run starts
    };
    findings.refusals.push(Refusal {
        writer: format!("state folder {}", state.display()),
        problem,
        help: STATE_HELP,
    });
}

/// Local output folders that contain, or sit inside, a local input folder.
fn overlapping_folders(plan: &Plan) -> Vec<String> {
    let Place::Local(out) = &plan.manifest.output.dir else {
        return Vec::new();
    };
    let out_abs = absolute(out);
    let m = &plan.manifest;
    m.inputs
        .iter()
        .filter_map(|spec| match spec {
            InputSpec::LocalGlob { pattern } => {
                let base = LocalGlob::new(&m.base_dir, pattern).ok()?.base;
                let base_abs = absolute(&base);
                (out_abs.starts_with(&base_abs) || base_abs.starts_with(&out_abs)).then(|| {
                    format!(
                        "output folder {} overlaps the input folder {} (of `{pattern}`): \
                         results written there may be read as inputs by the next run",
                        out.display(),
                        normalize(&base).display()
                    )
                })
            }
            InputSpec::S3 { .. } => None,
        })
        .collect()
}

fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let normal = normalize(&joined);
    std::fs::canonicalize(&normal).unwrap_or(normal)
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (FileId::of(a), FileId::of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => absolute(a) == absolute(b),
    }
}

/// A file's identity: device and inode (Unix), else its canonical path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileId(#[cfg(unix)] (u64, u64), #[cfg(not(unix))] PathBuf);

impl FileId {
    /// The identity of the existing file `path` (symlinks followed); `None` when nothing is there.
    fn of(path: &Path) -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(path).ok()?;
            Some(FileId((meta.dev(), meta.ino())))
        }
        #[cfg(not(unix))]
        {
            std::fs::canonicalize(path).ok().map(FileId)
        }
    }
}
