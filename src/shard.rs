//! Splitting one catalogue across many processes: which shard this process is, which inputs it
//! owns, and what its report part is called.
//!
//! A shard is `INDEX/COUNT` (0-based), from `--shard` or from the engine running the process:
//! AWS Batch array jobs (`AWS_BATCH_JOB_ARRAY_INDEX`, `AWS_BATCH_JOB_ARRAY_SIZE`) and Kubernetes
//! Indexed Jobs (`JOB_COMPLETION_INDEX`; Kubernetes does not export the completions count, so it
//! comes from `--shard-count` or `RETOUCH_SHARD_COUNT`). An input belongs to exactly one shard,
//! by a jump consistent hash of its source key (how the report names it: a path relative to the
//! manifest, `s3://bucket/key`, or `prompts.csv#id`), never its position in the listing: adding
//! images to a catalogue moves none of the others, growing the shard count from N to N+1 moves
//! only about 1/(N+1) of them, and a retried shard does exactly its own work. Pure: reads no
//! file and no environment itself (the CLI passes a lookup).

use std::fmt;

/// Environment variables that name a shard.
pub const BATCH_INDEX: &str = "AWS_BATCH_JOB_ARRAY_INDEX";
pub const BATCH_SIZE: &str = "AWS_BATCH_JOB_ARRAY_SIZE";
pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
pub const COUNT_VAR: &str = "RETOUCH_SHARD_COUNT";
/// Names the run group (the shards sharing one run cap) when `--run-group` does not.
pub const GROUP_VAR: &str = "RETOUCH_RUN_GROUP";
/// AWS Batch's job id: `<array job id>:<index>` in a child of an array job.
pub const BATCH_JOB_ID: &str = "AWS_BATCH_JOB_ID";

/// At most this many shards (part names have five digits).
pub const MAX_SHARDS: u32 = 99_999;

/// One shard of a run: `index` of `count`, `index < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// A shard that cannot be worked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error(
        "`{text}` is not a shard: write INDEX/COUNT, e.g. 3/16 (INDEX from 0 to COUNT-1, COUNT 1–{MAX_SHARDS})"
    )]
    Malformed { text: String },
    #[error(
        "{var}={index} says this process is one shard of many, but not how many: pass --shard-count N or set {COUNT_VAR}{hint}"
    )]
    NoCount {
        var: &'static str,
        index: String,
        hint: &'static str,
    },
    #[error("{what} `{value}` is not a whole number from {min} to {MAX_SHARDS}")]
    BadNumber {
        what: String,
        value: String,
        min: u32,
    },
    #[error("shard index {index} is not below the shard count {count}")]
    OutOfRange { index: u32, count: u32 },
    #[error(
        "--shard-count needs the shard's index: --shard INDEX/COUNT, or run as an AWS Batch array job or a Kubernetes Indexed Job"
    )]
    CountWithoutIndex,
}

impl Shard {
    /// A checked shard.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::BadNumber {
                what: "shard count".into(),
                value: count.to_string(),
                min: 1,
            });
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// `3/16`.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let malformed = || ShardError::Malformed {
            text: text.to_owned(),
        };
        let (i, n) = text.trim().split_once('/').ok_or_else(malformed)?;
        let index = i.trim().parse::<u32>().map_err(|_| malformed())?;
        let count = n.trim().parse::<u32>().map_err(|_| malformed())?;
        Shard::new(index, count)
    }

    /// The shard this process is: `flag` (`--shard`), else the engine's environment (read
    /// through `env`), with `count_flag` (`--shard-count`) where the engine does not say the
    /// count. `None`: not sharded.
    pub fn resolve(
        flag: Option<Shard>,
        count_flag: Option<u32>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Shard>, ShardError> {
        if let Some(shard) = flag {
            return Ok(Some(shard));
        }
        let number = |what: &str, value: &str, min: u32| {
            value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|v| *v >= min && *v <= MAX_SHARDS)
                .ok_or_else(|| ShardError::BadNumber {
                    what: what.to_owned(),
                    value: value.to_owned(),
                    min,
                })
        };
        let given_count = match (count_flag, env(COUNT_VAR)) {
            (Some(n), _) => Some(number("--shard-count", &n.to_string(), 1)?),
            (None, Some(v)) => Some(number(COUNT_VAR, &v, 1)?),
            (None, None) => None,
        };
        let (var, index, engine_count, hint) = if let Some(i) = env(BATCH_INDEX) {
            let size = env(BATCH_SIZE)
                .map(|v| number(BATCH_SIZE, &v, 1))
                .transpose()?;
            (BATCH_INDEX, i, size, "")
        } else if let Some(i) = env(K8S_INDEX) {
            (K8S_INDEX, i, None, " (the Job's `completions`)")
        } else {
            return match given_count {
                Some(_) => Err(ShardError::CountWithoutIndex),
                None => Ok(None),
            };
        };
        let count = given_count
            .or(engine_count)
            .ok_or_else(|| ShardError::NoCount {
                var,
                index: index.clone(),
                hint,
            })?;
        let index = number(var, &index, 0)?;
        Shard::new(index, count).map(Some)
    }

    /// Whether the input named `key` belongs to this shard.
    pub fn owns(&self, key: &str) -> bool {
        shard_of(key, self.count) == self.index
    }

    /// The report part's file name for a report named `name` (`report.csv` →
    /// `report.part-00003-of-00016.csv`).
    pub fn part_name(&self, name: &str) -> String {
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
            _ => (name, None),
        };
        let tag = format!("part-{:05}-of-{:05}", self.index, self.count);
        match ext {
            Some(ext) => format!("{stem}.{tag}.{ext}"),
            None => format!("{stem}.{tag}"),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The run group: the shards of one catalogue run that share its run cap (through the
/// coordination table). From `flag` (`--run-group`), else [`GROUP_VAR`], else the array job's
/// id in AWS Batch (a child's `AWS_BATCH_JOB_ID` is `<array job id>:<index>`; a retried child
/// keeps it, so a retry spends from the same cap). On Kubernetes the Job's uid serves, passed
/// in [`GROUP_VAR`] by the downward API (see `deploy/kubernetes/indexed-job.yaml`).
pub fn run_group(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let clean = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some(group) = flag.and_then(clean) {
        return Some(group);
    }
    if let Some(group) = env(GROUP_VAR).as_deref().and_then(clean) {
        return Some(group);
    }
    let job = env(BATCH_JOB_ID)?;
    let parent = match job.rsplit_once(':') {
        Some((parent, index)) if index.bytes().all(|b| b.is_ascii_digit()) => parent,
        _ => &job,
    };
    clean(parent)
}

/// A report part's name taken apart: `report.part-00003-of-00016.csv` → (`report.csv`, 3/16).
pub fn parse_part_name(name: &str) -> Option<(String, Shard)> {
    let at = name.rfind(".part-")?;
    let (stem, rest) = (&name[..at], &name[at + ".part-".len()..]);
    let (index, rest) = rest.split_once("-of-")?;
    let (count, ext) = match rest.split_once('.') {
        Some((count, ext)) => (count, Some(ext)),
        None => (rest, None),
    };
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(count) {
        return None;
    }
    let shard = Shard::new(index.parse().ok()?, count.parse().ok()?).ok()?;
    let base = match ext {
        Some(ext) => format!("{stem}.{ext}"),
        None => stem.to_owned(),
    };
    Some((base, shard))
}

/// The shard (of `count`) the input named `key` belongs to: a jump consistent hash (Lamping and
/// Veach, 2014) of the key's blake3.
pub fn shard_of(key: &str, count: u32) -> u32 {
    let digest = blake3::hash(key.as_bytes());
    let mut k = u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"));
    let (mut b, mut j) = (-1i64, 0i64);
    while j < i64::from(count) {
        b = j;
        k = k.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((k >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u32
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_run_group_comes_from_the_flag_the_variable_or_the_array_job() {
        let batch = env(&[(BATCH_JOB_ID, "4e5a-77:12"), (GROUP_VAR, "")]);
        assert_eq!(run_group(None, &batch).as_deref(), Some("4e5a-77"));
        assert_eq!(
            run_group(Some("nightly"), &batch).as_deref(),
            Some("nightly")
        );
        let named = env(&[(GROUP_VAR, "uid-1"), (BATCH_JOB_ID, "x:1")]);
        assert_eq!(run_group(None, &named).as_deref(), Some("uid-1"));
        let single = env(&[(BATCH_JOB_ID, "plain-job")]);
        assert_eq!(run_group(None, &single).as_deref(), Some("plain-job"));
        assert_eq!(run_group(Some("  "), env(&[])), None);
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn parses_and_checks_index_over_count() {
        assert_eq!(
            Shard::parse("3/16"),
            Ok(Shard {
                index: 3,
                count: 16
            })
        );
        assert_eq!(Shard::parse(" 0 / 1 "), Ok(Shard { index: 0, count: 1 }));
        assert!(matches!(
            Shard::parse("16/16"),
            Err(ShardError::OutOfRange { .. })
        ));
        for bad in ["3", "a/4", "-1/4", "3/", "1/0", "1/100000"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_engines_environment_names_the_shard() {
        let batch = env(&[(BATCH_INDEX, "4"), (BATCH_SIZE, "10")]);
        assert_eq!(
            Shard::resolve(None, None, batch),
            Ok(Some(Shard {
                index: 4,
                count: 10
            }))
        );
        // Kubernetes gives the index only: the count comes from the flag or RETOUCH_SHARD_COUNT.
        let k8s = env(&[(K8S_INDEX, "2")]);
        assert!(matches!(
            Shard::resolve(None, None, &k8s),
            Err(ShardError::NoCount { .. })
        ));
        assert_eq!(
            Shard::resolve(None, Some(8), &k8s),
            Ok(Some(Shard { index: 2, count: 8 }))
        );
        let k8s_env = env(&[(K8S_INDEX, "7"), (COUNT_VAR, "8")]);
        assert_eq!(
            Shard::resolve(None, None, k8s_env),
            Ok(Some(Shard { index: 7, count: 8 }))
        );
        // The flag wins over the environment; nothing at all is not sharded.
        let flag = Some(Shard { index: 1, count: 2 });
        assert_eq!(
            Shard::resolve(flag, None, env(&[(BATCH_INDEX, "4")])),
            Ok(flag)
        );
        assert_eq!(Shard::resolve(None, None, env(&[])), Ok(None));
        assert_eq!(
            Shard::resolve(None, Some(4), env(&[])),
            Err(ShardError::CountWithoutIndex)
        );
        assert!(matches!(
            Shard::resolve(None, None, env(&[(K8S_INDEX, "9"), (COUNT_VAR, "8")])),
            Err(ShardError::OutOfRange { index: 9, count: 8 })
        ));
        assert!(matches!(
            Shard::resolve(None, None, env(&[(K8S_INDEX, "x"), (COUNT_VAR, "8")])),
            Err(ShardError::BadNumber { .. })
        ));
    }

    #[test]
    fn every_key_has_one_shard_and_shards_are_even() {
        let keys: Vec<String> = (0..8000).map(|i| format!("photos/{i}.jpg")).collect();
        let mut sizes = [0usize; 8];
        for k in &keys {
            let owners: Vec<u32> = (0..8)
                .filter(|i| {
                    Shard {
                        index: *i,
                        count: 8,
                    }
                    .owns(k)
                })
                .collect();
            assert_eq!(owners.len(), 1, "{k}");
            sizes[owners[0] as usize] += 1;
        }
        assert!(sizes.iter().all(|s| (850..=1150).contains(s)), "{sizes:?}");
    }

    #[test]
    fn growing_the_count_moves_few_keys_and_adding_keys_moves_none() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("s3://b/k/{i}.png")).collect();
        let moved = keys
            .iter()
            .filter(|k| shard_of(k, 8) != shard_of(k, 9))
            .count();
        // Ideal: 1/9 of them (1,111); hash % n would move about 8/9.
        assert!((900..=1350).contains(&moved), "{moved}");
        // A key's shard depends on the key and the count only.
        assert_eq!(
            shard_of("s3://b/k/7.png", 16),
            shard_of("s3://b/k/7.png", 16)
        );
    }

    #[test]
    fn part_names_round_trip() {
        let s = Shard {
            index: 3,
            count: 16,
        };
        assert_eq!(s.part_name("report.csv"), "report.part-00003-of-00016.csv");
        assert_eq!(s.part_name("report"), "report.part-00003-of-00016");
        assert_eq!(
            parse_part_name("report.part-00003-of-00016.csv"),
            Some(("report.csv".into(), s))
        );
        assert_eq!(
            parse_part_name("x.y.part-00000-of-00002.json"),
            Some(("x.y.json".into(), Shard { index: 0, count: 2 }))
        );
        assert_eq!(parse_part_name("report.csv"), None);
        assert_eq!(parse_part_name("report.part-3-of-16.csv"), None);
        assert_eq!(parse_part_name("report.part-00016-of-00016.csv"), None);
    }
}
