//! Report parts of a sharded run, and merging them into one report.
//!
//! Each shard writes its rows as a part (`report.part-00003-of-00016.csv`, see
//! [`crate::shard`]) and, beside it, a status (`report.part-00003-of-00016.csv.json`): written
//! when the shard starts (`finished: false`) and again when it ends, so a part whose shard was
//! killed says so. [`merge`] combines the parts of one sharded run into one report with the same
//! columns (each row keeps its shard's run id) and says which shards are missing, unfinished or
//! incomplete. Works on bytes: where the parts live (a folder, an S3 prefix) is the caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::analysis::parse_usd;
use super::csv_report::COLUMNS;
use crate::money::Usd;
use crate::shard::{Shard, parse_part_name};

/// What a shard says about its part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartStatus {
    pub run_id: String,
    /// `3/16`.
    pub shard: String,
    /// The inputs this shard owns.
    pub images: usize,
    /// The shard ran to its end (`false`: it is running, or was killed).
    pub finished: bool,
    /// It ended early (Ctrl-C): images it owns were not started.
    #[serde(default)]
    pub cancelled: bool,
    /// Rows and their cost when it finished.
    #[serde(default)]
    pub rows: usize,
    #[serde(default)]
    pub cost_usd: String,
    /// Unix seconds of this status.
    pub updated_at: i64,
}

/// The status file of the part at `part`.
pub fn status_path(part: &Path) -> PathBuf {
    let mut name = part.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    part.with_file_name(name)
}

/// Writes `status` beside the part at `part`, whole or not at all.
pub fn write_status(part: &Path, status: &PartStatus) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    crate::atomic_file::write(&status_path(part), &json)
}

/// One part as found: its file name, where it was found (for messages), its bytes and status.
#[derive(Debug, Clone)]
pub struct PartFile {
    /// `report.part-00003-of-00016.csv`.
    pub name: String,
    /// `out/report.part-00003-of-00016.csv` or `s3://bucket/key`.
    pub location: String,
    pub csv: Vec<u8>,
    /// The status file's bytes, when there is one.
    pub status: Option<Vec<u8>>,
}

/// Why parts cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no report parts found (names like report.part-00003-of-00016.csv)")]
    NoParts,
    #[error("{0} is not a report part (names like report.part-00003-of-00016.csv)")]
    NotAPart(String),
    #[error(
        "the parts belong to different sharded runs ({0}); name the parts of one (same report name and shard count)"
    )]
    Mixed(String),
    #[error("shard {index} has two parts: {first} and {second}")]
    Duplicate {
        index: u32,
        first: String,
        second: String,
    },
    #[error("{location}: {detail}")]
    Unreadable { location: String, detail: String },
    #[error("{location}: its columns differ from {first}'s")]
    Columns { location: String, first: String },
}

/// A shard whose part cannot be trusted to be complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub index: u32,
    pub why: String,
}

/// The parts of one sharded run, combined.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The report's name the parts share (`report.csv`).
    pub base: String,
    pub count: u32,
    pub header: csv::StringRecord,
    /// Every row of every part, by image then step.
    pub rows: Vec<csv::StringRecord>,
    /// Shards with no part at all.
    pub missing: Vec<u32>,
    /// Shards whose part is unfinished or short.
    pub incomplete: Vec<Incomplete>,
    pub images: usize,
    pub cost: Usd,
    /// Each part's run id, by shard.
    pub run_ids: BTreeMap<u32, String>,
}

impl Merged {
    /// Every shard has a finished, complete part.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.incomplete.is_empty()
    }

    /// The merged report as CSV.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.header).expect("writing to memory");
        for row in &self.rows {
            w.write_record(row).expect("writing to memory");
        }
        w.into_inner().expect("writing to memory")
    }
}

/// Combines `parts` (one per shard of a run; any order) into one report.
pub fn merge(parts: Vec<PartFile>) -> Result<Merged, MergeError> {
    if parts.is_empty() {
        return Err(MergeError::NoParts);
    }
    let mut named = Vec::new();
    let mut runs = BTreeSet::new();
    for part in parts {
        let (base, shard) = parse_part_name(&part.name)
            .ok_or_else(|| MergeError::NotAPart(part.location.clone()))?;
        runs.insert((base, shard.count));
        named.push((part, shard));
    }
    if runs.len() > 1 {
        let names: Vec<String> = runs
            .iter()
            .map(|(base, count)| format!("{base} in {count} shards"))
            .collect();
        return Err(MergeError::Mixed(names.join(", ")));
    }
    let mut by_index: BTreeMap<u32, (PartFile, Shard)> = BTreeMap::new();
    for (part, shard) in named {
        if let Some((first, _)) = by_index.get(&shard.index) {
            if first.location != part.location {
                return Err(MergeError::Duplicate {
                    index: shard.index,
                    first: first.location.clone(),
                    second: part.location,
                });
            }
            continue;
        }
        by_index.insert(shard.index, (part, shard));
    }
    let (base, count) = runs.into_iter().next().expect("one run");
    let mut merged = Merged {
        base,
        count,
        header: csv::StringRecord::new(),
        rows: Vec::new(),
        missing: (0..count).filter(|i| !by_index.contains_key(i)).collect(),
        incomplete: Vec::new(),
        images: 0,
        cost: Usd::ZERO,
        run_ids: BTreeMap::new(),
    };
    let mut first_location = String::new();
    for (index, (part, _)) in &by_index {
        let (header, rows) = read_part(part)?;
        if merged.header.is_empty() {
            merged.header = header;
            first_location = part.location.clone();
        } else if header != merged.header {
            return Err(MergeError::Columns {
                location: part.location.clone(),
                first: first_location.clone(),
            });
        }
        let cost_col = column(&merged.header, "cost_usd");
        let image_col = column(&merged.header, "image");
        let run_col = column(&merged.header, "run_id");
        let mut images = BTreeSet::new();
        for row in &rows {
            let cell = |c: Option<usize>| c.and_then(|c| row.get(c)).unwrap_or("");
            merged.cost += parse_usd(cell(cost_col)).ok_or_else(|| MergeError::Unreadable {
                location: part.location.clone(),
                detail: format!("cost_usd `{}` is not an amount", cell(cost_col)),
            })?;
            images.insert(cell(image_col).to_owned());
            if !cell(run_col).is_empty() {
                merged.run_ids.insert(*index, cell(run_col).to_owned());
            }
        }
        merged.images += images.len();
        if let Some(why) = incomplete(part, images.len())? {
            merged.incomplete.push(Incomplete { index: *index, why });
        }
        merged.rows.extend(rows);
    }
    let image_col = column(&merged.header, "image").unwrap_or(0);
    let step_col = column(&merged.header, "step");
    merged.rows.sort_by(|a, b| {
        let step = |r: &csv::StringRecord| {
            step_col
                .and_then(|c| r.get(c))
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (a.get(image_col), step(a)).cmp(&(b.get(image_col), step(b)))
    });
    Ok(merged)
}

fn column(header: &csv::StringRecord, name: &str) -> Option<usize> {
    header.iter().position(|h| h == name)
}

/// A part's header (checked to start with the report's columns) and rows.
fn read_part(part: &PartFile) -> Result<(csv::StringRecord, Vec<csv::StringRecord>), MergeError> {
    let bad = |detail: String| MergeError::Unreadable {
        location: part.location.clone(),
        detail,
    };
    let mut rdr = csv::Reader::from_reader(part.csv.as_slice());
    let header = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    if header.len() < COLUMNS.len() || header.iter().zip(COLUMNS).any(|(h, c)| h != c) {
        return Err(bad("not a retouch report (its columns differ)".into()));
    }
    let rows = rdr
        .records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    Ok((header, rows))
}

/// Why `part` (with rows for `images` images) is not a finished shard's whole work, if so.
fn incomplete(part: &PartFile, images: usize) -> Result<Option<String>, MergeError> {
    let Some(bytes) = &part.status else {
        return Ok(Some(
            "no status beside the part: not written by a finished shard".into(),
        ));
    };
    let status: PartStatus = serde_json::from_slice(bytes).map_err(|e| MergeError::Unreadable {
        location: format!("{}.json", part.location),
        detail: e.to_string(),
    })?;
    Ok(if !status.finished {
        Some(format!(
            "unfinished: run {} was killed or is still running ({images} of {} images reported)",
            status.run_id, status.images
        ))
    } else if status.cancelled {
        Some(format!(
            "interrupted: run {} stopped early ({images} of {} images reported)",
            status.run_id, status.images
        ))
    } else if images < status.images {
        Some(format!(
            "short: {images} of {} images reported",
            status.images
        ))
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(index: u32, count: u32, rows: &[(&str, &str)], status: Option<PartStatus>) -> PartFile {
        let shard = Shard::new(index, count).unwrap();
        let name = shard.part_name("report.csv");
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(COLUMNS).unwrap();
        for (image, cost) in rows {
            let mut rec = vec![""; COLUMNS.len()];
            rec[0] = "run-a";
            rec[1] = image;
            rec[2] = "1";
            rec[7] = cost;
            w.write_record(rec).unwrap();
        }
        PartFile {
            location: format!("out/{name}"),
            name,
            csv: w.into_inner().unwrap(),
            status: status.map(|s| serde_json::to_vec(&s).unwrap()),
        }
    }

    fn done(images: usize) -> Option<PartStatus> {
        Some(PartStatus {
            run_id: "run-a".into(),
            shard: String::new(),
            images,
            finished: true,
            cancelled: false,
            rows: images,
            cost_usd: String::new(),
            updated_at: 0,
        })
    }

    #[test]
    fn parts_merge_into_one_report_with_every_row_and_the_total() {
        let merged = merge(vec![
            part(
                1,
                3,
                &[("b.png", "0.040000"), ("d.png", "0.010000")],
                done(2),
            ),
            part(0, 3, &[("c.png", "0.000000")], done(1)),
            part(2, 3, &[("a.png", "0.070000")], done(1)),
        ])
        .unwrap();
        assert!(merged.is_complete());
        assert_eq!(merged.count, 3);
        assert_eq!(merged.images, 4);
        assert_eq!(merged.cost, Usd::from_dollars(0.12).unwrap());
        let images: Vec<&str> = merged.rows.iter().map(|r| &r[1]).collect();
        assert_eq!(images, ["a.png", "b.png", "c.png", "d.png"]);
        let text = String::from_utf8(merged.to_csv()).unwrap();
        assert!(text.starts_with("run_id,image,step,op,model,reason"));
        assert_eq!(text.lines().count(), 5);
    }

    #[test]
    fn missing_unfinished_and_short_shards_are_named() {
        let mut killed = done(3).unwrap();
        killed.finished = false;
        let merged = merge(vec![
            part(0, 4, &[("a.png", "0.04")], Some(killed)),
            part(1, 4, &[("b.png", "0.04")], done(2)),
            part(3, 4, &[("c.png", "0.04")], None),
        ])
        .unwrap();
        assert!(!merged.is_complete());
        assert_eq!(merged.missing, [2]);
        let why: Vec<(u32, &str)> = merged
            .incomplete
            .iter()
            .map(|i| (i.index, i.why.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            why,
            [
                (0, "unfinished"),
                (1, "short"),
                (3, "no status beside the part")
            ]
        );
        assert_eq!(merged.rows.len(), 3, "what there is is merged");
    }

    #[test]
    fn parts_of_different_runs_or_twice_the_same_shard_are_refused() {
        let err = merge(vec![part(0, 2, &[], done(0)), part(0, 3, &[], done(0))]).unwrap_err();
        assert!(matches!(err, MergeError::Mixed(_)), "{err}");
        let mut again = part(0, 2, &[], done(0));
        again.location = "s3://b/report.part-00000-of-00002.csv".into();
        let err = merge(vec![part(0, 2, &[], done(0)), again]).unwrap_err();
        assert!(
            matches!(err, MergeError::Duplicate { index: 0, .. }),
            "{err}"
        );
        let mut odd = part(0, 1, &[], done(0));
        odd.name = "report.csv".into();
        assert!(matches!(merge(vec![odd]), Err(MergeError::NotAPart(_))));
        assert!(matches!(merge(vec![]), Err(MergeError::NoParts)));
    }
}
