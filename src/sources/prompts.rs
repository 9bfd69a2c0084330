//! Prompts files: the inputs of a pipeline whose first step is `generate`.
//!
//! A prompts file is CSV with a header, JSON Lines (one object per line), or YAML / JSON (a list
//! of maps). Each row is one image to make: `id` (names the output) and `prompt` are required;
//! `negative_prompt`, `seed` and `aspect_ratio` are optional. Parsing is strict, and every
//! problem names the file, the line (CSV, JSONL) or entry (YAML, JSON), the column and what
//! would be valid, before any work is done. A row's content (not its id) is what the step
//! cache keys on, so a rerun pays only for prompts that changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The columns a prompts file may have.
pub const COLUMNS: &[&str] = &["id", "prompt", "negative_prompt", "seed", "aspect_ratio"];
/// Stability's largest seed (and the largest asked for).
pub const MAX_SEED: u32 = 4_294_967_294;
/// Longest prompt accepted (Stability's limit).
pub const MAX_PROMPT_CHARS: usize = 10_000;
/// Longest id (it becomes a file name).
const MAX_ID_CHARS: usize = 200;
/// Largest prompts file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// One row of a prompts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRow {
    /// Names the output (`<id>.png`); letters, digits, `-`, `_`, `.` and `/` for subfolders.
    pub id: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    /// As given; [`PromptRow::seed`] derives one from the row when absent.
    pub seed: Option<u32>,
    /// `w:h`, as given.
    pub aspect_ratio: Option<(u32, u32)>,
}

impl PromptRow {
    /// What the row asks for, as canonical JSON: the cache keys on it (the id is left out, so
    /// renaming a row reuses its image).
    pub fn canonical(&self) -> Vec<u8> {
        let v = json!({
            "kind": "prompt",
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "aspect_ratio": self.aspect_ratio.map(|(w, h)| format!("{w}:{h}")),
        });
        serde_json::to_vec(&v).expect("JSON values always serialise")
    }

    /// The seed to send: the row's, or one derived from its content, so the same row asks the
    /// model the same question on every run (and the sidecar can say which seed made it).
    pub fn seed(&self) -> u32 {
        self.seed.unwrap_or_else(|| {
            let h = blake3::hash(&self.canonical());
            let n = u32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"));
            n % (MAX_SEED + 1)
        })
    }
}

/// A prompts file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    #[error("cannot read prompts file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("prompts file {} is {size} bytes; at most {MAX_FILE_BYTES} are read", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}: {at}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        /// `line 4, column seed` or `entry 3 (seed)`.
        at: String,
        message: String,
    },
    #[error("{}: no prompts (a header `id,prompt` and at least one row are needed)", path.display())]
    Empty { path: PathBuf },
}

/// Reads and parses a prompts file (at most [`MAX_FILE_BYTES`]).
pub fn read(path: &Path) -> Result<Vec<PromptRow>, PromptsError> {
    let read_err = |source| PromptsError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(PromptsError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse(path, &text)
}

/// Parses a prompts file's bytes (UTF-8); the format follows the extension of `path`.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<PromptRow>, PromptsError> {
    let text = std::str::from_utf8(bytes).map_err(|e| PromptsError::Invalid {
        path: path.to_owned(),
        at: "file".into(),
        message: format!("not UTF-8 text: {e}"),
    })?;
    parse(path, text)
}

/// Parses a prompts file's text; the format follows the extension.
pub fn parse(path: &Path, text: &str) -> Result<Vec<PromptRow>, PromptsError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let rows = match ext.as_str() {
        "csv" => parse_csv(path, text)?,
        "jsonl" => parse_jsonl(path, text)?,
        _ => parse_list(path, text)?,
    };
    if rows.is_empty() {
        return Err(PromptsError::Empty {
            path: path.to_owned(),
        });
    }
    let mut first: HashMap<&str, &str> = HashMap::new();
    for (at, row) in &rows {
        if let Some(earlier) = first.insert(&row.id, at) {
            return Err(invalid(
                path,
                at,
                format!(
                    "id `{}` was already used at {earlier}; ids name the outputs, so each must be unique",
                    row.id
                ),
            ));
        }
    }
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

fn invalid(path: &Path, at: &str, message: String) -> PromptsError {
    PromptsError::Invalid {
        path: path.to_owned(),
        at: at.to_owned(),
        message,
    }
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<(String, PromptRow)>, PromptsError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| invalid(path, "line 1", format!("unreadable header: {e}")))?
        .clone();
    let names: Vec<String> = headers.iter().map(str::to_owned).collect();
    check_columns(path, "line 1 (header)", names.iter().map(String::as_str))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            invalid(
                path,
                &format!("line {line}"),
                format!("not a valid CSV row: {e}"),
            )
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let at = format!("line {line}");
        let cells: Vec<(&str, Value)> = names
            .iter()
            .map(String::as_str)
            .zip(record.iter().map(|c| Value::String(c.to_owned())))
            .collect();
        rows.push((at.clone(), row(path, &at, cells)?));
    }
    Ok(rows)
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<(String, PromptRow)>, PromptsError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| invalid(path, &at, format!("not a JSON object: {e}")))?;
        rows.push((at.clone(), object_row(path, &at, value)?));
    }
    Ok(rows)
}

/// YAML or JSON: a list of maps (JSON is YAML).
fn parse_list(path: &Path, text: &str) -> Result<Vec<(String, PromptRow)>, PromptsError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map_or_else(|| "file".to_owned(), |l| format!("line {}", l.line()));
        invalid(path, &at, format!("not valid YAML/JSON: {e}"))
    })?;
    let value: Value = serde_json::to_value(value)
        .map_err(|e| invalid(path, "file", format!("not a list of prompts: {e}")))?;
    let Value::Array(items) = value else {
        return Err(invalid(
            path,
            "file",
            "must be a list of prompts, e.g. `- { id: mug-1, prompt: \"a white mug\" }`".into(),
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("entry {}", i + 1);
            object_row(path, &at, item).map(|row| (at, row))
        })
        .collect()
}

fn object_row(path: &Path, at: &str, value: Value) -> Result<PromptRow, PromptsError> {
    let Value::Object(map) = value else {
        return Err(invalid(
            path,
            at,
            "must be a map with `id` and `prompt`".into(),
        ));
    };
    check_columns(path, at, map.keys().map(String::as_str))?;
    let cells: Vec<(&str, Value)> = COLUMNS
        .iter()
        .filter_map(|c| map.get(*c).map(|v| (*c, v.clone())))
        .collect();
    row(path, at, cells)
}

fn check_columns<'a>(
    path: &Path,
    at: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), PromptsError> {
    let names: Vec<&str> = names.collect();
    if let Some(bad) = names.iter().find(|n| !COLUMNS.contains(n)) {
        return Err(invalid(
            path,
            at,
            format!("unknown column `{bad}`; valid: {}", COLUMNS.join(", ")),
        ));
    }
    for required in ["id", "prompt"] {
        if !names.contains(&required) {
            return Err(invalid(
                path,
                at,
                format!("no `{required}` column; `id` and `prompt` are required"),
            ));
        }
    }
    Ok(())
}

/// One row from its cells (`column`, value); empty strings and nulls are absent.
fn row(path: &Path, at: &str, cells: Vec<(&str, Value)>) -> Result<PromptRow, PromptsError> {
    let mut row = PromptRow {
        id: String::new(),
        prompt: String::new(),
        negative_prompt: None,
        seed: None,
        aspect_ratio: None,
    };
    for (column, value) in cells {
        let here = format!("{at}, column {column}");
        let text = match &value {
            Value::Null => continue,
            Value::String(s) if s.trim().is_empty() => continue,
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(invalid(
                    path,
                    &here,
                    format!("must be text or a number, not {other}"),
                ));
            }
        };
        match column {
            "id" => row.id = id(path, &here, text)?,
            "prompt" => row.prompt = prompt(path, &here, text)?,
            "negative_prompt" => row.negative_prompt = Some(prompt(path, &here, text)?),
            "seed" => {
                let seed = text.parse::<u32>().ok().filter(|s| *s <= MAX_SEED);
                row.seed = Some(seed.ok_or_else(|| {
                    invalid(
                        path,
                        &here,
                        format!("`{text}` is not a seed: a whole number 0–{MAX_SEED}"),
                    )
                })?);
            }
            "aspect_ratio" => row.aspect_ratio = Some(aspect(path, &here, &text)?),
            _ => unreachable!("columns were checked"),
        }
    }
    if row.id.is_empty() {
        return Err(invalid(path, at, "`id` is empty".into()));
    }
    if row.prompt.is_empty() {
        return Err(invalid(
            path,
            at,
            format!("`prompt` of `{}` is empty", row.id),
        ));
    }
    Ok(row)
}

fn id(path: &Path, at: &str, text: String) -> Result<String, PromptsError> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if text.chars().count() > MAX_ID_CHARS || !text.split('/').all(segment_ok) {
        return Err(invalid(
            path,
            at,
            format!(
                "id `{text}` cannot name a file: use letters, digits, `-`, `_` and `.` (not first), \
                 `/` between folder names, at most {MAX_ID_CHARS} characters"
            ),
        ));
    }
    Ok(text)
}

fn prompt(path: &Path, at: &str, text: String) -> Result<String, PromptsError> {
    let n = text.chars().count();
    if n > MAX_PROMPT_CHARS {
        return Err(invalid(
            path,
            at,
            format!("{n} characters; at most {MAX_PROMPT_CHARS}"),
        ));
    }
    Ok(text)
}

fn aspect(path: &Path, at: &str, text: &str) -> Result<(u32, u32), PromptsError> {
    let parsed = text.split_once(':').and_then(|(w, h)| {
        let (w, h): (u32, u32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
        let ratio = f64::from(w) / f64::from(h.max(1));
        ((1..=100).contains(&w) && (1..=100).contains(&h) && (0.25..=4.0).contains(&ratio))
            .then_some((w, h))
    });
    parsed.ok_or_else(|| {
        invalid(
            path,
            at,
            format!(
                "`{text}` is not an aspect ratio: write width:height between 1:4 and 4:1, \
                 e.g. 1:1, 4:5, 16:9"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<Vec<PromptRow>, PromptsError> {
        parse(Path::new("prompts.csv"), text)
    }

    #[test]
    fn the_three_formats_read_the_same_rows() {
        let from_csv = csv("id,prompt,negative_prompt,seed,aspect_ratio\n\
             mug-1,\"a white mug, studio light\",blurry,7,4:5\n\
             shoes/red,a red sneaker,,,\n")
        .unwrap();
        let jsonl = "{\"id\":\"mug-1\",\"prompt\":\"a white mug, studio light\",\"negative_prompt\":\"blurry\",\"seed\":7,\"aspect_ratio\":\"4:5\"}\n\n{\"id\":\"shoes/red\",\"prompt\":\"a red sneaker\"}\n";
        let from_jsonl = parse(Path::new("p.jsonl"), jsonl).unwrap();
        let yaml = "- { id: mug-1, prompt: \"a white mug, studio light\", negative_prompt: blurry, seed: 7, aspect_ratio: \"4:5\" }\n- id: shoes/red\n  prompt: a red sneaker\n";
        let from_yaml = parse(Path::new("p.yaml"), yaml).unwrap();
        assert_eq!(from_csv, from_jsonl);
        assert_eq!(from_csv, from_yaml);
        assert_eq!(from_csv[0].seed, Some(7));
        assert_eq!(from_csv[0].aspect_ratio, Some((4, 5)));
        assert_eq!(from_csv[1].negative_prompt, None);
    }

    #[test]
    fn problems_name_the_line_and_column() {
        let e = csv("id,prompt,seed\na,ok,1\nb,ok,twelve\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("prompts.csv: line 3, column seed"), "{e}");
        assert!(e.contains("0–4294967294"), "{e}");
        let e = csv("id,promt\na,b\n").unwrap_err().to_string();
        assert!(
            e.contains("unknown column `promt`") && e.contains("valid: id, prompt"),
            "{e}"
        );
        let e = csv("id,prompt\na,x\nb,y\na,z\n").unwrap_err().to_string();
        assert!(
            e.contains("line 4") && e.contains("already used at line 2"),
            "{e}"
        );
        let e = csv("id,prompt\n../up,x\n").unwrap_err().to_string();
        assert!(e.contains("cannot name a file"), "{e}");
        let e = csv("id,prompt,aspect_ratio\na,x,10:1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an aspect ratio"), "{e}");
        let e = csv("id,prompt\na,\n").unwrap_err().to_string();
        assert!(e.contains("`prompt` of `a` is empty"), "{e}");
        let e = csv("id,prompt\n").unwrap_err().to_string();
        assert!(e.contains("no prompts"), "{e}");
        let e = parse(Path::new("p.jsonl"), "{\"id\": \"a\", \"prompt\": [1]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1, column prompt"), "{e}");
        let e = parse(Path::new("p.yaml"), "prompts: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a list"), "{e}");
    }

    #[test]
    fn the_cache_keys_on_content_and_the_seed_is_stable() {
        let rows = csv("id,prompt\na,a mug\nb,a mug\nc,a cup\n").unwrap();
        assert_eq!(
            rows[0].canonical(),
            rows[1].canonical(),
            "the id is not content"
        );
        assert_ne!(rows[0].canonical(), rows[2].canonical());
        assert_eq!(rows[0].seed(), rows[1].seed());
        assert_ne!(rows[0].seed(), rows[2].seed());
        assert!(rows.iter().all(|r| r.seed() <= MAX_SEED));
        let seeded = csv("id,prompt,seed\na,a mug,12\n").unwrap();
        assert_eq!(seeded[0].seed(), 12);
    }
}
