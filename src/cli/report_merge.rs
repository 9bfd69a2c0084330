//! `retouch report merge PARTS... [--output]`: finds the report parts of a sharded run (files,
//! folders, S3 keys and prefixes), combines them with `report::parts::merge`, writes the merged
//! report, and says which shards are missing or unfinished. `retouch report` on a folder or
//! prefix of parts reviews them the same way.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use retouch::manifest::{S3Location, parse_s3};
use retouch::report::parts::{self, Merged, PartFile};
use retouch::shard::parse_part_name;

use super::args::MergeArgs;
use super::code;
use super::s3_access::{S3Access, is_s3};

/// Where parts were found: the merged report goes beside the first of them by default.
#[derive(Debug, Clone)]
pub(super) enum Beside {
    Folder(PathBuf),
    Prefix { bucket: String, prefix: String },
}

pub(super) async fn merge(args: &MergeArgs) -> anyhow::Result<i32> {
    let mut s3 = S3Access::new(&args.s3);
    let (found, beside) = find(&args.parts, &mut s3).await?;
    let merged = parts::merge(found)?;
    let csv = merged.to_csv();
    let output = match (&args.output, beside) {
        (Some(out), _) => out.clone(),
        (None, Some(Beside::Folder(dir))) => dir.join(&merged.base).display().to_string(),
        (None, Some(Beside::Prefix { bucket, prefix })) => {
            format!("s3://{bucket}/{prefix}{}", merged.base)
        }
        (None, None) => merged.base.clone(),
    };
    if is_s3(&output) {
        let loc = parse_s3(&output).map_err(|e| anyhow::anyhow!("--output: {e}"))?;
        if loc.key.is_empty() || loc.key.ends_with('/') {
            bail!("--output `{output}` needs an object key, e.g. s3://bucket/report.csv");
        }
        put(&mut s3, &loc, csv).await?;
    } else {
        retouch::atomic_file::write(Path::new(&output), &csv)
            .with_context(|| format!("cannot write {output}"))?;
    }
    print!("{}", status(&merged));
    println!("merged report: {output}");
    Ok(if merged.is_complete() {
        code::OK
    } else {
        code::SOME_FAILED
    })
}

async fn put(s3: &mut S3Access, loc: &S3Location, bytes: Vec<u8>) -> anyhow::Result<()> {
    s3.client()
        .await
        .put(&loc.bucket, &loc.key, bytes, "text/csv")
        .await
        .with_context(|| format!("cannot write {loc}"))?;
    Ok(())
}

/// What the merge found: shards, rows, images, cost, and each missing or unfinished shard.
pub(super) fn status(m: &Merged) -> String {
    let present = m.count as usize - m.missing.len();
    let mut out = format!(
        "parts:  {present} of {} shards of {}: {} rows, {} images, ${}\n",
        m.count,
        m.base,
        m.rows.len(),
        m.images,
        m.cost
    );
    if !m.missing.is_empty() {
        let list: Vec<String> = m.missing.iter().map(u32::to_string).collect();
        out += &format!(
            "missing: shard {} (no part: not run yet, or killed before it could upload)\n",
            list.join(", ")
        );
    }
    for i in &m.incomplete {
        out += &format!("incomplete: shard {}: {}\n", i.index, i.why);
    }
    if m.is_complete() {
        out += "complete: every shard finished\n";
    } else {
        out += "rerun the shards named above (`retouch run MANIFEST --shard INDEX/COUNT`): they pay only for what they have not done\n";
    }
    out
}

/// Every part the arguments name, with their status files, and where the first was found.
pub(super) async fn find(
    args: &[String],
    s3: &mut S3Access,
) -> anyhow::Result<(Vec<PartFile>, Option<Beside>)> {
    let mut found = Vec::new();
    let mut beside = None;
    for arg in args {
        if is_s3(arg) {
            let loc = parse_s3(arg).map_err(|e| anyhow::anyhow!("{arg}: {e}"))?;
            let name = loc.key.rsplit('/').next().unwrap_or_default();
            let keys = if is_part(name) {
                vec![loc.key.clone()]
            } else {
                let prefix = match loc.key.as_str() {
                    "" => String::new(),
                    k if k.ends_with('/') => k.to_owned(),
                    k => format!("{k}/"),
                };
                let keys = s3.client().await.list(&loc.bucket, &prefix).await?;
                let parts: Vec<String> = keys
                    .into_iter()
                    .filter(|k| {
                        let rest = &k[prefix.len()..];
                        !rest.contains('/') && is_part(rest)
                    })
                    .collect();
                if parts.is_empty() {
                    bail!("{arg}: no report parts under this prefix");
                }
                parts
            };
            for key in keys {
                let (dir, name) = key.rsplit_once('/').unwrap_or(("", key.as_str()));
                beside.get_or_insert_with(|| Beside::Prefix {
                    bucket: loc.bucket.clone(),
                    prefix: if dir.is_empty() {
                        String::new()
                    } else {
                        format!("{dir}/")
                    },
                });
                found.push(PartFile {
                    name: name.to_owned(),
                    location: format!("s3://{}/{key}", loc.bucket),
                    csv: s3.get(&loc.bucket, &key).await?,
                    status: s3
                        .get_if_exists(&loc.bucket, &format!("{key}.json"))
                        .await?,
                });
            }
        } else {
            let path = Path::new(arg);
            let files = if path.is_dir() {
                let mut files = Vec::new();
                for entry in std::fs::read_dir(path).with_context(|| arg.clone())? {
                    let p = entry?.path();
                    if p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(is_part) {
                        files.push(p);
                    }
                }
                if files.is_empty() {
                    bail!("{arg}: no report parts in this folder");
                }
                files.sort();
                files
            } else if path.is_file() {
                vec![path.to_owned()]
            } else {
                bail!("{arg}: no such file or folder");
            };
            for file in files {
                let dir = file.parent().unwrap_or(Path::new(".")).to_owned();
                beside.get_or_insert(Beside::Folder(dir));
                let status = parts::status_path(&file);
                found.push(PartFile {
                    name: file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    location: file.display().to_string(),
                    csv: std::fs::read(&file).with_context(|| file.display().to_string())?,
                    status: status
                        .is_file()
                        .then(|| std::fs::read(&status))
                        .transpose()?,
                });
            }
        }
    }
    Ok((found, beside))
}

/// A part's file name (not its status file).
fn is_part(name: &str) -> bool {
    !name.ends_with(".json") && parse_part_name(name).is_some()
}

/// Whether `target` (a folder or S3 prefix) holds report parts: `retouch report` reviews them.
pub(super) fn names_parts(target: &str) -> bool {
    if is_s3(target) {
        let name = target.rsplit('/').next().unwrap_or_default();
        return target.ends_with('/') || is_part(name);
    }
    let path = Path::new(target);
    path.is_dir()
        && std::fs::read_dir(path).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_str().is_some_and(is_part))
        })
}
