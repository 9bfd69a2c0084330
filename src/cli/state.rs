//! Which state folder `runs`, `report` and `cache gc` read when `--state` is not given.
//!
//! Manifests keep their state in `.retouch/` beside them (usually `pipelines/.retouch`), while
//! these commands are typed from the project root. So: `--state DIR` if given; else `.retouch`
//! in the current folder; else the one `*/.retouch` holding a state store one level down. Several
//! candidates, or none, is an error naming what to pass.

use std::path::{Path, PathBuf};

const DB: &str = "state.db";

/// The state folder to use, or a message saying why none could be chosen.
pub(super) fn find(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    let here = PathBuf::from(".retouch");
    if here.join(DB).is_file() {
        return Ok(here);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(".")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join(".retouch"))
                .filter(|dir| dir.join(DB).is_file())
                .map(|dir| dir.strip_prefix(".").map_or(dir.clone(), Path::to_owned))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(
            "no state folder here or one level down: pass --state DIR (the `.retouch` \
                  folder next to the manifest, or the manifest's `state:`)"
                .into(),
        ),
        _ => Err(format!(
            "several state folders: {}; pick one with --state DIR",
            found
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// [`find`], saying on stderr why when no folder can be chosen (the caller then exits 2).
pub(super) fn find_or_explain(explicit: Option<&Path>) -> Option<PathBuf> {
    find(explicit).map_err(|why| eprintln!("error: {why}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_folder_is_taken_as_is() {
        let dir = Path::new("/nowhere/.retouch");
        assert_eq!(find(Some(dir)).unwrap(), dir);
    }
}
