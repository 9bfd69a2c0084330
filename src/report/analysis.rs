//! After-the-fact review of a run: reads a report CSV (by column name) or takes rows from the
//! state store, and computes totals by step, model and reason, latency percentiles, failures
//! grouped by reason and the costliest images.
//!
//! Pure arithmetic over [`StepRecord`]s; rendering is text ([`std::fmt::Display`]), JSON (serde)
//! or HTML (`report::html`). Costs stay exact [`Usd`] until printed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use super::printable;
use crate::catalog::Op;
use crate::ledger::{Status, StepRecord};
use crate::money::Usd;
use crate::qa::Qa;
use crate::reason::Reason;

/// How many images the costliest list shows.
pub const COSTLIEST: usize = 10;
/// How many images of each failure group the text lists (the JSON lists them all).
pub const LISTED_FAILURES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("cannot read report {path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{path}: not a retouch report: no `{column}` column")]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{path}:{line}: bad {column} `{value}`")]
    BadValue {
        path: PathBuf,
        line: u64,
        column: &'static str,
        value: String,
    },
}

/// The rows of one report, in file order, with the run they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRows {
    pub run_id: String,
    pub rows: Vec<StepRecord>,
}

/// Reads a report CSV by column name (extra columns are ignored, so later column additions do
/// not break it). Images are numbered in order of first appearance.
pub fn read_csv(path: &Path) -> Result<ReportRows, AnalysisError> {
    let file = std::fs::File::open(path).map_err(|e| AnalysisError::Csv {
        path: path.to_owned(),
        source: e.into(),
    })?;
    read_csv_from(file, path)
}

/// [`read_csv`] of a report already in memory or a stream; `path` names it in errors.
pub fn read_csv_from(source: impl std::io::Read, path: &Path) -> Result<ReportRows, AnalysisError> {
    let csv_err = |source| AnalysisError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut rdr = csv::Reader::from_reader(source);
    let header = rdr.headers().map_err(csv_err)?.clone();
    let col = |name: &'static str| header.iter().position(|h| h == name);
    let need = |name: &'static str| {
        col(name).ok_or_else(|| AnalysisError::MissingColumn {
            path: path.to_owned(),
            column: name,
        })
    };
    let cols = Columns {
        image: need("image")?,
        step: need("step")?,
        op: need("op")?,
        model: need("model")?,
        reason: need("reason")?,
        status: need("status")?,
        cost: need("cost_usd")?,
        run_id: col("run_id"),
        latency: col("latency_ms"),
        attempts: col("attempts"),
        sizes: [col("in_w"), col("in_h"), col("out_w"), col("out_h")],
        output: col("output"),
        error: col("error"),
        qa: col("qa").zip(col("qa_flags")),
    };
    let mut out = ReportRows {
        run_id: String::new(),
        rows: Vec::new(),
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map_or(0, |p| p.line());
        let bad = |column, value: &str| AnalysisError::BadValue {
            path: path.to_owned(),
            line,
            column,
            value: value.to_owned(),
        };
        if out.run_id.is_empty() {
            out.run_id = cols.text(&rec, cols.run_id);
        }
        let image = rec[cols.image].to_string();
        let next = index.len();
        let image_index = *index.entry(image.clone()).or_insert(next);
        out.rows.push(cols.record(&rec, image, image_index, &bad)?);
    }
    Ok(out)
}

/// Where each column is in one CSV.
struct Columns {
    image: usize,
    step: usize,
    op: usize,
    model: usize,
    reason: usize,
    status: usize,
    cost: usize,
    run_id: Option<usize>,
    latency: Option<usize>,
    attempts: Option<usize>,
    sizes: [Option<usize>; 4],
    output: Option<usize>,
    error: Option<usize>,
    /// `qa` and `qa_flags` (reports before retouch measured quality have neither).
    qa: Option<(usize, usize)>,
}

impl Columns {
    fn text(&self, rec: &csv::StringRecord, col: Option<usize>) -> String {
        col.and_then(|c| rec.get(c)).unwrap_or("").to_string()
    }

    fn number(&self, rec: &csv::StringRecord, col: Option<usize>) -> Option<u64> {
        col.and_then(|c| rec.get(c))
            .and_then(|v| v.trim().parse().ok())
    }

    fn record(
        &self,
        rec: &csv::StringRecord,
        image: String,
        image_index: usize,
        bad: &dyn Fn(&'static str, &str) -> AnalysisError,
    ) -> Result<StepRecord, AnalysisError> {
        let step: usize = rec[self.step]
            .trim()
            .parse()
            .map_err(|_| bad("step", &rec[self.step]))?;
        let size = |w: Option<usize>, h: Option<usize>| {
            let w = self.number(rec, w)?;
            Some((
                u32::try_from(w).ok()?,
                u32::try_from(self.number(rec, h)?).ok()?,
            ))
        };
        let [in_w, in_h, out_w, out_h] = self.sizes;
        Ok(StepRecord {
            image_index,
            image,
            step: step
                .checked_sub(1)
                .ok_or_else(|| bad("step", &rec[self.step]))?,
            op: Op::parse(&rec[self.op]).ok_or_else(|| bad("op", &rec[self.op]))?,
            model: rec[self.model].to_string(),
            reason: Reason::parse(&rec[self.reason])
                .ok_or_else(|| bad("reason", &rec[self.reason]))?,
            status: Status::parse(&rec[self.status])
                .ok_or_else(|| bad("status", &rec[self.status]))?,
            cost: parse_usd(&rec[self.cost]).ok_or_else(|| bad("cost_usd", &rec[self.cost]))?,
            latency_ms: self.number(rec, self.latency).unwrap_or(0),
            attempts: self.number(rec, self.attempts).unwrap_or(0) as u32,
            input_size: size(in_w, in_h),
            output_size: size(out_w, out_h),
            output: self.text(rec, self.output),
            error: self.text(rec, self.error),
            qa: match self.qa {
                Some((score, flags)) if !rec.get(score).unwrap_or("").is_empty() => {
                    let text = rec.get(flags).unwrap_or("");
                    Some(Qa::parse_flags(text).ok_or_else(|| bad("qa_flags", text))?)
                }
                _ => None,
            },
        })
    }
}

/// Parses a dollar amount exactly (`0.040000`, `$1.5`, `-0.25`, empty = 0); more than six
/// decimals are rounded to the micro-dollar.
pub fn parse_usd(s: &str) -> Option<Usd> {
    let s = s.trim().trim_start_matches('$');
    if s.is_empty() {
        return Some(Usd::ZERO);
    }
    let (neg, digits) = s.strip_prefix('-').map_or((false, s), |rest| (true, rest));
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) {
        return None;
    }
    if frac.len() > 6 {
        let v: f64 = s.parse().ok()?;
        return Usd::from_dollars(v);
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<6}").parse().ok()?;
    let micros = whole.checked_mul(1_000_000)?.checked_add(frac)?;
    Some(Usd(if neg { -micros } else { micros }))
}

fn dollars<S: Serializer>(v: &Usd, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(v.as_dollars())
}

/// Images and cost of one group (a step, a model or a reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// `1 remove-bg`, a model id, or a reason.
    pub key: String,
    /// Distinct images with a row in this group.
    pub images: usize,
    /// Rows in this group.
    pub rows: usize,
    #[serde(rename = "cost_usd", serialize_with = "dollars")]
    pub cost: Usd,
}

/// Latency of one step over the rows that succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// 1-based, as in the CSV.
    pub step: usize,
    pub op: String,
    pub samples: usize,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub max_ms: u64,
}

/// The images that failed for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureGroup {
    pub reason: String,
    /// Images with a failed row for this reason (an image failed at every step counts once).
    pub count: usize,
    /// Failed rows for this reason: one per image and step.
    pub rows: usize,
    /// Each of those images once, in input order, with the error of its first failed row.
    pub images: Vec<FailedImage>,
}

/// One image of a [`FailureGroup`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedImage {
    pub image: String,
    pub error: String,
}

/// One image's total cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageCost {
    pub image: String,
    #[serde(rename = "cost_usd", serialize_with = "dollars")]
    pub cost: Usd,
}

/// The review of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub run_id: String,
    pub images: usize,
    /// Images per overall status (`ok`, `failed`, `skipped`, `planned`).
    pub images_by_status: BTreeMap<String, usize>,
    #[serde(rename = "total_cost_usd", serialize_with = "dollars")]
    pub total_cost: Usd,
    pub by_step: Vec<Group>,
    pub by_model: Vec<Group>,
    pub by_reason: Vec<Group>,
    pub latency: Vec<Latency>,
    pub failures: Vec<FailureGroup>,
    /// The ten costliest images (billed more than zero), costliest first.
    pub costliest: Vec<ImageCost>,
    /// What the quality checks found.
    pub quality: Quality,
}

/// The quality checks over a run: how many results were measured, how many scored below
/// [`QA_REVIEW`], the count per flag, and the lowest-scoring results.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Quality {
    /// Step results with a score.
    pub measured: usize,
    /// Of those, how many scored below [`QA_REVIEW`].
    pub below: usize,
    /// Results per flag, most frequent first.
    pub flags: Vec<(String, usize)>,
    /// The lowest-scoring results (below [`QA_REVIEW`]), lowest first.
    pub lowest: Vec<LowScore>,
    /// Results `escalate:` redid (superseded rows with a result; not counted above, which
    /// covers only the results kept).
    pub redone: usize,
}

/// One result that scored low.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LowScore {
    pub image: String,
    /// 1-based, as in the CSV.
    pub step: usize,
    pub op: String,
    pub qa: f32,
    pub flags: String,
}

/// Results scoring below this are worth a look (`retouch report` lists them).
pub const QA_REVIEW: f32 = 0.8;
/// How many low scores the text report lists.
const LOWEST: usize = 20;

fn quality(rows: &[StepRecord]) -> Quality {
    let mut out = Quality::default();
    let mut flags: BTreeMap<String, usize> = BTreeMap::new();
    let mut low: Vec<(f32, usize, &StepRecord)> = Vec::new();
    for r in rows {
        let Some(qa) = &r.qa else { continue };
        if r.status == Status::Superseded {
            out.redone += 1;
            continue;
        }
        out.measured += 1;
        for flag in &qa.flags {
            *flags.entry(flag.name().into_owned()).or_default() += 1;
        }
        let score = qa.score();
        if score < QA_REVIEW {
            out.below += 1;
            low.push((score, r.image_index, r));
        }
    }
    let mut flags: Vec<(String, usize)> = flags.into_iter().collect();
    flags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.flags = flags;
    low.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    out.lowest = low
        .into_iter()
        .map(|(qa, _, r)| LowScore {
            image: r.image.clone(),
            step: r.step + 1,
            op: r.op.as_str().to_owned(),
            qa,
            flags: r.qa.as_ref().map(Qa::flags_text).unwrap_or_default(),
        })
        .collect();
    out
}

/// An image's overall status: failed if any step failed, else skipped if any step was skipped,
/// else planned if any was planned (a dry run), else ok.
pub fn image_status<'a>(rows: impl IntoIterator<Item = &'a StepRecord>) -> Status {
    let statuses: BTreeSet<&str> = rows.into_iter().map(|r| r.status.as_str()).collect();
    [Status::Failed, Status::Skipped, Status::Planned]
        .into_iter()
        .find(|s| statuses.contains(s.as_str()))
        .unwrap_or(Status::Ok)
}

impl Analysis {
    pub fn from_rows(run_id: &str, rows: &[StepRecord]) -> Analysis {
        let mut per_image: BTreeMap<usize, Vec<&StepRecord>> = BTreeMap::new();
        for r in rows {
            per_image.entry(r.image_index).or_default().push(r);
        }
        let mut images_by_status = BTreeMap::new();
        for image_rows in per_image.values() {
            let status = image_status(image_rows.iter().copied());
            *images_by_status
                .entry(status.as_str().to_string())
                .or_insert(0) += 1;
        }
        Analysis {
            run_id: run_id.to_string(),
            images: per_image.len(),
            images_by_status,
            total_cost: rows.iter().map(|r| r.cost).sum(),
            by_step: group(rows, |r| (r.step, format!("{} {}", r.step + 1, r.op))),
            by_model: group(rows, |r| (0, r.model.clone())),
            by_reason: group(rows, |r| (0, r.reason.to_string())),
            latency: latency(rows),
            failures: failures(rows),
            costliest: costliest(&per_image),
            quality: quality(rows),
        }
    }
}

/// Groups rows by `key` (ordered by its first element, then its name).
fn group(rows: &[StepRecord], key: impl Fn(&StepRecord) -> (usize, String)) -> Vec<Group> {
    let mut groups: BTreeMap<(usize, String), (BTreeSet<usize>, usize, Usd)> = BTreeMap::new();
    for r in rows {
        let g = groups.entry(key(r)).or_default();
        g.0.insert(r.image_index);
        g.1 += 1;
        g.2 += r.cost;
    }
    groups
        .into_iter()
        .map(|((_, key), (images, rows, cost))| Group {
            key,
            images: images.len(),
            rows,
            cost,
        })
        .collect()
}

fn latency(rows: &[StepRecord]) -> Vec<Latency> {
    let mut steps: BTreeMap<usize, (Op, Vec<u64>)> = BTreeMap::new();
    for r in rows {
        let entry = steps.entry(r.step).or_insert((r.op, Vec::new()));
        if r.status == Status::Ok {
            entry.1.push(r.latency_ms);
        }
    }
    steps
        .into_iter()
        .map(|(step, (op, mut lat))| {
            lat.sort_unstable();
            Latency {
                step: step + 1,
                op: op.as_str().to_string(),
                samples: lat.len(),
                p50_ms: percentile(&lat, 50),
                p95_ms: percentile(&lat, 95),
                max_ms: lat.last().copied().unwrap_or(0),
            }
        })
        .collect()
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(p * sorted.len()).div_ceil(100).max(1) - 1]
}

/// Failed rows grouped by reason, counting and listing images rather than rows.
fn failures(rows: &[StepRecord]) -> Vec<FailureGroup> {
    type Images<'a> = BTreeMap<usize, &'a StepRecord>;
    let mut groups: BTreeMap<&str, (usize, Images)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.status == Status::Failed) {
        let (count, images) = groups.entry(r.reason.as_str()).or_default();
        *count += 1;
        let first = images.entry(r.image_index).or_insert(r);
        if r.step < first.step {
            *first = r;
        }
    }
    let mut out: Vec<FailureGroup> = groups
        .into_iter()
        .map(|(reason, (rows, images))| FailureGroup {
            reason: reason.to_string(),
            count: images.len(),
            rows,
            images: images
                .into_values()
                .map(|r| FailedImage {
                    image: r.image.clone(),
                    error: r.error.clone(),
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    out
}

fn costliest(per_image: &BTreeMap<usize, Vec<&StepRecord>>) -> Vec<ImageCost> {
    let mut costs: Vec<(Usd, usize, &str)> = per_image
        .iter()
        .map(|(&i, rows)| (rows.iter().map(|r| r.cost).sum(), i, rows[0].image.as_str()))
        .filter(|(cost, _, _)| *cost > Usd::ZERO)
        .collect();
    costs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    costs
        .into_iter()
        .take(COSTLIEST)
        .map(|(cost, _, image)| ImageCost {
            image: image.to_string(),
            cost,
        })
        .collect()
}

impl fmt::Display for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<String> = self
            .images_by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(f, "run:    {}", self.run_id)?;
        writeln!(f, "images: {} ({})", self.images, statuses.join(", "))?;
        writeln!(f, "cost:   ${}", self.total_cost)?;
        for (title, groups) in [
            ("by step", &self.by_step),
            ("by model", &self.by_model),
            ("by reason", &self.by_reason),
        ] {
            writeln!(f, "\n{title}:")?;
            for g in groups {
                writeln!(f, "  {:<44} {:>6} images  ${}", g.key, g.images, g.cost)?;
            }
        }
        writeln!(f, "\nlatency (ok rows):")?;
        for l in &self.latency {
            writeln!(
                f,
                "  step {} {:<13} p50 {} ms, p95 {} ms, max {} ms ({} samples)",
                l.step, l.op, l.p50_ms, l.p95_ms, l.max_ms, l.samples
            )?;
        }
        if !self.failures.is_empty() {
            writeln!(f, "\nfailures:")?;
            for g in &self.failures {
                write_failure_group(f, g)?;
            }
        }
        if !self.costliest.is_empty() {
            writeln!(f, "\ncostliest images:")?;
            for c in &self.costliest {
                writeln!(f, "  ${}  {}", c.cost, printable(&c.image))?;
            }
        }
        let q = &self.quality;
        if q.measured > 0 {
            writeln!(
                f,
                "\nquality: {} of {} results scored below {QA_REVIEW}",
                q.below, q.measured
            )?;
            if q.redone > 0 {
                writeln!(
                    f,
                    "  {} results scored below their step's escalate mark and were redone",
                    q.redone
                )?;
            }
            for (flag, n) in &q.flags {
                writeln!(f, "  {flag:<20} {n:>6} results")?;
            }
            if !q.lowest.is_empty() {
                writeln!(f, "lowest scores:")?;
            }
            for l in q.lowest.iter().take(LOWEST) {
                writeln!(
                    f,
                    "  {:.3}  step {} {:<13} {}  ({})",
                    l.qa,
                    l.step,
                    l.op,
                    printable(&l.image),
                    l.flags
                )?;
            }
            if q.lowest.len() > LOWEST {
                writeln!(
                    f,
                    "  … and {} more (--json lists all)",
                    q.lowest.len() - LOWEST
                )?;
            }
        }
        Ok(())
    }
}

/// `reason (N images)`, with the rows when an image failed at more than one step, then each
/// image once (the first [`LISTED_FAILURES`]).
fn write_failure_group(f: &mut fmt::Formatter<'_>, g: &FailureGroup) -> fmt::Result {
    let images = if g.count == 1 { "image" } else { "images" };
    if g.rows == g.count {
        writeln!(f, "  {} ({} {images})", g.reason, g.count)?;
    } else {
        writeln!(f, "  {} ({} {images}, {} rows)", g.reason, g.count, g.rows)?;
    }
    for i in g.images.iter().take(LISTED_FAILURES) {
        writeln!(f, "    {}: {}", printable(&i.image), printable(&i.error))?;
    }
    if g.count > LISTED_FAILURES {
        let more = g.count - LISTED_FAILURES;
        writeln!(f, "    … and {more} more (`--json` lists every image)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "\
run_id,image,step,op,model,reason,status,cost_usd,latency_ms,attempts,in_w,in_h,out_w,out_h,output,error,extra
r-7,a.jpg,1,remove-bg,stability.rb,cheapest,ok,0.040000,900,1,10,10,10,10,out/a.png,,x
r-7,a.jpg,2,upscale,local,only-permitted,ok,0.000000,50,1,10,10,20,20,out/a.png,,x
r-7,b.jpg,1,remove-bg,stability.rb,cheapest,ok,0.040000,1100,2,10,10,10,10,out/b.png,,x
r-7,b.jpg,2,upscale,amazon.nova,cheapest,failed,0.080000,3000,4,10,10,,,,\"throttled, gave up\",x
r-7,c.jpg,1,remove-bg,stability.rb,cache-hit,ok,0,0,0,10,10,10,10,out/c.png,,x
r-7,c.jpg,2,upscale,amazon.nova,fallback-budget,failed,0,0,0,10,10,,,,budget exceeded,x
r-7,d.jpg,1,remove-bg,local,fallback-no-credentials,skipped,0,0,0,10,10,,,out/d.png,,x
r-7,d.jpg,2,upscale,local,only-permitted,ok,0,40,1,10,10,20,20,out/d.png,,x
";

    fn parsed() -> ReportRows {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        std::fs::write(&path, CSV).unwrap();
        read_csv(&path).unwrap()
    }

    #[test]
    fn control_characters_in_names_never_reach_the_terminal_raw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        let hostile = CSV.replace("r-7,b.jpg,2", "r-7,b\u{1b}]0;pwned\u{7}.jpg,2");
        std::fs::write(&path, hostile).unwrap();
        let rep = read_csv(&path).unwrap();
        assert!(
            rep.rows.iter().any(|r| r.image.contains('\u{1b}')),
            "the data keeps it"
        );
        let text = Analysis::from_rows(&rep.run_id, &rep.rows).to_string();
        assert!(
            !text.chars().any(|c| c == '\u{1b}' || c == '\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("b\\u{1b}]0;pwned\\u{7}.jpg"), "{text}");
    }

    #[test]
    fn a_reason_retouch_never_writes_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        std::fs::write(&path, CSV.replace("fallback-budget", "budget")).unwrap();
        let err = read_csv(&path).unwrap_err().to_string();
        assert!(err.ends_with("report.csv:7: bad reason `budget`"), "{err}");
    }

    #[test]
    fn csv_is_read_by_column_name() {
        let rep = parsed();
        assert_eq!(rep.run_id, "r-7");
        assert_eq!(rep.rows.len(), 8);
        let r = &rep.rows[3];
        assert_eq!((r.image_index, r.step, r.op), (1, 1, Op::Upscale));
        assert_eq!(
            (r.status, r.cost, r.attempts),
            (Status::Failed, Usd(80_000), 4)
        );
        assert_eq!(r.error, "throttled, gave up");
        assert_eq!((r.input_size, r.output_size), (Some((10, 10)), None));
        assert_eq!(rep.rows[1].output_size, Some((20, 20)));
    }

    #[test]
    fn totals_are_exact() {
        let rep = parsed();
        let a = Analysis::from_rows(&rep.run_id, &rep.rows);
        assert_eq!(a.images, 4);
        let statuses: Vec<(&str, usize)> = a
            .images_by_status
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(statuses, [("failed", 2), ("ok", 1), ("skipped", 1)]);
        assert_eq!(a.total_cost, Usd(160_000));
        let g = |gs: &[Group]| -> Vec<(String, usize, i64)> {
            gs.iter()
                .map(|g| (g.key.clone(), g.images, g.cost.micros()))
                .collect()
        };
        assert_eq!(
            g(&a.by_step),
            [
                ("1 remove-bg".to_string(), 4, 80_000),
                ("2 upscale".to_string(), 4, 80_000)
            ]
        );
        assert_eq!(
            g(&a.by_model),
            [
                ("amazon.nova".to_string(), 2, 80_000),
                ("local".to_string(), 2, 0),
                ("stability.rb".to_string(), 3, 80_000)
            ]
        );
        assert_eq!(g(&a.by_reason)[2], ("fallback-budget".to_string(), 1, 0));
        assert_eq!(g(&a.by_reason)[1], ("cheapest".to_string(), 2, 160_000));
        let lat = &a.latency[0];
        assert_eq!(
            (lat.samples, lat.p50_ms, lat.p95_ms, lat.max_ms),
            (3, 900, 1100, 1100)
        );
        assert_eq!((a.latency[1].samples, a.latency[1].max_ms), (2, 50));
        let fails: Vec<(&str, usize)> = a
            .failures
            .iter()
            .map(|f| (f.reason.as_str(), f.count))
            .collect();
        assert_eq!(fails, [("cheapest", 1), ("fallback-budget", 1)]);
        assert_eq!(
            a.failures[0].images,
            [FailedImage {
                image: "b.jpg".to_string(),
                error: "throttled, gave up".to_string()
            }]
        );
        let top: Vec<(&str, i64)> = a
            .costliest
            .iter()
            .map(|c| (c.image.as_str(), c.cost.micros()))
            .collect();
        assert_eq!(top, [("b.jpg", 120_000), ("a.jpg", 40_000)]);
        let text = a.to_string();
        assert!(text.contains("cost:   $0.160000"), "{text}");
        assert!(text.contains("b.jpg: throttled, gave up"), "{text}");
    }

    #[test]
    fn json_carries_the_same_figures() {
        let rep = parsed();
        let v = serde_json::to_value(Analysis::from_rows(&rep.run_id, &rep.rows)).unwrap();
        assert_eq!(v["total_cost_usd"], serde_json::json!(0.16));
        assert_eq!(v["by_step"][0]["cost_usd"], serde_json::json!(0.08));
        assert_eq!(v["costliest"][0]["image"], "b.jpg");
    }

    #[test]
    fn quality_counts_flags_and_lists_the_lowest_scores_first() {
        use crate::qa::{Flag, Qa};
        let mut rows = corrupt_run(4, 0);
        rows[0].qa = Some(Qa::of(vec![Flag::Inverted]));
        rows[3].qa = Some(Qa::of(vec![Flag::TouchesFrame, Flag::Fragmented]));
        rows[4].qa = Some(Qa::of(vec![Flag::TouchesFrame]));
        rows[6].qa = Some(Qa::default());
        let a = Analysis::from_rows("r", &rows);
        assert_eq!(a.quality.measured, 4);
        assert_eq!(a.quality.below, 3);
        assert_eq!(
            a.quality.flags,
            [
                ("touches-frame".to_string(), 2),
                ("fragmented".to_string(), 1),
                ("inverted".to_string(), 1)
            ]
        );
        let lowest: Vec<(&str, f32)> = a
            .quality
            .lowest
            .iter()
            .map(|l| (l.image.as_str(), l.qa))
            .collect();
        assert_eq!(
            lowest,
            [("in/00.jpg", 0.1), ("in/01.jpg", 0.36), ("in/01.jpg", 0.6)]
        );
        let text = a.to_string();
        assert!(
            text.contains("quality: 3 of 4 results scored below 0.8"),
            "{text}"
        );
        assert!(
            text.contains("0.100  step 1 remove-bg     in/00.jpg  (inverted)"),
            "{text}"
        );
    }

    /// Rows of a 3-step run over `ok` good images followed by `failed` corrupt ones, each of
    /// which failed at every step.
    fn corrupt_run(ok: usize, failed: usize) -> Vec<StepRecord> {
        let row = |i: usize, step: usize, failed: bool| StepRecord {
            image_index: i,
            image: format!("in/{i:02}.jpg"),
            step,
            op: [Op::RemoveBg, Op::FixLighting, Op::Upscale][step],
            model: "local".into(),
            reason: if failed {
                Reason::CorruptImage
            } else {
                Reason::OnlyPermitted
            },
            status: if failed { Status::Failed } else { Status::Ok },
            cost: Usd::ZERO,
            latency_ms: 10,
            attempts: 1,
            input_size: None,
            output_size: None,
            output: String::new(),
            error: if failed {
                format!("corrupt {i}")
            } else {
                String::new()
            },
            qa: None,
        };
        (0..ok + failed)
            .flat_map(|i| (0..3).map(move |step| row(i, step, i >= ok)))
            .collect()
    }

    #[test]
    fn failures_count_and_list_images_not_rows() {
        let a = Analysis::from_rows("r", &corrupt_run(2, 13));
        assert_eq!(a.failures.len(), 1);
        let g = &a.failures[0];
        assert_eq!(
            (g.reason.as_str(), g.count, g.rows),
            ("corrupt-image", 13, 39)
        );
        let listed: Vec<&str> = g.images.iter().map(|i| i.image.as_str()).collect();
        let expected: Vec<String> = (2..15).map(|i| format!("in/{i:02}.jpg")).collect();
        assert_eq!(listed, expected);
        assert_eq!(g.images[0].error, "corrupt 2");
        let text = a.to_string();
        assert!(
            text.contains("  corrupt-image (13 images, 39 rows)\n"),
            "{text}"
        );
        for image in &expected {
            assert_eq!(text.matches(&format!("{image}: ")).count(), 1, "{text}");
        }
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["failures"][0]["count"], 13);
        assert_eq!(v["failures"][0]["rows"], 39);
        assert_eq!(v["failures"][0]["images"].as_array().unwrap().len(), 13);
        assert_eq!(v["failures"][0]["images"][12]["image"], "in/14.jpg");
    }

    #[test]
    fn long_failure_groups_list_the_first_images_in_text() {
        let a = Analysis::from_rows("r", &corrupt_run(0, LISTED_FAILURES + 5));
        let text = a.to_string();
        assert_eq!(
            text.matches(": corrupt ").count(),
            LISTED_FAILURES,
            "{text}"
        );
        assert!(
            text.contains("… and 5 more (`--json` lists every image)"),
            "{text}"
        );
        assert_eq!(a.failures[0].images.len(), LISTED_FAILURES + 5);
    }

    #[test]
    fn dollars_parse_exactly() {
        assert_eq!(parse_usd("0.040000"), Some(Usd(40_000)));
        assert_eq!(parse_usd("$1.5"), Some(Usd(1_500_000)));
        assert_eq!(parse_usd("-0.25"), Some(Usd(-250_000)));
        assert_eq!(parse_usd(".1"), Some(Usd(100_000)));
        assert_eq!(parse_usd(""), Some(Usd::ZERO));
        assert_eq!(parse_usd("0.0000004"), Some(Usd(0)));
        assert_eq!(parse_usd("abc"), None);
        assert_eq!(parse_usd("1.2.3"), None);
    }

    #[test]
    fn a_csv_without_the_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        assert!(matches!(
            read_csv(&path),
            Err(AnalysisError::MissingColumn {
                column: "image",
                ..
            })
        ));
        std::fs::write(&path, CSV.replace(",upscale,", ",sharpen,")).unwrap();
        assert!(matches!(
            read_csv(&path),
            Err(AnalysisError::BadValue {
                column: "op",
                line: 3,
                ..
            })
        ));
    }
}
