//! Checks for `steps:`: each step's op, models, fallback, shared prompt settings and the
//! parameters of its op.
//!
//! Owns which parameter belongs to which op, so a parameter on the wrong op is reported by name.

use serde_yaml::Value;

use super::check::{Checker, Fields, FloatRange};
use super::types::{
    Escalate, Fallback, FixLightingParams, FrameParams, GenerateParams, Grader, LocalMethod,
    MaskRegion, MaskedParams, ModelRef, NewBackground, Op, OpParams, OutpaintParams,
    RemoveBgParams, ReplaceBgParams, Rgb, Step, StyleImage, UpscaleParams, UpscaleTarget,
    VariationParams,
};
use super::{model_names, suggest};
use crate::marketplace::Preset;
use crate::ops::frame::{Backdrop, FrameOptions};
use crate::ops::outpaint::Margins;

/// Every key a step may have, in the order the docs list them.
pub(super) const STEP_KEYS: &[&str] = &[
    "op",
    "models",
    "fallback",
    "prompt",
    "negative_prompt",
    "similarity",
    "escalate",
    "qa",
    "background",
    "local_model",
    "strength",
    "factor",
    "min_side",
    "max_side",
    "sharpen",
    "preset",
    "aspect",
    "fill",
    "size",
    "backdrop",
    "background_image",
    "shadow",
    "left",
    "right",
    "up",
    "down",
    "mask_prompt",
    "mask",
    "style_image",
];

/// Op-specific parameters and the op that takes each.
const OP_PARAMS: &[(&str, Op)] = &[
    ("background", Op::RemoveBg),
    ("local_model", Op::RemoveBg),
    ("strength", Op::FixLighting),
    ("factor", Op::Upscale),
    ("min_side", Op::Upscale),
    ("max_side", Op::Upscale),
    ("sharpen", Op::Upscale),
    ("background", Op::Frame),
    ("preset", Op::Frame),
    ("aspect", Op::Frame),
    ("fill", Op::Frame),
    ("size", Op::Frame),
    ("backdrop", Op::Frame),
    ("background", Op::ReplaceBg),
    ("background_image", Op::ReplaceBg),
    ("shadow", Op::ReplaceBg),
    ("aspect", Op::Outpaint),
    ("left", Op::Outpaint),
    ("right", Op::Outpaint),
    ("up", Op::Outpaint),
    ("down", Op::Outpaint),
    ("mask_prompt", Op::Inpaint),
    ("mask_prompt", Op::Erase),
    ("mask", Op::Inpaint),
    ("mask", Op::Erase),
    ("aspect", Op::Generate),
    ("style_image", Op::Variation),
];

const MAX_PROMPT_CHARS: usize = 1024;

/// `steps:`: a non-empty list of steps, every one checked.
pub(super) fn steps(ck: &mut Checker, fields: &Fields) -> Option<Vec<Step>> {
    let v = ck.required(fields, "steps")?;
    let items = ck.list(v, "steps")?;
    if items.is_empty() {
        let help =
            "add at least one step, e.g. `- { op: upscale, models: [local], factor: 2 }`".into();
        ck.error("steps", "steps must not be empty".into(), Some(help));
        return None;
    }
    let steps: Vec<Option<Step>> = items
        .iter()
        .enumerate()
        .map(|(i, s)| step(ck, s, i))
        .collect();
    steps.into_iter().collect()
}

fn step(ck: &mut Checker, v: &Value, index: usize) -> Option<Step> {
    let path = format!("steps[{index}]");
    let f = ck.fields(v, &path, STEP_KEYS)?;
    let op = ck.required(&f, "op").and_then(|v| op(ck, v, &f.path("op")));
    let models = ck
        .required(&f, "models")
        .and_then(|v| model_names::step_models(ck, v, &f.path("models"), op));
    let fallback = fallback(ck, &f);
    let prompt = opt_prompt(ck, &f, "prompt");
    let negative_prompt = opt_prompt(ck, &f, "negative_prompt");
    let similarity = opt_float(ck, &f, "similarity", FloatRange::inclusive(0.2, 1.0));
    let params = op.and_then(|op| params(ck, &f, op));
    let escalate = escalate(ck, &f, op, models.as_deref());
    let grader = grader(ck, &f);
    if let (Some(op), Some(models), Some(fallback)) = (op, &models, fallback)
        && !op.has_local()
    {
        let local_named = models.contains(&ModelRef::Local);
        if local_named || fallback == Fallback::Local {
            let (at, message) = if local_named {
                (
                    f.path("models"),
                    format!("{op} has no local implementation; {path}.models lists `local`"),
                )
            } else {
                (
                    path.clone(),
                    format!("{path} ({op}) has no local implementation to fall back to"),
                )
            };
            let help =
                "list remote models that can do it and set `fallback: skip` (leave the image \
                        as it is) or `fallback: fail`"
                    .to_owned();
            ck.key_error(&at, message, Some(help));
            return None;
        }
        if op == Op::Generate && prompt.as_ref().is_some_and(Option::is_some) {
            let message = format!(
                "{path} (generate) takes its prompts from the prompts file in `inputs`, not from `prompt`"
            );
            let help = "list a prompts file (CSV, YAML or JSONL with `id` and `prompt` columns) \
                        in `inputs`, e.g. `inputs: [prompts.csv]`; `negative_prompt` and \
                        `aspect` here are defaults for rows without their own"
                .to_owned();
            ck.key_error(&f.path("prompt"), message, Some(help));
            return None;
        }
        if matches!(op, Op::Inpaint | Op::Variation) && prompt.as_ref().is_some_and(Option::is_none)
        {
            let message = format!("{path} ({op}) needs `prompt`: what the model should paint");
            ck.key_error(&path, message, None);
            return None;
        }
    }
    if let (Some(OpParams::Masked(p)), Some(models), Some(fallback)) = (&params, &models, fallback)
        && !masked_models(ck, &path, op?, p, models, fallback)
    {
        return None;
    }
    if let (Some(OpParams::Variation(p)), Some(models)) = (&params, &models)
        && !style_models(ck, &path, p, models)
    {
        return None;
    }
    if let (Some(OpParams::ReplaceBg(p)), Some(models), Some(fallback)) =
        (&params, &models, fallback)
    {
        let remote = models.iter().any(|m| !m.is_local());
        if remote && prompt.as_ref().is_some_and(Option::is_none) {
            let message = format!(
                "{path} (replace-bg) names remote models, which paint the new background from `prompt`"
            );
            let help = "add e.g. `prompt: \"on a light oak table in a bright kitchen\"`, or use \
                        `models: [local]` with `background`"
                .to_owned();
            ck.key_error(&path, message, Some(help));
            return None;
        }
        let local = models.contains(&ModelRef::Local) || fallback == Fallback::Local;
        if local && p.behind.is_none() {
            let message = format!(
                "{path} (replace-bg) may run locally, which needs `background` or `background_image`"
            );
            let help = "add `background: \"#FFFFFF\"` or `background_image: backdrops/oak.jpg`; \
                        or, for remote models painting a scene from `prompt`, set `fallback: skip` \
                        or `fail`"
                .to_owned();
            ck.key_error(&path, message, Some(help));
            return None;
        }
    }
    Some(Step {
        index,
        op: op?,
        models: models?,
        fallback: fallback?,
        params: params?,
        prompt: prompt?,
        negative_prompt: negative_prompt?,
        similarity: similarity?.map(|s| s as f32),
        escalate: escalate?,
        grader: grader?,
    })
}

/// `qa: { model, below, rubric }`: a catalog model that reads images and is priced per token.
fn grader(ck: &mut Checker, f: &Fields) -> Option<Option<Grader>> {
    let Some(v) = f.get("qa") else {
        return Some(None);
    };
    let path = f.path("qa");
    let g = ck.fields(v, &path, &["model", "below", "rubric"])?;
    let model_path = g.path("model");
    let model = ck.required(&g, "model").and_then(|v| {
        let name = ck.non_empty_string(v, &model_path)?.to_owned();
        let graders: Vec<String> = ck
            .catalog
            .entries()
            .iter()
            .filter(|m| m.tokens.is_some())
            .map(|m| m.alias.clone())
            .collect();
        match ck.catalog.resolve(&name) {
            Some(entry) if entry.tokens.is_some() => Some(entry.id.clone()),
            found => {
                let why = if found.is_some() {
                    "cannot grade images (no per-token prices in the catalog)"
                } else {
                    "is not in the catalog"
                };
                let help = suggest::help(
                    &name,
                    graders.iter().map(String::as_str),
                    format!("models that can grade: {}", graders.join(", ")),
                );
                ck.error(
                    &model_path,
                    format!("model `{name}` in {model_path} {why}"),
                    Some(help),
                );
                None
            }
        }
    });
    let below = match g.get("below") {
        None => Some(None),
        Some(v) => {
            let range = FloatRange {
                min: 0.0,
                min_inclusive: false,
                max: 1.0,
            };
            ck.float(v, &g.path("below"), range).map(|b| Some(b as f32))
        }
    };
    let rubric = opt_prompt(ck, &g, "rubric");
    Some(Some(Grader {
        model: model?,
        below: below?,
        rubric: rubric?,
    }))
}

/// `escalate: { below, to }`: a pass mark in (0, 1] and the remote models that may redo the
/// step, each able to do the op and not already one of the step's `models`.
fn escalate(
    ck: &mut Checker,
    f: &Fields,
    op: Option<Op>,
    models: Option<&[ModelRef]>,
) -> Option<Option<Escalate>> {
    let Some(v) = f.get("escalate") else {
        return Some(None);
    };
    let path = f.path("escalate");
    let e = ck.fields(v, &path, &["below", "to"])?;
    let range = FloatRange {
        min: 0.0,
        min_inclusive: false,
        max: 1.0,
    };
    let below = ck
        .required(&e, "below")
        .and_then(|v| ck.float(v, &e.path("below"), range));
    let to_path = e.path("to");
    let to = ck
        .required(&e, "to")
        .and_then(|v| model_names::step_models(ck, v, &to_path, op));
    let (below, to) = (below?, to?);
    let mut ids = Vec::with_capacity(to.len());
    let mut ok = true;
    for (i, model) in to.into_iter().enumerate() {
        let at = format!("{to_path}[{i}]");
        match model {
            ModelRef::Local => {
                let message = format!("{at} is `local`, but escalation redoes a step remotely");
                let help = "list remote models here; `local` belongs in `models:` (it runs \
                            first, free) or `fallback: local`"
                    .to_owned();
                ck.error(&at, message, Some(help));
                ok = false;
            }
            ModelRef::Remote(id)
                if models.is_some_and(|m| m.contains(&ModelRef::Remote(id.clone()))) =>
            {
                let message = format!("{at} names `{id}`, which is already in the step's models");
                let help = "a model redoing its own result would pay twice for the same answer; \
                            remove it from one of the lists"
                    .to_owned();
                ck.error(&at, message, Some(help));
                ok = false;
            }
            ModelRef::Remote(id) => ids.push(id),
        }
    }
    ok.then_some(Some(Escalate {
        below: below as f32,
        to: ids,
    }))
}

fn op(ck: &mut Checker, v: &Value, path: &str) -> Option<Op> {
    let s = ck.string(v, path)?;
    let op = Op::parse(s);
    if op.is_none() {
        let names = Op::ALL.map(Op::as_str);
        let valid = format!("valid ops: {}", names.join(", "));
        let help = suggest::help(s, names, valid);
        ck.error(path, format!("unknown op `{s}` in {path}"), Some(help));
    }
    op
}

fn fallback(ck: &mut Checker, f: &Fields) -> Option<Fallback> {
    let Some(v) = f.get("fallback") else {
        return Some(Fallback::default());
    };
    let path = f.path("fallback");
    match ck.string(v, &path)? {
        "local" => Some(Fallback::Local),
        "skip" => Some(Fallback::Skip),
        "fail" => Some(Fallback::Fail),
        other => {
            let valid = ["local", "skip", "fail"];
            let help = suggest::help(other, valid, "valid values: local, skip, fail".into());
            ck.error(
                &path,
                format!("unknown fallback `{other}` in {path}"),
                Some(help),
            );
            None
        }
    }
}

/// An optional prompt of 1..=1024 characters.
fn opt_prompt(ck: &mut Checker, f: &Fields, key: &str) -> Option<Option<String>> {
    let Some(v) = f.get(key) else {
        return Some(None);
    };
    let path = f.path(key);
    let s = ck.non_empty_string(v, &path)?;
    let n = s.chars().count();
    if n > MAX_PROMPT_CHARS {
        let message =
            format!("{path} is {n} characters long, but must be at most {MAX_PROMPT_CHARS}");
        ck.error(&path, message, None);
        return None;
    }
    Some(Some(s.to_owned()))
}

fn opt_float(ck: &mut Checker, f: &Fields, key: &str, range: FloatRange) -> Option<Option<f64>> {
    match f.get(key) {
        None => Some(None),
        Some(v) => ck.float(v, &f.path(key), range).map(Some),
    }
}

/// The parameters of `op`; parameters of other ops are reported.
fn params(ck: &mut Checker, f: &Fields, op: Op) -> Option<OpParams> {
    let misplaced = check_misplaced(ck, f, op);
    let params = match op {
        Op::RemoveBg => {
            let background = background(ck, f);
            let local_model = local_model(ck, f);
            Some(OpParams::RemoveBg(RemoveBgParams {
                background: background?,
                local_model: local_model?,
            }))
        }
        Op::FixLighting => opt_float(ck, f, "strength", FloatRange::UNIT).map(|s| {
            OpParams::FixLighting(FixLightingParams {
                strength: s.unwrap_or(0.8) as f32,
            })
        }),
        Op::Upscale => upscale(ck, f).map(OpParams::Upscale),
        Op::Frame => frame(ck, f).map(OpParams::Frame),
        Op::ReplaceBg => replace_bg(ck, f).map(OpParams::ReplaceBg),
        Op::Outpaint => outpaint(ck, f).map(OpParams::Outpaint),
        Op::Inpaint | Op::Erase => masked(ck, f, op).map(OpParams::Masked),
        Op::Variation => {
            let style = match f.get("style_image") {
                None => Some(None),
                Some(v) => {
                    let path = f.path("style_image");
                    ck.non_empty_string(v, &path).map(|s| {
                        Some(StyleImage {
                            path: super::normalize(&ck.base_dir.join(s)),
                            picture: None,
                        })
                    })
                }
            };
            style.map(|style| OpParams::Variation(VariationParams { style }))
        }
        Op::Generate => {
            let aspect = match f.get("aspect") {
                None => Some((1, 1)),
                Some(v) => aspect(ck, v, &f.path("aspect")),
            };
            aspect.map(|aspect| OpParams::Generate(GenerateParams { aspect, seed: None }))
        }
    };
    params.filter(|_| misplaced)
}

/// An inpaint or erase step's models must find the region the way the step gives it: by
/// description (catalog `region: described`) or from a mask (`region: mask`); the local fill
/// needs a mask file.
fn masked_models(
    ck: &mut Checker,
    path: &str,
    op: Op,
    p: &MaskedParams,
    models: &[ModelRef],
    fallback: Fallback,
) -> bool {
    let (wanted, key) = match &p.region {
        MaskRegion::Described(_) => ("described", "mask_prompt"),
        MaskRegion::File { .. } => ("mask", "mask"),
    };
    let local = models.contains(&ModelRef::Local) || fallback == Fallback::Local;
    if local && wanted == "described" {
        let message = format!(
            "{path} may run locally, but the local fill needs a mask file, not `mask_prompt`"
        );
        let help = "give `mask: ../masks/{path}.png`, or list remote models that find a described \
                    region (stability-search-replace) with `fallback: skip` or `fail`"
            .to_owned();
        ck.key_error(path, message, Some(help));
        return false;
    }
    let mut ok = true;
    for entry in remote_entries(ck, models) {
        if let Some(takes) = region_mismatch(&entry, op, wanted) {
            let alias = entry.alias.clone();
            let message = format!(
                "{path}: {alias} finds the region from {takes}, but this step gives `{key}`"
            );
            let others: Vec<String> = ck
                .catalog
                .entries()
                .iter()
                .filter(|e| e.spec(op).and_then(|s| s.params.region.as_deref()) == Some(wanted))
                .map(|e| e.alias.clone())
                .collect();
            let help = format!("models that take `{key}`: {}", others.join(", "));
            ck.key_error(path, message, Some(help));
            ok = false;
        }
    }
    ok
}

/// The catalog entries of a step's remote models (a name the catalog does not know is reported
/// where the models are read).
fn remote_entries(ck: &Checker, models: &[ModelRef]) -> Vec<crate::catalog::ModelEntry> {
    models
        .iter()
        .filter_map(|m| match m {
            ModelRef::Remote(id) => ck.catalog.resolve(id).cloned(),
            ModelRef::Local => None,
        })
        .collect()
}

/// A variation step gives `style_image` exactly when its models take one: a model that needs a
/// style picture (catalog `style_field`) cannot run without it, and one that takes none would
/// silently ignore it.
fn style_models(ck: &mut Checker, path: &str, p: &VariationParams, models: &[ModelRef]) -> bool {
    let takers: Vec<String> = ck
        .catalog
        .entries()
        .iter()
        .filter(|e| {
            e.spec(Op::Variation)
                .is_some_and(|s| s.params.style_field.is_some())
        })
        .map(|e| e.alias.clone())
        .collect();
    let mut ok = true;
    for entry in remote_entries(ck, models) {
        let takes = entry
            .spec(Op::Variation)
            .is_some_and(|s| s.params.style_field.is_some());
        let alias = entry.alias.clone();
        match (takes, p.style.is_some()) {
            (true, false) => {
                let message = format!("{path}: {alias} needs `style_image`, the look to take");
                let help =
                    "add e.g. `style_image: styles/brand-look.jpg` (relative to the manifest's \
                            folder), or list models that vary without one \
                            (stability-control-structure, stability-style-guide)"
                        .to_owned();
                ck.key_error(path, message, Some(help));
                ok = false;
            }
            (false, true) => {
                let message = format!(
                    "{path}: {alias} takes no style picture and would ignore `style_image`"
                );
                let help = format!(
                    "models that take `style_image`: {}; or remove `style_image`",
                    takers.join(", ")
                );
                ck.key_error(path, message, Some(help));
                ok = false;
            }
            _ => {}
        }
    }
    ok
}

/// What `entry` takes instead of `wanted` for `op` (`None`: it takes `wanted`).
fn region_mismatch(
    entry: &crate::catalog::ModelEntry,
    op: Op,
    wanted: &str,
) -> Option<&'static str> {
    let takes = entry.spec(op).and_then(|s| s.params.region.as_deref());
    match takes {
        Some(t) if t == wanted => None,
        _ if wanted == "mask" => Some("a description (`mask_prompt`)"),
        _ => Some("a mask file (`mask`)"),
    }
}

/// `mask_prompt` (a description the model finds) or `mask` (a mask file per image: a path
/// template with `{path}`, the input's path below its glob base without extension, or `{stem}`,
/// its file name without extension); exactly one.
fn masked(ck: &mut Checker, f: &Fields, op: Op) -> Option<MaskedParams> {
    let described = opt_prompt(ck, f, "mask_prompt")?;
    let template = match f.get("mask") {
        None => None,
        Some(v) => {
            let path = f.path("mask");
            let t = ck.non_empty_string(v, &path)?.to_owned();
            if !t.contains("{path}") && !t.contains("{stem}") {
                let message = format!(
                    "{path} `{t}` names one file for every image; it needs `{{path}}` or `{{stem}}`"
                );
                let help = "e.g. `mask: ../masks/{path}.png` (a/1.jpg -> ../masks/a/1.png)";
                ck.key_error(&path, message, Some(help.into()));
                return None;
            }
            Some(t)
        }
    };
    let region = match (described, template) {
        (Some(text), None) => MaskRegion::Described(text),
        (None, Some(template)) => MaskRegion::File {
            template,
            mask: None,
        },
        (Some(_), Some(_)) => {
            let message = format!(
                "{} ({op}) sets both `mask_prompt` and `mask`; use one",
                f.own_path()
            );
            ck.key_error(f.own_path(), message, None);
            return None;
        }
        (None, None) => {
            let message = format!("{} ({op}) needs `mask_prompt` or `mask`", f.own_path());
            let help =
                "describe what to change in each image (`mask_prompt: \"the price sticker\"`), \
                        or give a mask file per image (`mask: ../masks/{path}.png`, white = change)"
                    .to_owned();
            ck.key_error(f.own_path(), message, Some(help));
            return None;
        }
    };
    Some(MaskedParams { region })
}

/// Reports every parameter of another op; true when there is none.
fn check_misplaced(ck: &mut Checker, f: &Fields, op: Op) -> bool {
    let mut ok = true;
    for key in f.keys() {
        let owners: Vec<&str> = OP_PARAMS
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, o)| o.as_str())
            .collect();
        if owners.is_empty() || owners.contains(&op.as_str()) {
            continue;
        }
        let owner = owners.join(" and ");
        let path = f.path(key);
        let message =
            format!("`{key}` in {path} is not a parameter of {op} steps; only {owner} takes it");
        let help = format!(
            "remove `{key}` from {}, or move it to a {owner} step",
            f.own_path()
        );
        ck.key_error(&path, message, Some(help));
        ok = false;
    }
    ok
}

/// `local_model:` of a remove-bg step: `auto` (the best installed network, else the classical
/// method), `classical`, or a network's name from the catalog.
fn local_model(ck: &mut Checker, f: &Fields) -> Option<LocalMethod> {
    let Some(v) = f.get("local_model") else {
        return Some(LocalMethod::Auto);
    };
    let path = f.path("local_model");
    let s = ck.non_empty_string(v, &path)?;
    match s {
        "auto" => return Some(LocalMethod::Auto),
        "classical" => return Some(LocalMethod::Classical),
        _ => {}
    }
    if crate::catalog::local_model(s).is_some() {
        return Some(LocalMethod::Network(s.to_owned()));
    }
    let mut valid = vec!["auto", "classical"];
    valid.extend(
        crate::catalog::local_models()
            .iter()
            .map(|m| m.name.as_str()),
    );
    let help = suggest::help(
        s,
        valid.iter().copied(),
        format!("valid: {}", valid.join(", ")),
    );
    ck.error(
        &path,
        format!("unknown local model `{s}` in {path}"),
        Some(help),
    );
    None
}

fn background(ck: &mut Checker, f: &Fields) -> Option<Option<Rgb>> {
    let Some(v) = f.get("background") else {
        return Some(None);
    };
    let path = f.path("background");
    let example =
        "write the colour in quotes as \"#RRGGBB\" or \"#RGB\", e.g. `background: \"#FFFFFF\"`";
    if v.is_null() {
        // `background: #FFFFFF` unquoted is a YAML comment, leaving nothing.
        let message = format!("{path} is empty (an unquoted `#` starts a YAML comment)");
        ck.key_error(&path, message, Some(example.into()));
        return None;
    }
    let s = ck.string(v, &path)?;
    match parse_colour(s) {
        Some(rgb) => Some(Some(rgb)),
        None => {
            ck.error(
                &path,
                format!("invalid colour `{s}` in {path}"),
                Some(example.into()),
            );
            None
        }
    }
}

/// `#RGB` or `#RRGGBB`, any case.
pub(super) fn parse_colour(s: &str) -> Option<Rgb> {
    let hex = s.strip_prefix('#')?;
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |i: usize| u8::from_str_radix(&hex[i..=i], 16).ok();
    match hex.len() {
        3 => Some(Rgb([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17])),
        6 => {
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
            Some(Rgb([byte(0)?, byte(2)?, byte(4)?]))
        }
        _ => None,
    }
}

/// `outpaint`: `left`/`right`/`up`/`down` in pixels (at least one above 0), or `aspect`.
fn outpaint(ck: &mut Checker, f: &Fields) -> Option<OutpaintParams> {
    let sides = ["left", "right", "up", "down"];
    let given: Vec<&str> = sides
        .iter()
        .copied()
        .filter(|k| f.get(k).is_some())
        .collect();
    let help = "e.g. `left: 200` and `right: 200`, or `aspect: \"1:1\"`".to_owned();
    match (f.get("aspect"), given.is_empty()) {
        (Some(_), false) => {
            let message = format!(
                "{} sets both aspect and {}; use one",
                f.own_path(),
                given.join("/")
            );
            ck.key_error(&f.path("aspect"), message, Some(help));
            None
        }
        (Some(v), true) => {
            aspect(ck, v, &f.path("aspect")).map(|(w, h)| OutpaintParams::Aspect(w, h))
        }
        (None, true) => {
            let step = f.own_path();
            let message = format!(
                "{step} (outpaint) needs `aspect` or at least one of left, right, up, down"
            );
            ck.key_error(step, message, Some(help));
            None
        }
        (None, false) => {
            let mut amounts = [0u32; 4];
            let mut ok = true;
            for (i, key) in sides.iter().enumerate() {
                if let Some(v) = f.get(key) {
                    match ck.int(v, &f.path(key), 0, 4096) {
                        Some(n) => amounts[i] = n as u32,
                        None => ok = false,
                    }
                }
            }
            if ok && amounts == [0; 4] {
                let step = f.own_path();
                ck.key_error(
                    step,
                    format!("{step} (outpaint) extends by nothing"),
                    Some(help),
                );
                return None;
            }
            ok.then_some(OutpaintParams::Margins(Margins {
                left: amounts[0],
                right: amounts[1],
                up: amounts[2],
                down: amounts[3],
            }))
        }
    }
}

/// `replace-bg`: at most one of `background` (colour) and `background_image` (path), and
/// `shadow`. Whether the step needs one (it runs locally) is checked with its models.
fn replace_bg(ck: &mut Checker, f: &Fields) -> Option<ReplaceBgParams> {
    let colour = background(ck, f);
    let image = match f.get("background_image") {
        None => Some(None),
        Some(v) => {
            let path = f.path("background_image");
            ck.non_empty_string(v, &path)
                .map(|s| Some(super::normalize(&ck.base_dir.join(s))))
        }
    };
    let shadow = opt_float(ck, f, "shadow", FloatRange::UNIT);
    let (colour, image, shadow) = (colour?, image?, shadow?);
    let behind = match (colour, image) {
        (Some(_), Some(_)) => {
            let path = f.path("background_image");
            let message = format!(
                "{} sets both background and background_image; use one",
                f.own_path()
            );
            ck.key_error(&path, message, None);
            return None;
        }
        (Some(c), None) => Some(NewBackground::Colour(c)),
        (None, Some(path)) => Some(NewBackground::Image { path, digest: None }),
        (None, None) => None,
    };
    Some(ReplaceBgParams {
        behind,
        shadow: shadow.unwrap_or(0.0) as f32,
    })
}

/// `frame`: `preset:` and/or explicit `aspect`, `fill`, `size`, `background`, `backdrop`.
/// Explicit keys refine a preset but may not break its rules.
fn frame(ck: &mut Checker, f: &Fields) -> Option<FrameParams> {
    let preset = match f.get("preset") {
        None => Some(None),
        Some(v) => {
            let path = f.path("preset");
            ck.string(v, &path).and_then(|s| match Preset::parse(s) {
                Some(p) => Some(Some(p)),
                None => {
                    let names = Preset::ALL.map(Preset::as_str);
                    let help = suggest::help(s, names, format!("presets: {}", names.join(", ")));
                    ck.error(&path, format!("unknown preset `{s}` in {path}"), Some(help));
                    None
                }
            })
        }
    };
    let aspect = match f.get("aspect") {
        None => Some(None),
        Some(v) => aspect(ck, v, &f.path("aspect")).map(Some),
    };
    let fill_range = FloatRange {
        min: 0.1,
        min_inclusive: true,
        max: 1.0,
    };
    let fill = opt_float(ck, f, "fill", fill_range);
    let size = match f.get("size") {
        None => Some(None),
        Some(v) => ck
            .int(v, &f.path("size"), 64, 10_000)
            .map(|n| Some(n as u32)),
    };
    let background = background(ck, f);
    let backdrop = match f.get("backdrop") {
        None => Some(None),
        Some(v) => {
            let path = f.path("backdrop");
            match ck.string(v, &path)? {
                "cut" => Some(Some(Backdrop::Cut)),
                "keep" => Some(Some(Backdrop::Keep)),
                other => {
                    let help = suggest::help(other, ["cut", "keep"], "valid: cut, keep".into());
                    ck.error(
                        &path,
                        format!("unknown backdrop `{other}` in {path}"),
                        Some(help),
                    );
                    None
                }
            }
        }
    };
    let (preset, aspect, fill, size, background, backdrop) =
        (preset?, aspect?, fill?, size?, background?, backdrop?);
    let Some(preset) = preset else {
        let missing: Vec<&str> = [("aspect", aspect.is_none()), ("size", size.is_none())]
            .into_iter()
            .filter_map(|(k, m)| m.then_some(k))
            .collect();
        if !missing.is_empty() {
            let step = f.own_path();
            let message = format!(
                "{step} (frame) needs `preset` or explicit {}",
                missing.join(" and ")
            );
            let help =
                "e.g. `preset: amazon-main`, or `aspect: \"4:5\"`, `size: 2000`, `fill: 0.85`"
                    .to_owned();
            ck.key_error(step, message, Some(help));
            return None;
        }
        return Some(FrameParams {
            preset: None,
            options: FrameOptions {
                aspect: aspect?,
                fill: fill.unwrap_or(0.85) as f32,
                size: size?,
                background: background.map_or([255; 3], |c| c.0),
                backdrop: backdrop.unwrap_or_default(),
            },
        });
    };
    let d = preset.frame();
    let options = FrameOptions {
        aspect: aspect.unwrap_or(d.aspect),
        fill: fill.map_or(d.fill, |v| v as f32),
        size: size.unwrap_or(d.size),
        background: background.map_or(d.background, |c| c.0),
        backdrop: backdrop.unwrap_or_default(),
    };
    let ok = within_preset(ck, f, preset, &options);
    ok.then_some(FrameParams {
        preset: Some(preset),
        options,
    })
}

/// Reports every explicit key that would make results break `preset`'s rules.
fn within_preset(ck: &mut Checker, f: &Fields, preset: Preset, o: &FrameOptions) -> bool {
    let rules = preset.rules();
    let (w, h) = o.frame_size();
    let long = w.max(h);
    let mut broken: Vec<(&str, String)> = Vec::new();
    if o.fill < rules.min_fill {
        broken.push((
            "fill",
            format!(
                "fill {} is below {preset}'s minimum of {}",
                o.fill, rules.min_fill
            ),
        ));
    }
    if long < rules.min_long_side || long > rules.max_long_side {
        let range = if rules.min_long_side == rules.max_long_side {
            format!("exactly {}", rules.min_long_side)
        } else {
            format!("{} to {}", rules.min_long_side, rules.max_long_side)
        };
        broken.push((
            "size",
            format!("size {long} is outside {preset}'s long side of {range} px"),
        ));
    }
    if let Some(a) = rules.aspect
        && a.0 * o.aspect.1 != a.1 * o.aspect.0
    {
        broken.push((
            "aspect",
            format!(
                "aspect {}:{} is not {preset}'s {}:{}",
                o.aspect.0, o.aspect.1, a.0, a.1
            ),
        ));
    }
    if rules.background.is_some_and(|bg| bg != o.background) {
        broken.push((
            "background",
            format!("{preset} needs a pure white backdrop"),
        ));
    }
    if o.backdrop == Backdrop::Keep {
        broken.push((
            "backdrop",
            format!(
                "backdrop: keep leaves the photo's own backdrop, but {preset} needs a pure one"
            ),
        ));
    }
    for (key, why) in &broken {
        let path = f.path(key);
        let help = format!("remove `{key}` to take {preset}'s value, or remove `preset`");
        ck.key_error(&path, format!("{path}: {why}"), Some(help));
    }
    broken.is_empty()
}

/// `"W:H"` with whole numbers from 1 to 100, between 1:4 and 4:1.
fn aspect(ck: &mut Checker, v: &Value, path: &str) -> Option<(u32, u32)> {
    let help = "write it in quotes as width:height, e.g. `aspect: \"1:1\"` or `aspect: \"4:5\"`";
    let parsed = v.as_str().and_then(|s| {
        let (w, h) = s.split_once(':')?;
        let (w, h): (u32, u32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
        ((1..=100).contains(&w) && (1..=100).contains(&h)).then_some((w, h))
    });
    match parsed {
        Some((w, h)) if (0.25..=4.0).contains(&(w as f64 / h as f64)) => Some((w, h)),
        _ => {
            let message = format!("invalid aspect {} in {path}", super::check::describe(v));
            ck.error(path, message, Some(format!("{help}; between 1:4 and 4:1")));
            None
        }
    }
}

fn upscale(ck: &mut Checker, f: &Fields) -> Option<UpscaleParams> {
    let sharpen = opt_float(ck, f, "sharpen", FloatRange::UNIT);
    let target = upscale_target(ck, f);
    Some(UpscaleParams {
        target: target?,
        sharpen: sharpen?.unwrap_or(0.0) as f32,
    })
}

fn upscale_target(ck: &mut Checker, f: &Fields) -> Option<UpscaleTarget> {
    let factor_range = FloatRange {
        min: 1.0,
        min_inclusive: false,
        max: 8.0,
    };
    let factor = opt_float(ck, f, "factor", factor_range);
    let side = |ck: &mut Checker, key: &str| match f.get(key) {
        None => Some(None),
        Some(v) => ck.int(v, &f.path(key), 16, 16384).map(|n| Some(n as u32)),
    };
    let min_side = side(ck, "min_side");
    let max_side = side(ck, "max_side");
    if !check_one_target(ck, f) {
        return None;
    }
    if let Some(f) = factor? {
        return Some(UpscaleTarget::Factor(f as f32));
    }
    let (min_side, max_side) = (min_side?, max_side?);
    if let (Some(min), Some(max)) = (min_side, max_side)
        && min > max
    {
        let step = f.own_path();
        let message = format!("{step} has min_side {min} greater than max_side {max}");
        ck.key_error(&f.path("min_side"), message, None);
        return None;
    }
    Some(UpscaleTarget::Sides { min_side, max_side })
}

/// Exactly one of `factor` and the sides; reports both or neither.
fn check_one_target(ck: &mut Checker, f: &Fields) -> bool {
    let has_sides = f.get("min_side").is_some() || f.get("max_side").is_some();
    let help = Some("e.g. `factor: 2`, or `min_side: 2048` and/or `max_side: 4096`".to_owned());
    let step = f.own_path();
    match (f.get("factor").is_some(), has_sides) {
        (true, true) => {
            let message =
                format!("{step} sets both factor and min_side/max_side; use one or the other");
            ck.key_error(&f.path("factor"), message, help);
            false
        }
        (false, false) => {
            let message = format!("{step} (upscale) needs `factor` or `min_side`/`max_side`");
            ck.key_error(step, message, help);
            false
        }
        _ => true,
    }
}
