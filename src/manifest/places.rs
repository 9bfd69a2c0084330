//! Parsing `s3://` locations and durations written in the manifest (`inputs`, `output.dir`,
//! `report`, `output.presign`), and tidying local paths joined onto the manifest's folder. Pure
//! string work: nothing here talks to S3 or the file system; whether a bucket exists is checked
//! by the engine before a run.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::types::{InputSpec, S3Location};

/// The longest a presigned URL may live (S3's own limit for SigV4).
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Removes `.` and resolves `..` lexically, so `pipelines/../samples/a.jpg` shows as `samples/a.jpg`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Whether `s` names an S3 location (`s3://`, any case).
pub(super) fn is_s3(s: &str) -> bool {
    s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("s3://"))
}

/// `s3://bucket/key` → bucket and key (the key may be empty or a prefix).
pub fn parse_s3(uri: &str) -> Result<S3Location, String> {
    let rest = uri
        .get(5..)
        .filter(|_| is_s3(uri))
        .ok_or("not an s3:// URI")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket_name(bucket)?;
    Ok(S3Location {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    })
}

/// An S3 input: `s3://bucket/prefix/` or `s3://bucket/prefix/**/*.jpg`. The prefix is the key's
/// leading segments free of glob syntax, always ending in `/` (or empty for the whole bucket).
pub(super) fn s3_input(uri: &str) -> Result<InputSpec, String> {
    let loc = parse_s3(uri)?;
    let segments: Vec<&str> = loc.key.split('/').collect();
    let first_glob = segments
        .iter()
        .position(|s| s.contains(['*', '?', '[', '{']));
    let (prefix, pattern) = match first_glob {
        None => (folder(&loc.key), None),
        Some(i) => {
            let pattern = segments[i..].join("/");
            globset::Glob::new(&pattern).map_err(|e| format!("invalid glob: {}", e.kind()))?;
            (folder(&segments[..i].join("/")), Some(pattern))
        }
    };
    Ok(InputSpec::S3 {
        bucket: loc.bucket,
        prefix,
        pattern,
    })
}

/// An S3 folder (prefix): empty, or ending in exactly one `/`.
pub(super) fn s3_folder(uri: &str) -> Result<S3Location, String> {
    let loc = parse_s3(uri)?;
    Ok(S3Location {
        key: folder(&loc.key),
        ..loc
    })
}

/// An S3 object: the key must be non-empty and not a folder.
pub(super) fn s3_object(uri: &str) -> Result<S3Location, String> {
    let loc = parse_s3(uri)?;
    if loc.key.is_empty() || loc.key.ends_with('/') {
        return Err(
            "needs an object key after the bucket, e.g. `s3://bucket/reports/run.csv`".into(),
        );
    }
    Ok(loc)
}

fn folder(key: &str) -> String {
    let trimmed = key.trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// S3's bucket naming rules: 3–63 characters of lowercase letters, digits, `.` and `-`, starting
/// and ending with a letter or digit.
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let is_valid_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let is_edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if bucket.is_empty() {
        return Err("the bucket name is missing (write `s3://bucket/prefix/`)".into());
    }
    if !(3..=63).contains(&bucket.len())
        || !bucket.chars().all(is_valid_char)
        || !is_edge(bucket.chars().next())
        || !is_edge(bucket.chars().last())
    {
        return Err(format!(
            "invalid bucket name `{bucket}`: 3 to 63 lowercase letters, digits, `.` or `-`"
        ));
    }
    Ok(())
}

/// `90s`, `90m`, `24h`, `7d` → a duration between 1 second and 7 days.
pub(super) fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("`{s}` is not a duration")),
    };
    let d = Duration::from_secs(secs);
    if d.is_zero() || d > MAX_PRESIGN {
        return Err(format!("`{s}` must be between 1s and 7d"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_parent_components() {
        assert_eq!(
            normalize(Path::new("pipelines/../samples/./a.jpg")),
            PathBuf::from("samples/a.jpg")
        );
        assert_eq!(normalize(Path::new("../x.jpg")), PathBuf::from("../x.jpg"));
        assert_eq!(normalize(Path::new("pipelines/..")), PathBuf::from("."));
        assert_eq!(
            normalize(Path::new("./pipelines/../out/demo")),
            PathBuf::from("out/demo")
        );
    }

    fn input(uri: &str) -> (String, String, Option<String>) {
        match s3_input(uri).unwrap() {
            InputSpec::S3 {
                bucket,
                prefix,
                pattern,
            } => (bucket, prefix, pattern),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s3_inputs_split_prefix_and_glob() {
        let s = |x: &str| x.to_owned();
        assert_eq!(input("s3://cat/photos/"), (s("cat"), s("photos/"), None));
        assert_eq!(input("s3://cat/photos"), (s("cat"), s("photos/"), None));
        assert_eq!(input("S3://cat"), (s("cat"), s(""), None));
        assert_eq!(
            input("s3://cat/a/b/**/*.jpg"),
            (s("cat"), s("a/b/"), Some(s("**/*.jpg")))
        );
        assert_eq!(
            input("s3://cat/img-*.png"),
            (s("cat"), s(""), Some(s("img-*.png")))
        );
    }

    #[test]
    fn bad_s3_locations_are_refused() {
        for bad in ["s3://", "s3:///x/", "s3://AB/x", "s3://ab/x", "s3://-abc/x"] {
            assert!(s3_input(bad).is_err(), "{bad}");
        }
        assert!(s3_input("s3://cat/[ab/*.jpg").is_err());
        assert!(s3_object("s3://cat/reports/").is_err());
        assert!(s3_object("s3://cat").is_err());
        assert_eq!(s3_object("s3://cat/r/x.csv").unwrap().key, "r/x.csv");
        assert_eq!(s3_folder("s3://cat/out").unwrap().key, "out/");
        assert_eq!(s3_folder("s3://cat/").unwrap().key, "");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(duration("90m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(duration("7d").unwrap(), MAX_PRESIGN);
        for bad in ["8d", "0h", "h", "24", "1.5h", "-1h", "169h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
