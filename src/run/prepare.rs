//! Everything a run (or `check`) does before its first image: the catalog (built-in, a user
//! file, the manifest's price overrides), the validated manifest with the flags' overrides, the
//! S3 client and the pre-flight check of every bucket, the listing, the plan, and the check
//! that the run would destroy none of the files it reads. Creates nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::PrepareError;
use crate::catalog::Catalog;
use crate::ledger::coordination::{Table, TableSettings};
use crate::manifest::{self, Manifest, Place};
use crate::model_store::ModelStore;
use crate::plan::{Plan, overwrite};
use crate::providers::local::LocalOps;
use crate::s3_client::{S3, S3Settings};

/// What the flags change about the manifest, and clients the caller already has.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// A catalog file (overrides the manifest's `catalog:`).
    pub catalog: Option<PathBuf>,
    /// The state folder (overrides `state:`).
    pub state: Option<PathBuf>,
    /// Where the report goes (overrides `report:`).
    pub report: Option<Place>,
    /// A ready S3 client (tests, embedding); else one is built from the manifest when it uses
    /// S3.
    pub s3: Option<S3>,
    /// The folder of installed local networks (default: the user's, see
    /// [`ModelStore::locate`]).
    pub model_dir: Option<PathBuf>,
    /// This process is one shard of the catalogue: it works on the inputs the shard owns and
    /// writes its report part (`report.part-00003-of-00016.csv`) beside where the report goes.
    pub shard: Option<crate::shard::Shard>,
    /// The runs sharing one run cap through `shared.dynamodb_table` (the shards of one array
    /// job; see [`crate::shard::run_group`]). Default: the run alone.
    pub run_group: Option<String>,
}

/// A planned run, checked: nothing created yet.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
    /// The model catalog with the manifest's prices applied.
    pub catalog: Arc<Catalog>,
    /// Layouts that are risky but allowed (an output folder inside an input folder), and what
    /// the user should know about the local methods (the classical one standing in for a
    /// network that is not installed).
    pub warnings: Vec<String>,
    /// The local method of each step, its networks loaded and verified.
    pub local: Arc<LocalOps>,
    /// The coordination table (`shared.dynamodb_table`), reached and checked.
    pub table: Option<Table>,
}

/// Loads, lists and plans the manifest at `path`, refusing a run that would write over what it
/// reads.
pub async fn prepare(path: &Path, overrides: Overrides) -> Result<Prepared, PrepareError> {
    let (mut manifest, catalog) = load(path, overrides.catalog.as_deref())?;
    let store = match overrides.model_dir {
        Some(dir) => Some(ModelStore::at(dir)),
        None => ModelStore::locate().ok(),
    };
    let local = LocalOps::resolve(&manifest.steps, store.as_ref())?;
    local.ops.pin_pictures(&mut manifest.steps);
    read_style_images(&mut manifest.steps)?;
    if let Some(state) = overrides.state {
        manifest.state = state;
    }
    if let Some(report) = overrides.report {
        manifest.report = report;
    }
    if let Some(shard) = overrides.shard {
        manifest.report = part_place(&manifest.report, shard);
    }
    let s3 = match overrides.s3 {
        Some(s3) => Some(s3),
        None => connect_s3(&manifest).await,
    };
    preflight(&manifest, s3.as_ref()).await?;
    let table =
        coordination_table(&manifest, overrides.shard, overrides.run_group.is_some()).await?;
    let listing = crate::sources::list(&manifest, s3.as_ref()).await?;
    let mut plan = Plan::new(Arc::new(manifest), listing, s3);
    if let Some(shard) = overrides.shard {
        plan = plan.into_shard(shard);
    }
    let m = &plan.manifest;
    let writes = overwrite::Writes {
        report: &m.report,
        state: &m.state,
    };
    let findings = overwrite::check(&plan, writes);
    if !findings.refusals.is_empty() {
        return Err(PrepareError::WouldOverwrite {
            manifest: m.path.clone(),
            refusals: findings.refusals,
            warnings: findings.warnings,
        });
    }
    let mut warnings = findings.warnings;
    warnings.extend(local.notes);
    if let (Some(shard), None) = (plan.shard, &table) {
        warnings.extend(thin_rate_shares(&plan.manifest, &catalog, shard.count));
    }
    Ok(Prepared {
        plan,
        catalog,
        warnings,
        local: Arc::new(local.ops),
        table,
    })
}

/// The coordination table the manifest names, checked before any work; a shard must know its
/// run group (the shards sharing its run cap).
async fn coordination_table(
    manifest: &Manifest,
    shard: Option<crate::shard::Shard>,
    grouped: bool,
) -> Result<Option<Table>, PrepareError> {
    let Some(name) = &manifest.shared.dynamodb_table else {
        return Ok(None);
    };
    if let (Some(shard), false) = (shard, grouped) {
        return Err(PrepareError::Preflight(format!(
            "shard {shard} shares the run cap of shared.dynamodb_table with its sibling shards, but nothing names their run: pass --run-group NAME (the same for every shard) or set {} (AWS Batch array jobs are named by AWS_BATCH_JOB_ID)",
            crate::shard::GROUP_VAR
        )));
    }
    let settings = TableSettings {
        name: name.clone(),
        region: manifest.aws.region.clone(),
        profile: manifest.aws.profile.clone(),
    };
    let table = Table::connect(&settings).await;
    table
        .check()
        .await
        .map_err(|e| PrepareError::Preflight(format!("shared.dynamodb_table: {e}")))?;
    Ok(Some(table))
}

/// Models whose rpm is below the shard count: each shard still gets one request a minute, so
/// together they may exceed the model's rpm.
fn thin_rate_shares(manifest: &Manifest, catalog: &Catalog, shards: u32) -> Vec<String> {
    let mut models: Vec<&str> = manifest
        .steps
        .iter()
        .flat_map(|s| s.remote_models())
        .collect();
    models.sort_unstable();
    models.dedup();
    models
        .into_iter()
        .filter_map(|id| {
            let rpm = manifest
                .limits
                .rpm
                .get(id)
                .copied()
                .unwrap_or_else(|| catalog.default_rpm(id));
            (rpm < shards).then(|| {
                format!(
                    "{id}: {rpm} requests a minute cannot be split over {shards} shards; each takes 1 a minute, {shards} in all (raise limits.rpm if the account's quota allows, or run fewer shards)"
                )
            })
        })
        .collect()
}

/// Where a shard's report part goes: the report's folder or prefix, the part's name.
fn part_place(report: &Place, shard: crate::shard::Shard) -> Place {
    match report {
        Place::Local(path) => {
            let name = path
                .file_name()
                .map_or_else(|| "report.csv".into(), |n| n.to_string_lossy().into_owned());
            Place::Local(path.with_file_name(shard.part_name(&name)))
        }
        Place::S3(loc) => {
            let (dir, name) = match loc.key.rsplit_once('/') {
                Some((dir, name)) => (format!("{dir}/"), name),
                None => (String::new(), loc.key.as_str()),
            };
            Place::S3(manifest::S3Location {
                bucket: loc.bucket.clone(),
                key: format!("{dir}{}", shard.part_name(name)),
            })
        }
    }
}

/// Style pictures larger than this many megapixels are refused (the models take at most 9.4).
const MAX_STYLE_MEGAPIXELS: u32 = 100;

/// Reads and decodes every variation step's `style_image` once, with its digest, so each call
/// sends it and the step cache sees a changed picture.
fn read_style_images(steps: &mut [manifest::Step]) -> Result<(), PrepareError> {
    for step in steps {
        let number = step.index + 1;
        let manifest::OpParams::Variation(p) = &mut step.params else {
            continue;
        };
        let Some(style) = &mut p.style else {
            continue;
        };
        let failed = |detail: String| PrepareError::StyleImage {
            step: number,
            path: style.path.clone(),
            detail,
        };
        let bytes = std::fs::read(&style.path).map_err(|e| failed(e.to_string()))?;
        let decoded = crate::codec::decode(&bytes, MAX_STYLE_MEGAPIXELS)
            .map_err(|e| failed(e.to_string()))?;
        style.picture = Some(Arc::new(manifest::Picture {
            digest: blake3::hash(&bytes).to_hex().to_string(),
            pixels: decoded.image,
        }));
    }
    Ok(())
}

/// The catalog for a manifest: built-in, overridden by `flag` or else by the manifest's own
/// `catalog:` key (read before validation, since the manifest's model names depend on it).
pub fn catalog_for(manifest_path: &Path, flag: Option<&Path>) -> Result<Catalog, PrepareError> {
    let file = flag
        .map(Path::to_owned)
        .or_else(|| manifest::catalog_key(manifest_path));
    let builtin = Catalog::builtin();
    match file {
        Some(path) => Ok(builtin.with_overrides(&path)?),
        None => Ok(builtin),
    }
}

/// The catalog and the validated manifest, with the manifest's prices applied to the catalog.
pub fn load(
    path: &Path,
    catalog_flag: Option<&Path>,
) -> Result<(Manifest, Arc<Catalog>), PrepareError> {
    let mut catalog = catalog_for(path, catalog_flag)?;
    let manifest = manifest::load(path, &catalog)?;
    for (id, price) in &manifest.prices {
        catalog
            .set_price(id, *price)
            .map_err(PrepareError::Prices)?;
    }
    Ok((manifest, Arc::new(catalog)))
}

/// The run's shared S3 client, when any input, the output or the report is in S3.
async fn connect_s3(manifest: &Manifest) -> Option<S3> {
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

/// Checks that the output's, the report's and the shared cache's buckets exist and are reachable (input prefixes
/// are checked by listing them). The message names the bucket and prefix.
async fn preflight(manifest: &Manifest, s3: Option<&S3>) -> Result<(), PrepareError> {
    let Some(s3) = s3 else { return Ok(()) };
    for (what, loc) in [
        ("output.dir", &manifest.output.dir),
        ("report", &manifest.report),
    ] {
        if let Place::S3(loc) = loc {
            s3.check_bucket(&loc.bucket)
                .await
                .map_err(|e| PrepareError::Preflight(format!("{what} {loc}: {e}")))?;
        }
    }
    if let Some(loc) = &manifest.shared.cache {
        s3.check_bucket(&loc.bucket)
            .await
            .map_err(|e| PrepareError::Preflight(format!("shared.cache {loc}: {e}")))?;
    }
    Ok(())
}

/// The region a run will use: the manifest's, else the environment's, else `us-east-1`.
pub fn region(manifest: &Manifest) -> String {
    manifest
        .aws
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".into())
}
