//! Model names in a manifest (`models:`, `limits.rpm`, `prices`) resolved against the catalog.
//!
//! Owns the rules for which models a step may list: `local` or image-editing catalog models that
//! can do the step's op, no duplicates, and no `local` beside remote models (that is what
//! `fallback: local` is for). Names are stored as canonical catalog ids.

use serde_yaml::Value;

use super::check::Checker;
use super::suggest;
use super::types::{ModelRef, Op};
use crate::catalog::{ModelEntry, ModelKind};

/// The reserved name of the built-in implementation.
const LOCAL: &str = ModelRef::LOCAL;

/// The canonical id of a catalog model named by alias or id, used as a mapping key at `path`;
/// unknown names are reported.
pub(super) fn canonical_id(ck: &mut Checker, name: &str, path: &str) -> Option<String> {
    match ck.catalog.resolve(name) {
        Some(entry) => Some(entry.id.clone()),
        None => {
            unknown_model(ck, name, path, None, true);
            None
        }
    }
}

/// `steps[i].models`: a non-empty list; `op` is `None` when the step's op was invalid, in which
/// case only the names are checked.
pub(super) fn step_models(
    ck: &mut Checker,
    v: &Value,
    path: &str,
    op: Option<Op>,
) -> Option<Vec<ModelRef>> {
    let items = ck.list(v, path)?;
    if items.is_empty() {
        let help = "list `local` or one or more catalog models, e.g. `models: [local]`".into();
        ck.error(path, format!("{path} must not be empty"), Some(help));
        return None;
    }
    let refs: Vec<Option<ModelRef>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| model_ref(ck, item, &format!("{path}[{i}]"), op))
        .collect();
    let refs: Vec<ModelRef> = refs.into_iter().collect::<Option<_>>()?;
    let no_duplicates = check_duplicates(ck, &refs, path);
    let not_mixed = check_local_alone(ck, &refs, path);
    (no_duplicates && not_mixed).then_some(refs)
}

fn model_ref(ck: &mut Checker, v: &Value, path: &str, op: Option<Op>) -> Option<ModelRef> {
    let name = ck.non_empty_string(v, path)?;
    if name == LOCAL {
        return Some(ModelRef::Local);
    }
    let Some(entry) = ck.catalog.resolve(name).cloned() else {
        unknown_model(ck, name, path, op, false);
        return None;
    };
    let Some(op) = op else {
        return Some(ModelRef::Remote(entry.id));
    };
    if entry.kind == ModelKind::TextUnderstanding {
        let message = format!("model `{name}` in {path} reads images but cannot edit them");
        ck.error(path, message, Some(models_for_help(ck, op)));
        return None;
    }
    if !entry.ops.contains(&op) {
        let message = format!("model `{name}` in {path} cannot do {op}{}", can_do(&entry));
        ck.error(path, message, Some(models_for_help(ck, op)));
        return None;
    }
    Some(ModelRef::Remote(entry.id))
}

/// ` (it can do: upscale)`, or nothing for a model without ops.
fn can_do(entry: &ModelEntry) -> String {
    if entry.ops.is_empty() {
        return String::new();
    }
    let ops: Vec<&str> = entry.ops.iter().map(|o| o.as_str()).collect();
    format!(" (it can do: {})", ops.join(", "))
}

fn models_for_help(ck: &Checker, op: Op) -> String {
    format!("models that can do {op}: {}", models_for(ck, op).join(", "))
}

/// `local` and the aliases of every catalog model that can do `op`.
fn models_for(ck: &Checker, op: Op) -> Vec<String> {
    let remote = ck
        .catalog
        .models_for(op)
        .into_iter()
        .map(|m| m.alias.clone());
    std::iter::once(LOCAL.to_owned()).chain(remote).collect()
}

/// Unknown model: did-you-mean over `local` and every alias; lists the models for `op` if known.
/// `is_key`: the name is a mapping key (`prices:`), not a list item.
fn unknown_model(ck: &mut Checker, name: &str, path: &str, op: Option<Op>, is_key: bool) {
    let aliases: Vec<String> = ck
        .catalog
        .entries()
        .iter()
        .map(|m| m.alias.clone())
        .collect();
    let valid = match op {
        Some(op) => models_for_help(ck, op),
        None => format!("known models: {}", aliases.join(", ")),
    };
    let candidates = std::iter::once(LOCAL).chain(aliases.iter().map(String::as_str));
    let help = suggest::help(name, candidates, valid);
    let message = format!("unknown model `{name}` in {path}");
    if is_key {
        ck.key_error(path, message, Some(help));
    } else {
        ck.error(path, message, Some(help));
    }
}

fn check_duplicates(ck: &mut Checker, refs: &[ModelRef], path: &str) -> bool {
    let mut ok = true;
    for (i, r) in refs.iter().enumerate() {
        if refs[..i].contains(r) {
            let item = format!("{path}[{i}]");
            ck.error(
                &item,
                format!("model `{r}` is listed twice in {path}"),
                Some("list each model once".into()),
            );
            ok = false;
        }
    }
    ok
}

fn check_local_alone(ck: &mut Checker, refs: &[ModelRef], path: &str) -> bool {
    let has_local = refs.iter().any(ModelRef::is_local);
    if !has_local || refs.len() == 1 || refs.iter().all(ModelRef::is_local) {
        return true;
    }
    let help = "list only remote models and add `fallback: local` (the default) to use the \
                built-in implementation when none of them can serve an image";
    ck.error(
        path,
        format!("{path} mixes `local` with remote models"),
        Some(help.into()),
    );
    false
}
