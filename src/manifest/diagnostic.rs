//! Manifest diagnostics and their rendering, in the style of rustc and just.
//!
//! Owns [`Diagnostic`], [`Location`] and [`ManifestErrors`]. It knows nothing about YAML or the
//! manifest format: checks build diagnostics, this file only orders and prints them.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// Every problem found in a manifest, in source order. `Display` renders all of them, then a count.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", render(.path, .diagnostics))]
pub struct ManifestErrors {
    /// The manifest file as given.
    pub path: PathBuf,
    /// At least one.
    pub diagnostics: Vec<Diagnostic>,
}

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// What is wrong, naming the key path (`unknown op `x` in steps[0].op`).
    pub message: String,
    pub location: Location,
    /// How to fix it: a suggestion, the valid values, an example.
    pub help: Option<String>,
}

/// Where a problem is: a key path, and the line and column when the source is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// `steps[2].factor`; empty for the document as a whole.
    pub key_path: String,
    pub position: Option<Position>,
}

/// A 1-based line and column in the manifest file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, location: Location) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            location,
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// The rustc-style block for this problem in `file`, ending in a newline.
    pub fn render(&self, file: &Path) -> String {
        let mut out = format!("error: {}\n", self.message);
        let file = file.display();
        let _ = match (self.location.position, self.location.key_path.as_str()) {
            (Some(pos), _) => writeln!(out, "  --> {file}:{pos}"),
            (None, "") => writeln!(out, "  --> {file}"),
            (None, key_path) => writeln!(out, "  --> {file} (at {key_path})"),
        };
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

impl ManifestErrors {
    /// Sorts `diagnostics` into source order (located ones first, by line and column; the rest
    /// keep the order they were found in).
    pub fn new(path: PathBuf, mut diagnostics: Vec<Diagnostic>) -> ManifestErrors {
        diagnostics.sort_by_key(|d| d.location.position.map_or((1, None), |p| (0, Some(p))));
        ManifestErrors { path, diagnostics }
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.diagnostics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

fn render(path: &Path, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.render(path));
        out.push('\n');
    }
    let _ = write!(out, "error: manifest has {} problem(s)", diagnostics.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(msg: &str, line: usize, column: usize) -> Diagnostic {
        let position = Some(Position { line, column });
        Diagnostic::new(
            msg,
            Location {
                key_path: "x".into(),
                position,
            },
        )
    }

    #[test]
    fn renders_like_rustc_with_help_and_count() {
        let d = located("unknown op `remove-backgrund` in steps[0].op", 12, 9)
            .with_help("did you mean `remove-bg`?");
        let unlocated = Diagnostic::new(
            "bad factor",
            Location {
                key_path: "steps[2].factor".into(),
                position: None,
            },
        );
        let errors = ManifestErrors::new("pipelines/x.yaml".into(), vec![unlocated, d]);
        assert_eq!(
            errors.to_string(),
            "error: unknown op `remove-backgrund` in steps[0].op\n  \
             --> pipelines/x.yaml:12:9\n  \
             = help: did you mean `remove-bg`?\n\n\
             error: bad factor\n  \
             --> pipelines/x.yaml (at steps[2].factor)\n\n\
             error: manifest has 2 problem(s)"
        );
    }

    #[test]
    fn sorts_by_position_and_keeps_unlocated_last() {
        let errors = ManifestErrors::new(
            "m.yaml".into(),
            vec![
                Diagnostic::new("c", Location::default()),
                located("b", 5, 1),
                located("a", 2, 7),
            ],
        );
        let order: Vec<_> = errors
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
    }
}
