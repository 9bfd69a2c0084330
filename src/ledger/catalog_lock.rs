//! The catalog lock: which remote models (and at what price) a pipeline could route to when it
//! ran, and how today's manifest and catalog differ from that.
//!
//! Every run records its lock in the state store; `retouch check` compares the last one with what
//! a run would use now and explains each difference (a model past its end of life, a price
//! change, a model no longer listed), so a rerun never routes differently or pays differently
//! without the user having been told. An entry is one model doing one op, priced at a 1024×1024
//! image (the reference size of every catalog price tier).

use std::collections::BTreeMap;
use std::fmt;

use crate::catalog::{Catalog, Date, Lifecycle};
use crate::manifest::Manifest;
use crate::money::Usd;

/// The size lock prices are quoted at.
const REFERENCE_SIZE: (u32, u32) = (1024, 1024);

/// `model-id/op` → price per image at the reference size, for every remote model the manifest
/// permits that is not past its end of life on `today`.
pub fn entries(manifest: &Manifest, catalog: &Catalog, today: Date) -> Vec<(String, Usd)> {
    let mut out = BTreeMap::new();
    for step in &manifest.steps {
        for id in step.remote_models() {
            let Some(entry) = catalog.resolve(id) else {
                continue;
            };
            if matches!(entry.lifecycle_on(today), Lifecycle::PastEndOfLife { .. }) {
                continue;
            }
            let (w, h) = REFERENCE_SIZE;
            if let Some(price) = entry.price_for(step.op, w, h) {
                out.insert(format!("{}/{}", entry.id, step.op.as_str()), price);
            }
        }
    }
    out.into_iter().collect()
}

/// One difference between the last run's lock and now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The last run could use this model for this op; a run now would not.
    Dropped { entry: String, why: String },
    /// A run now could use a model the last run could not.
    Added { entry: String, price: Usd },
    /// Same model and op, different price per image.
    Repriced { entry: String, was: Usd, now: Usd },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Dropped { entry, why } => write!(f, "{entry}: no longer routable ({why})"),
            Drift::Added { entry, price } => {
                write!(f, "{entry}: newly routable at ${price} per image")
            }
            Drift::Repriced { entry, was, now } => {
                write!(f, "{entry}: price changed from ${was} to ${now} per image")
            }
        }
    }
}

/// The differences between `last` (a recorded lock) and what `manifest` and `catalog` give today.
pub fn drift(
    last: &[(String, Usd)],
    manifest: &Manifest,
    catalog: &Catalog,
    today: Date,
) -> Vec<Drift> {
    let now: BTreeMap<_, _> = entries(manifest, catalog, today).into_iter().collect();
    let was: BTreeMap<_, _> = last.iter().cloned().collect();
    let mut out = Vec::new();
    for (entry, &old) in &was {
        match now.get(entry) {
            Some(&new) if new != old => out.push(Drift::Repriced {
                entry: entry.clone(),
                was: old,
                now: new,
            }),
            Some(_) => {}
            None => out.push(Drift::Dropped {
                entry: entry.clone(),
                why: why_dropped(entry, manifest, catalog, today),
            }),
        }
    }
    for (entry, &price) in &now {
        if !was.contains_key(entry) {
            out.push(Drift::Added {
                entry: entry.clone(),
                price,
            });
        }
    }
    out
}

fn why_dropped(entry: &str, manifest: &Manifest, catalog: &Catalog, today: Date) -> String {
    let (id, op) = entry.rsplit_once('/').unwrap_or((entry, ""));
    let Some(model) = catalog.resolve(id) else {
        return "the catalog no longer has this model".into();
    };
    if let Lifecycle::PastEndOfLife { eol } = model.lifecycle_on(today) {
        return match eol {
            Some(d) => format!("end of life since {d}"),
            None => "retired".into(),
        };
    }
    let listed = manifest
        .steps
        .iter()
        .any(|s| s.op.as_str() == op && s.remote_models().any(|r| r == model.id));
    if !listed {
        return format!("no `{op}` step lists it any more");
    }
    "the catalog no longer prices it for this op".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use std::path::Path;

    const NOVA_BG: &str = "amazon.nova-canvas-v1:0/remove-bg";

    fn manifest(models: &str) -> Manifest {
        let text = format!(
            "version: 1\nname: t\ninputs: [a/*.png]\noutput: {{ dir: out }}\nsteps:\n  - op: remove-bg\n    models: [{models}]\n"
        );
        crate::manifest::parse(&text, Path::new("p/t.yaml"), &Catalog::builtin()).unwrap()
    }

    #[test]
    fn end_of_life_and_new_models_are_explained() {
        let catalog = Catalog::builtin();
        let before = Date::new(2026, 1, 15).unwrap();
        let after = Date::new(2026, 11, 22).unwrap();
        let m = manifest("nova-canvas");
        let lock = entries(&m, &catalog, before);
        assert_eq!(lock.len(), 1);
        assert_eq!(lock[0].0, NOVA_BG);
        assert!(drift(&lock, &m, &catalog, before).is_empty());
        let d = drift(&lock, &m, &catalog, after);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].to_string().contains("end of life since 2026-09-30"),
            "{}",
            d[0]
        );
        let m2 = manifest("nova-canvas, stability-remove-bg");
        let d = drift(&lock, &m2, &catalog, before);
        assert!(matches!(&d[..], [Drift::Added { entry, .. }] if entry.starts_with("stability.")));
        let d = drift(&lock, &manifest("stability-remove-bg"), &catalog, before);
        assert!(
            d.iter()
                .any(|x| x.to_string().contains("no `remove-bg` step lists it"))
        );
    }
}
