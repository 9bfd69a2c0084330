//! Loading what a command needs: the model catalog (built-in, plus a user file and the
//! manifest's price overrides) and the validated manifest, printing diagnostics on failure.

use std::path::Path;
use std::sync::Arc;

use retouch::catalog::{Catalog, CatalogError};
use retouch::manifest::{self, Manifest};
use retouch::sources::Listing;

/// The catalog for a manifest: built-in, overridden by `flag` or else by the manifest's own
/// `catalog:` key (read before validation, since the manifest's model names depend on it).
pub fn catalog_for(manifest_path: &Path, flag: Option<&Path>) -> Result<Catalog, CatalogError> {
    let file = flag
        .map(Path::to_owned)
        .or_else(|| manifest::catalog_key(manifest_path));
    let builtin = Catalog::builtin();
    match file {
        Some(path) => builtin.with_overrides(&path),
        None => Ok(builtin),
    }
}

/// Loads the catalog and the manifest, printing every problem; `None` means exit code 2.
pub fn load(manifest_path: &Path, catalog_flag: Option<&Path>) -> Option<(Manifest, Arc<Catalog>)> {
    let mut catalog = match catalog_for(manifest_path, catalog_flag) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    let manifest = match manifest::load(manifest_path, &catalog) {
        Ok(m) => m,
        Err(errors) => {
            eprintln!("{errors}");
            return None;
        }
    };
    for (id, price) in &manifest.prices {
        if let Err(e) = catalog.set_price(id, *price) {
            eprintln!("error: prices: {e}");
            return None;
        }
    }
    Some((manifest, Arc::new(catalog)))
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

/// Connects to S3 when the manifest needs it, checks its buckets and prefixes, and lists the
/// inputs, printing the problem; `None` means exit code 2 (nothing processed).
pub async fn inputs(manifest: &Manifest) -> Option<(Option<retouch::s3::S3>, Listing)> {
    let s3 = super::s3::connect(manifest).await;
    if let Err(e) = super::s3::preflight(manifest, s3.as_ref()).await {
        eprintln!("error: {e}");
        return None;
    }
    match retouch::sources::list(manifest, s3.as_ref()).await {
        Ok(listing) => Some((s3, listing)),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// Plans the run and checks it would destroy none of the files it reads, printing warnings and
/// refusals; `None` means exit code 2 (nothing was created or written).
pub fn plan(
    manifest: Manifest,
    s3: Option<retouch::s3::S3>,
    listing: Listing,
) -> Option<retouch::plan::Plan> {
    let plan = retouch::plan::Plan::new(Arc::new(manifest), listing, s3);
    let m = &plan.manifest;
    let writes = retouch::plan::overwrite::Writes {
        report: &m.report,
        state: &m.state,
    };
    let findings = retouch::plan::overwrite::check(&plan, writes);
    for warning in &findings.warnings {
        eprintln!("warning: {warning}");
    }
    if findings.refusals.is_empty() {
        return Some(plan);
    }
    eprintln!(
        "error: {}: this run would destroy files it reads; nothing was done",
        m.path.display()
    );
    for refusal in &findings.refusals {
        eprintln!("  {refusal}");
    }
    None
}
