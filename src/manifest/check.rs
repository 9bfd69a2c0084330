//! The validation context: collects diagnostics while typed getters walk a `serde_yaml::Value`.
//!
//! Owns the generic checks every section shares (mapping with known keys, required keys, types,
//! ranges) and the wording of their messages. Section-specific rules live in `sections` and
//! `steps`. A getter that returns `None` has always pushed a diagnostic, except for absent
//! optional keys.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::diagnostic::{Diagnostic, Location};
use super::spans::{Spans, join_key};
use super::suggest;
use super::yaml;
use crate::catalog::Catalog;

/// State shared by all checks of one manifest.
pub(super) struct Checker<'a> {
    pub catalog: &'a Catalog,
    /// Folder relative paths are joined onto.
    pub base_dir: &'a Path,
    spans: &'a Spans,
    pub diagnostics: Vec<Diagnostic>,
}

/// A mapping whose keys have been checked against a list of valid keys.
pub(super) struct Fields<'v> {
    path: String,
    map: &'v Mapping,
}

impl<'v> Fields<'v> {
    /// The value of `key`, if present.
    pub(super) fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key)
    }

    /// The key path of `key` in this mapping.
    pub(super) fn path(&self, key: &str) -> String {
        join_key(&self.path, key)
    }

    /// The key path of the mapping itself.
    pub(super) fn own_path(&self) -> &str {
        &self.path
    }

    /// The keys present, in source order (non-string keys were reported and are skipped).
    pub(super) fn keys(&self) -> impl Iterator<Item = &'v str> {
        self.map.keys().filter_map(Value::as_str)
    }
}

/// An inclusive or exclusive bound for float checks.
#[derive(Clone, Copy)]
pub(super) struct FloatRange {
    pub min: f64,
    /// Whether `min` itself is allowed.
    pub min_inclusive: bool,
    pub max: f64,
}

impl FloatRange {
    pub(super) const UNIT: FloatRange = FloatRange::inclusive(0.0, 1.0);

    pub(super) const fn inclusive(min: f64, max: f64) -> FloatRange {
        FloatRange {
            min,
            min_inclusive: true,
            max,
        }
    }

    fn contains(&self, x: f64) -> bool {
        let above = if self.min_inclusive {
            x >= self.min
        } else {
            x > self.min
        };
        above && x <= self.max
    }

    fn describe(&self) -> String {
        let op = if self.min_inclusive { ">=" } else { ">" };
        format!("{op} {} and <= {}", self.min, self.max)
    }
}

impl<'a> Checker<'a> {
    pub(super) fn new(catalog: &'a Catalog, base_dir: &'a Path, spans: &'a Spans) -> Checker<'a> {
        Checker {
            catalog,
            base_dir,
            spans,
            diagnostics: Vec::new(),
        }
    }

    /// Reports a problem with the value at `path` (positioned at the value).
    pub(super) fn error(&mut self, path: &str, message: String, help: Option<String>) {
        let position = self.spans.value(path);
        self.push(path, position, message, help);
    }

    /// Reports a problem with the key at `path` itself (positioned at the key).
    pub(super) fn key_error(&mut self, path: &str, message: String, help: Option<String>) {
        let position = self.spans.key(path);
        self.push(path, position, message, help);
    }

    fn push(
        &mut self,
        path: &str,
        position: Option<super::Position>,
        message: String,
        help: Option<String>,
    ) {
        let location = Location {
            key_path: path.to_owned(),
            position,
        };
        let mut d = Diagnostic::new(message, location);
        d.help = help;
        self.diagnostics.push(d);
    }

    /// Reports that the value at `path` is not of the `expected` type.
    pub(super) fn type_error(&mut self, path: &str, v: &Value, expected: &str) {
        let message = format!(
            "wrong type for {}: expected {expected}, found {}",
            display_path(path),
            describe(v)
        );
        // An empty value is marked where the next token starts, often on the next line.
        if v.is_null() {
            self.key_error(path, message, None);
        } else {
            self.error(path, message, unquote_help(v, expected));
        }
    }

    /// `v` as a mapping whose keys are all in `allowed`; unknown keys are reported with a
    /// suggestion and the list of valid keys.
    pub(super) fn fields<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        allowed: &[&str],
    ) -> Option<Fields<'v>> {
        let Some(map) = v.as_mapping() else {
            self.type_error(path, v, "a mapping");
            return None;
        };
        for key in map.keys() {
            match key.as_str() {
                Some(k) if allowed.contains(&k) => {}
                Some(k) => self.unknown_key(path, k, allowed),
                None => self.error(
                    path,
                    format!(
                        "keys in {} must be strings, found {}",
                        display_path(path),
                        describe(key)
                    ),
                    None,
                ),
            }
        }
        Some(Fields {
            path: path.to_owned(),
            map,
        })
    }

    fn unknown_key(&mut self, parent: &str, key: &str, allowed: &[&str]) {
        let message = if parent.is_empty() {
            format!("unknown top-level key `{key}`")
        } else {
            format!("unknown key `{key}` in {parent}")
        };
        let valid = format!("valid keys here: {}", allowed.join(", "));
        let help = suggest::help(key, allowed.iter().copied(), valid);
        self.key_error(&join_key(parent, key), message, Some(help));
    }

    /// The value of a required `key`; a missing one is reported at the mapping.
    pub(super) fn required<'v>(&mut self, fields: &Fields<'v>, key: &str) -> Option<&'v Value> {
        let v = fields.get(key);
        if v.is_none() {
            let parent = fields.own_path();
            let message = if parent.is_empty() {
                format!("missing required top-level key `{key}`")
            } else {
                format!("missing required key `{key}` in {parent}")
            };
            self.key_error(parent, message, None);
        }
        v
    }

    pub(super) fn string<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        let s = v.as_str();
        if s.is_none() {
            self.type_error(path, v, "a string");
        }
        s
    }

    /// A string that is not empty.
    pub(super) fn non_empty_string<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        let s = self.string(v, path)?;
        if s.trim().is_empty() {
            self.error(path, format!("{path} must not be empty"), None);
            return None;
        }
        Some(s)
    }

    /// A list (YAML sequence).
    pub(super) fn list<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v [Value]> {
        let s = v.as_sequence().map(Vec::as_slice);
        if s.is_none() {
            self.type_error(path, v, "a list");
        }
        s
    }

    /// A whole number in `min..=max`.
    pub(super) fn int(&mut self, v: &Value, path: &str, min: i64, max: i64) -> Option<i64> {
        let expected = format!("a whole number between {min} and {max}");
        if let Some(text) = non_finite(v) {
            self.not_finite(path, &text, &expected);
            return None;
        }
        let n = match (v.as_i64(), whole_number(v)) {
            (Some(n), _) if (min..=max).contains(&n) => return Some(n),
            (Some(n), _) => n.to_string(),
            // Too large for 64 bits, or so large serde_yaml read it as a float.
            (None, Some(text)) => text,
            (None, None) => {
                self.type_error(path, v, &expected);
                return None;
            }
        };
        let message = format!("{path} is {n}, but must be between {min} and {max}");
        self.error(path, message, None);
        None
    }

    /// A number (integers accepted) within `range`.
    pub(super) fn float(&mut self, v: &Value, path: &str, range: FloatRange) -> Option<f64> {
        let expected = format!("a number {}", range.describe());
        if let Some(text) = non_finite(v) {
            self.not_finite(path, &text, &expected);
            return None;
        }
        let shown = match (v.as_f64(), yaml::big_int(v)) {
            (Some(x), _) if range.contains(x) => return Some(x),
            (Some(x), _) => x.to_string(),
            (None, Some(digits)) => digits.to_owned(),
            (None, None) => {
                self.type_error(path, v, "a number");
                return None;
            }
        };
        let message = format!("{path} is {shown}, but must be {}", range.describe());
        self.error(path, message, None);
        None
    }

    /// `.inf`, `.nan` or a number too large for a float where a number is expected.
    fn not_finite(&mut self, path: &str, text: &str, expected: &str) {
        let message = format!("`{text}` in {path} is not a finite number: expected {expected}");
        self.error(path, message, None);
    }
}

/// How a value that is not a finite number, but reads as one, was written: `.inf`, `-.inf` and
/// `.nan` (YAML floats), or a string such as `1e999` that overflows a float.
fn non_finite(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) if n.as_f64().is_some_and(|x| !x.is_finite()) => Some(n.to_string()),
        Value::String(s) if s.trim().parse::<f64>().is_ok_and(|x| !x.is_finite()) => {
            Some(s.trim().to_owned())
        }
        _ => None,
    }
}

/// A whole number that does not fit in an `i64`, as written (or as serde_yaml read it).
fn whole_number(v: &Value) -> Option<String> {
    if let Some(digits) = yaml::big_int(v) {
        return Some(digits.to_owned());
    }
    let Value::Number(n) = v else { return None };
    // `4.0` is in range but not written as a whole number: only floats beyond `i64` count.
    let beyond = |x: f64| x.fract() == 0.0 && (x < i64::MIN as f64 || x > i64::MAX as f64);
    let is_whole = n.is_u64() || n.as_f64().is_some_and(beyond);
    is_whole.then(|| n.to_string())
}

/// A quoted number where a number is expected: suggest dropping the quotes.
fn unquote_help(v: &Value, expected: &str) -> Option<String> {
    let s = v.as_str()?.trim();
    let wants_number = expected.contains("number");
    (wants_number && s.parse::<f64>().is_ok_and(f64::is_finite))
        .then(|| format!("write the number without quotes: `{s}`"))
}

/// The key path for messages; the root is "the manifest".
fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the manifest"
    } else {
        path
    }
}

/// A short description of a value's type (and the value, when short), for type errors.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("a boolean (`{b}`)"),
        Value::Number(n) => format!("a number (`{n}`)"),
        Value::Tagged(_) if yaml::big_int(v).is_some() => {
            format!("a number (`{}`)", yaml::big_int(v).unwrap_or_default())
        }
        Value::String(s) if s.chars().count() <= 40 => format!("a string (`{s}`)"),
        Value::String(_) => "a string".into(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged `{}`", t.tag),
    }
}
