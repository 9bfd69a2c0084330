//! S3 wiring for `run` and `check`: one client per command (only when something is in S3),
//! pre-flight checks that name the bucket and prefix before any work, presigned URLs for the
//! report, and the report's upload at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use retouch::ledger::StepRecord;
use retouch::manifest::{self, Manifest, Place, S3Location};
use retouch::s3::{S3, S3Settings};

/// The run's shared client, when any input, the output or the report is in S3.
pub async fn connect(manifest: &Manifest) -> Option<S3> {
    if !manifest.uses_s3() {
        return None;
    }
    let settings = S3Settings {
        region: manifest.aws.region.clone(),
        profile: manifest.aws.profile.clone(),
        endpoint_url: manifest.aws.s3.endpoint_url.clone(),
        path_style: manifest.aws.s3.path_style,
        attempts: manifest.limits.attempts,
    };
    Some(S3::connect(&settings).await)
}

/// Checks that the output's and the report's buckets exist and are reachable. (Input prefixes are
/// checked by listing them.) The message names the bucket and prefix.
pub async fn preflight(manifest: &Manifest, s3: Option<&S3>) -> Result<(), String> {
    let Some(s3) = s3 else { return Ok(()) };
    for (what, loc) in [
        ("output.dir", &manifest.output.dir),
        ("report", &manifest.report),
    ] {
        if let Place::S3(loc) = loc {
            s3.check_bucket(&loc.bucket)
                .await
                .map_err(|e| format!("{what} {loc}: {e}"))?;
        }
    }
    Ok(())
}

/// Where a report bound for S3 is written locally: the pipeline's state folder.
pub fn local_report_path(manifest: &Manifest) -> PathBuf {
    match &manifest.report {
        Place::Local(path) => path.clone(),
        Place::S3(loc) => {
            let name = loc.key.rsplit('/').next().unwrap_or("report.csv");
            manifest.state_dir().join(name)
        }
    }
}

/// Presigned GET URLs for every S3 output in `rows`, keyed by the row's `output`.
pub async fn presign_outputs(
    s3: &S3,
    rows: &[StepRecord],
    expires: std::time::Duration,
) -> HashMap<String, String> {
    let mut urls = HashMap::new();
    for row in rows {
        if urls.contains_key(&row.output) {
            continue;
        }
        let Ok(loc) = manifest::parse_s3(&row.output) else {
            continue;
        };
        match s3.presign_get(&loc.bucket, &loc.key, expires).await {
            Ok(url) => {
                urls.insert(row.output.clone(), url);
            }
            Err(e) => tracing::warn!("cannot presign {}: {e}", row.output),
        }
    }
    urls
}

/// Uploads the finished local report to `dest`.
pub async fn upload_report(s3: &S3, local: &Path, dest: &S3Location) -> Result<(), String> {
    retouch::sinks::upload_file(s3, local, dest, "text/csv")
        .await
        .map_err(|e| format!("cannot upload the report to {dest}: {e}"))
}
