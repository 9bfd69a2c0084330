//! What a run must never write over: its own inputs, the manifest, the catalog file, or a
//! folder where a file belongs.
//!
//! Checked after listing and planning and before anything is created (state folder, report,
//! outputs), by `check` and `run` alike. A file is recognised by its device and inode, not its
//! name, so `in/./a.png`, a symlink or a hard link to an input are all caught; a destination that
//! does not exist yet cannot be an input. Problems that would destroy a user's file are
//! [`Refusal`]s (the run does not start); layouts that are merely risky, such as an output folder
//! inside an input folder, are warnings. Reads file metadata only.

use std::cell::OnceCell;
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

/// Checks `plan` and the run's other writes against every file the run reads. Looks at each
/// destination once (one `stat`), so it costs little next to the run even for large catalogues.
pub fn check(plan: &Plan, writes: Writes<'_>) -> Findings {
    let mut findings = Findings::default();
    let protected = Protected::of(plan);
    check_report(writes.report, &protected, &mut findings);
    check_outputs(plan, writes.report, &protected, &mut findings);
    check_state(writes.state, &protected, &mut findings);
    findings.warnings.extend(overlapping_folders(plan));
    findings
}

/// Files the run reads, by identity.
struct Protected<'p> {
    plan: &'p Plan,
    manifest: Option<FileId>,
    catalog: Option<FileId>,
    /// The pictures steps send or composite with every image (`background_image`,
    /// `style_image`), with how the user knows them.
    pictures: Vec<(FileId, String)>,
    /// Lazily filled: inputs are only looked at once some destination already exists.
    inputs: OnceCell<HashMap<FileId, String>>,
    /// S3 inputs by (bucket, key), filled when an S3 destination is first checked.
    s3_inputs: OnceCell<HashMap<(&'p str, &'p str), &'p str>>,
}

impl<'p> Protected<'p> {
    fn of(plan: &'p Plan) -> Protected<'p> {
        let m = &plan.manifest;
        Protected {
            plan,
            manifest: FileId::of(&m.path),
            catalog: m.catalog.as_deref().and_then(FileId::of),
            pictures: step_pictures(&m.steps),
            inputs: OnceCell::new(),
            s3_inputs: OnceCell::new(),
        }
    }

    /// What the existing file at `path` is to the run, if it is something it reads.
    fn victim(&self, path: &Path) -> Option<String> {
        self.victim_of(&FileId::of(path)?)
    }

    /// What the file `id` is to the run, if it is something it reads.
    fn victim_of(&self, id: &FileId) -> Option<String> {
        let m = &self.plan.manifest;
        if self.manifest.as_ref() == Some(id) {
            return Some(format!("the manifest {}", m.path.display()));
        }
        if let (Some(catalog), Some(path)) = (&self.catalog, &m.catalog)
            && catalog == id
        {
            return Some(format!("the catalog file {}", path.display()));
        }
        if let Some((_, what)) = self.pictures.iter().find(|(p, _)| p == id) {
            return Some(what.clone());
        }
        let inputs = self.inputs.get_or_init(|| local_inputs(self.plan));
        inputs.get(id).map(|display| format!("input {display}"))
    }

    /// The input at S3 `loc`, if it is one.
    fn s3_victim(&self, loc: &S3Location) -> Option<String> {
        let inputs = self.s3_inputs.get_or_init(|| s3_inputs(self.plan));
        inputs
            .get(&(loc.bucket.as_str(), loc.key.as_str()))
            .map(|display| format!("input {display}"))
    }
}

/// The existing picture files of `steps`, each named by its key and step.
fn step_pictures(steps: &[crate::manifest::Step]) -> Vec<(FileId, String)> {
    use crate::manifest::{NewBackground, OpParams};
    steps
        .iter()
        .filter_map(|step| {
            let (key, path) = match &step.params {
                OpParams::ReplaceBg(p) => match &p.behind {
                    Some(NewBackground::Image { path, .. }) => ("background_image", path),
                    _ => return None,
                },
                OpParams::Variation(p) => ("style_image", &p.style.as_ref()?.path),
                _ => return None,
            };
            let what = format!("the {key} of step {} ({})", step.index + 1, path.display());
            Some((FileId::of(path)?, what))
        })
        .collect()
}

fn local_inputs(plan: &Plan) -> HashMap<FileId, String> {
    plan.images
        .iter()
        .filter_map(|img| match &img.item.location {
            InputLocation::Local(path) => Some((FileId::of(path)?, img.item.display.clone())),
            InputLocation::S3 { .. } | InputLocation::Prompt(_) => None,
        })
        .collect()
}

fn s3_inputs(plan: &Plan) -> HashMap<(&str, &str), &str> {
    plan.images
        .iter()
        .filter_map(|img| match &img.item.location {
            InputLocation::S3 { bucket, key } => {
                Some(((bucket.as_str(), key.as_str()), img.item.display.as_str()))
            }
            InputLocation::Local(_) | InputLocation::Prompt(_) => None,
        })
        .collect()
}

/// Where the report lands, to tell an output that would be the report.
struct ReportSpot {
    local: Option<(PathBuf, Option<FileId>)>,
    s3: Option<S3Location>,
}

impl ReportSpot {
    fn of(report: &Place) -> ReportSpot {
        match report {
            Place::Local(path) => ReportSpot {
                local: Some((lexical(path), FileId::of(path))),
                s3: None,
            },
            Place::S3(loc) => ReportSpot {
                local: None,
                s3: Some(loc.clone()),
            },
        }
    }

    /// Whether the destination `dest` (of identity `id`, when it exists) is the report.
    fn is(&self, dest: &Destination, id: Option<&FileId>) -> bool {
        match (dest, &self.local, &self.s3) {
            (Destination::Local(path), Some((report, report_id)), _) => {
                lexical(path) == *report || (id.is_some() && id == report_id.as_ref())
            }
            (Destination::S3(loc), _, Some(report)) => loc == report,
            _ => false,
        }
    }
}

fn check_outputs(plan: &Plan, report: &Place, protected: &Protected<'_>, findings: &mut Findings) {
    let report = ReportSpot::of(report);
    let mut report_clash = None;
    for img in &plan.images {
        let Ok(dest) = &img.output else { continue };
        let (victim, id) = match dest {
            Destination::Local(path) => {
                let id = FileId::of(path);
                (id.as_ref().and_then(|id| protected.victim_of(id)), id)
            }
            Destination::S3(loc) => (protected.s3_victim(loc), None),
        };
        if let Some(victim) = victim {
            findings.refusals.push(Refusal {
                writer: format!("output {dest} (the result of {})", img.item.display),
                problem: format!("would overwrite {victim}"),
                help: OUTPUT_HELP,
            });
        }
        if report_clash.is_none() && report.is(dest, id.as_ref()) {
            report_clash = Some(img.item.display.clone());
        }
    }
    if let Some(image) = report_clash {
        findings.refusals.push(Refusal {
            writer: format!("report {}", plan.manifest.report),
            problem: format!("is also the output of {image}"),
            help: REPORT_HELP,
        });
    }
}

/// The report may not replace a file the run reads, nor be a folder.
fn check_report(report: &Place, protected: &Protected<'_>, findings: &mut Findings) {
    let problem = match report {
        Place::Local(path) if path.is_dir() => Some("is a folder; it must name a file".to_owned()),
        Place::Local(path) => protected
            .victim(path)
            .map(|v| format!("would overwrite {v}")),
        Place::S3(loc) => protected
            .s3_victim(loc)
            .map(|v| format!("would overwrite {v}")),
    };
    if let Some(problem) = problem {
        findings.refusals.push(Refusal {
            writer: format!("report {report}"),
            problem,
            help: REPORT_HELP,
        });
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
            InputSpec::S3 { .. } | InputSpec::Prompts { .. } | InputSpec::S3Prompts { .. } => None,
        })
        .collect()
}

/// `path` made absolute, with symlinks resolved where it exists.
fn absolute(path: &Path) -> PathBuf {
    let normal = lexical(path);
    std::fs::canonicalize(&normal).unwrap_or(normal)
}

/// `path` made absolute and normalised without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    normalize(&joined)
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
