//! Async orchestration of a run: streaming images through their steps under a concurrency cap,
//! routing each step, running it on the right backend, writing results, and reporting rows as
//! images finish. Cancellation stops new images from starting; in-flight ones finish.
//!
//! The concurrency primitives for remote calls live in their own files: [`budget`] (reserve
//! before a call, settle after), [`rate_limit`] (per-model rpm), [`retry`] (backoff) and
//! [`health`] (per-model circuit breaker).

pub mod budget;
mod cache;
mod context;
pub(crate) mod cpu;
mod dry_run;
mod escalation;
pub mod health;
mod image_task;
mod outcome;
pub mod rate_limit;
mod refusals;
mod remote;
pub mod retry;
mod rows;
mod run;

pub use run::{RowSender, RunConfig, Scheduled, run};

#[cfg(test)]
mod boundaries {
    //! The scheduler's boundaries, kept by a test: no import cycle between its files, and no
    //! reach past the provider seam into request encoding, response decoding or image ops.

    use std::collections::{BTreeMap, BTreeSet};

    fn sources() -> BTreeMap<String, String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scheduler");
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect()
    }

    #[test]
    fn no_file_reaches_past_the_provider_seam() {
        for (name, text) in sources() {
            // Spelled in pieces so this file does not match itself.
            for banned in [
                concat!("providers", "::bedrock"),
                concat!("encode", "_request"),
                concat!("decode", "_response"),
                concat!("crate", "::ops"),
            ] {
                assert!(!text.contains(banned), "scheduler/{name}.rs uses {banned}");
            }
        }
    }

    #[test]
    fn files_import_each_other_without_cycles() {
        let files = sources();
        let deps: BTreeMap<&str, BTreeSet<&str>> = files
            .iter()
            .map(|(name, text)| {
                let uses = text
                    .split("super::")
                    .skip(1)
                    .filter_map(|rest| {
                        rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                    })
                    .filter(|dep| files.contains_key(*dep) && dep != name)
                    .collect();
                (name.as_str(), uses)
            })
            .collect();
        // Depth-first search for a path back to where it started.
        fn reaches<'a>(
            from: &'a str,
            to: &str,
            deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
            seen: &mut BTreeSet<&'a str>,
        ) -> bool {
            deps[from]
                .iter()
                .any(|&next| next == to || (seen.insert(next) && reaches(next, to, deps, seen)))
        }
        for name in deps.keys() {
            assert!(
                !reaches(name, name, &deps, &mut BTreeSet::new()),
                "scheduler/{name}.rs is part of an import cycle: {deps:?}"
            );
        }
    }
}
