//! Refuses hostile manifest text before any YAML parser sees it: more than [`MAX_BYTES`], bytes
//! that are not UTF-8, or nesting deeper than [`MAX_DEPTH`].
//!
//! Both YAML parsers take time quadratic in nesting depth (yaml-rust2 looks ahead over every open
//! flow collection for each token; 100,000 `[` took ~50 s), so depth is measured here in one linear
//! pass over the characters. The pass is a small YAML tokenizer, not a parser: it counts flow
//! collections (`[`, `{`) outside quoted scalars, block scalars and comments, plus block nesting
//! (indentation levels and compact `- `/`? ` entries on one line). A real manifest nests about five
//! levels, so the limit leaves a wide margin for the few places where the count is approximate. It
//! must not allocate per character or look anything up: it runs before any other check.

use super::diagnostic::{Diagnostic, Location, Position};

/// The largest manifest accepted, in bytes. Real manifests are a few KB.
pub(super) const MAX_BYTES: usize = 1024 * 1024;
/// The deepest nesting accepted (flow collections plus block levels).
pub(super) const MAX_DEPTH: usize = 32;

/// Refuses text over [`MAX_BYTES`].
pub(super) fn size(len: usize) -> Result<(), Diagnostic> {
    if len <= MAX_BYTES {
        return Ok(());
    }
    let message =
        format!("the manifest is {len} bytes, over the limit of {MAX_BYTES} bytes (1 MiB)");
    Err(Diagnostic::new(message, Location::default())
        .with_help("a manifest describes a pipeline in a few KB; is this the right file?"))
}

/// The text of manifest `bytes`, or a diagnostic at the first byte that is not UTF-8.
pub(super) fn utf8(bytes: &[u8]) -> Result<&str, Diagnostic> {
    let e = match std::str::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let valid = &bytes[..e.valid_up_to()];
    // The prefix is valid UTF-8, so lines and columns count characters like the YAML parsers do.
    let valid = std::str::from_utf8(valid).unwrap_or_default();
    let line = valid.matches('\n').count() + 1;
    let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
    let column = valid[line_start..].chars().count() + 1;
    let byte = bytes[e.valid_up_to()];
    let message = format!("the manifest is not valid UTF-8: invalid byte 0x{byte:02x}");
    let location = Location {
        key_path: String::new(),
        position: Some(Position { line, column }),
    };
    Err(Diagnostic::new(message, location).with_help("save the manifest as UTF-8"))
}

/// Refuses text nested deeper than [`MAX_DEPTH`], pointing at the first character too deep.
pub(super) fn depth(text: &str) -> Result<(), Diagnostic> {
    let mut scan = Scan::default();
    for (i, line) in text.split('\n').enumerate() {
        if let Err(column) = scan.line(line) {
            let message = format!("the manifest is nested more than {MAX_DEPTH} levels deep");
            let location = Location {
                key_path: String::new(),
                position: Some(Position {
                    line: i + 1,
                    column,
                }),
            };
            let help = "a manifest nests a few levels (steps, a step, its models); \
                        this text looks generated or corrupt";
            return Err(Diagnostic::new(message, location).with_help(help));
        }
    }
    Ok(())
}

/// What the scanner is inside of at a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    /// Where a node may start (line start, after an indicator, anchor or tag).
    #[default]
    NodeStart,
    /// Inside an anchor (`&a`) or tag (`!t`), which precedes a node.
    Property,
    /// Inside a plain scalar or alias: quotes and (in block context) brackets are text.
    Plain,
    /// Inside a quoted scalar, which may span lines.
    Quoted(char),
    /// Just after a quoted scalar, where `:` may follow without a space (`{"a":1}`).
    Closed,
}

/// Scanner state carried from line to line.
#[derive(Debug, Default)]
struct Scan {
    mode: Mode,
    /// Indentation of the open block levels.
    indents: Vec<usize>,
    /// Block depth of the current line, plus its compact `- ` and `? ` entries.
    depth: usize,
    /// Column where the innermost block node of the current line starts.
    node_col: usize,
    /// Open flow collections.
    flow: usize,
    /// Block depth where the outermost open flow collection started.
    flow_base: usize,
    /// Indentation a block scalar's content lines must exceed, while inside one.
    block_scalar: Option<usize>,
}

impl Scan {
    /// Scans one line (without its `\n`); `Err` holds the 1-based column that is too deep.
    fn line(&mut self, line: &str) -> Result<(), usize> {
        // A node may follow a document marker on its line (`--- [a]`): scan it as indented.
        let marked;
        let line = match line.get(..3) {
            Some("---" | "...") if line[3..].starts_with([' ', '\t']) => {
                marked = format!("   {}", &line[3..]);
                marked.as_str()
            }
            _ => line,
        };
        let indent = line.len() - line.trim_start_matches(' ').len();
        let blank = line.trim().is_empty();
        if let Some(parent) = self.block_scalar {
            if blank || indent > parent {
                return Ok(());
            }
            self.block_scalar = None;
        }
        let quoted = matches!(self.mode, Mode::Quoted(_));
        if self.flow == 0 && !quoted {
            self.mode = Mode::NodeStart;
            if !blank && !line.trim_start().starts_with('#') {
                self.indents.retain(|&i| i < indent);
                self.indents.push(indent);
                check(self.indents.len(), indent + 1)?;
            }
        }
        self.depth = self.indents.len();
        self.node_col = indent;
        self.chars(line)
    }

    /// Scans the characters of one line.
    fn chars(&mut self, line: &str) -> Result<(), usize> {
        let mut prev = ' ';
        let mut chars = line.chars().enumerate().peekable();
        while let Some((col, c)) = chars.next() {
            let next = chars.peek().map_or(' ', |&(_, n)| n);
            let blank_next = matches!(next, ' ' | '\t' | '\r');
            let ends_property = blank_next || (self.flow > 0 && is_flow_indicator(next));
            match self.mode {
                Mode::Quoted(q) => {
                    let escapes =
                        (q == '"' && c == '\\') || (q == '\'' && c == '\'' && next == '\'');
                    if escapes {
                        chars.next();
                    } else if c == q {
                        self.mode = Mode::Closed;
                    }
                }
                _ if c == '#' && matches!(prev, ' ' | '\t') => break,
                Mode::Property if !ends_property => {}
                Mode::Property => self.mode = Mode::NodeStart,
                _ if self.flow > 0 => self.flow_char(c, blank_next, col)?,
                _ => {
                    if self.block_char(c, blank_next, col)? {
                        return Ok(());
                    }
                }
            }
            prev = c;
        }
        Ok(())
    }

    /// A character in block context; `true` when the rest of the line is a block scalar header.
    fn block_char(&mut self, c: char, blank_next: bool, col: usize) -> Result<bool, usize> {
        if self.mode != Mode::NodeStart {
            if c == ':' && (blank_next || self.mode == Mode::Closed) {
                self.mode = Mode::NodeStart;
            }
            return Ok(false);
        }
        match c {
            ' ' | '\t' => {}
            // Block entries and explicit keys and values (`? [a]` / `: [b]`).
            '-' | '?' | ':' if blank_next => {
                self.depth += 1;
                self.node_col = col;
                check(self.depth, col + 1)?;
            }
            '|' | '>' => {
                self.block_scalar = Some(self.node_col);
                return Ok(true);
            }
            '[' | '{' => {
                self.flow_base = self.depth;
                self.flow = 1;
                check(self.depth + 1, col + 1)?;
            }
            '&' | '!' => self.mode = Mode::Property,
            '"' | '\'' => {
                self.node_col = col;
                self.mode = Mode::Quoted(c);
            }
            _ => {
                self.node_col = col;
                self.mode = Mode::Plain;
            }
        }
        Ok(false)
    }

    /// A character inside a flow collection.
    fn flow_char(&mut self, c: char, blank_next: bool, col: usize) -> Result<(), usize> {
        let at_node = self.mode == Mode::NodeStart;
        match c {
            '[' | '{' => {
                self.flow += 1;
                self.mode = Mode::NodeStart;
                return check(self.flow_base + self.flow, col + 1);
            }
            ']' | '}' => {
                self.flow -= 1;
                self.mode = Mode::Plain;
            }
            ',' => self.mode = Mode::NodeStart,
            ':' if blank_next || self.mode == Mode::Closed => self.mode = Mode::NodeStart,
            '?' if blank_next && at_node => {}
            ' ' | '\t' | '\r' => {}
            '"' | '\'' if at_node => self.mode = Mode::Quoted(c),
            '&' | '!' if at_node => self.mode = Mode::Property,
            _ => self.mode = Mode::Plain,
        }
        Ok(())
    }
}

fn is_flow_indicator(c: char) -> bool {
    matches!(c, '[' | ']' | '{' | '}' | ',')
}

/// `Err(column)` when `depth` is over the limit.
fn check(depth: usize, column: usize) -> Result<(), usize> {
    if depth > MAX_DEPTH {
        Err(column)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `text` is first too deep, if it is.
    fn too_deep(text: &str) -> Option<(usize, usize)> {
        let d = depth(text).err()?;
        d.location.position.map(|p| (p.line, p.column))
    }

    #[test]
    fn counts_flow_collections_block_levels_and_compact_entries() {
        let flow = |n: usize| format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
        assert_eq!(too_deep(&flow(31)), None);
        assert_eq!(too_deep(&flow(32)), Some((1, 35)));
        let block: String = (0..40)
            .map(|i| format!("{}k{i}:\n", " ".repeat(2 * i)))
            .collect();
        assert_eq!(too_deep(&block), Some((33, 65)));
        assert_eq!(
            too_deep(&format!("a:\n{}x\n", "  - ".repeat(40))),
            Some((2, 123))
        );
        assert_eq!(too_deep(&format!("{}x\n", "? ".repeat(40))), Some((1, 63)));
    }

    #[test]
    fn brackets_in_text_are_not_nesting() {
        let deep = "[{".repeat(40);
        for text in [
            format!("a: \"{deep}\n  {deep} \\\" {deep}\"\nb: x\n"),
            format!("a: '{deep}'' {deep}'\n"),
            format!("a: plain{deep}\n"),
            format!("a: x # {deep}\n# {deep}\n"),
            format!("a: |\n  {deep}\n\n  {deep}\nb: >-\n   {deep}\n"),
            format!("- {{\"a\":\"{deep}\", b: '{deep}'}}\n"),
            format!("a: &x !tag \"{deep}\"\n"),
        ] {
            assert_eq!(too_deep(&text), None, "{text}");
        }
    }

    #[test]
    fn closing_brackets_in_quotes_do_not_hide_real_nesting() {
        // Each line is 40 real levels; a scanner that took the quoted `]` for structure, or the
        // last quote for an opening one, would see none of them.
        for text in [
            "[\"]\", ".repeat(40),
            "[&a \"]\", ".repeat(40),
            "[x \", \"]\" ".repeat(40),
            "{\"a\":\"]\", b: ".repeat(40),
            format!("--- {}", "[".repeat(40)),
            format!("? a\n: {}", "[".repeat(40)),
            format!("[\"abc\n, \"{}", "[".repeat(40)),
        ] {
            assert!(too_deep(&text).is_some(), "{text}");
        }
    }

    #[test]
    fn utf8_errors_point_at_the_byte() {
        let d = utf8(b"a: 1\nb: \xc3\xa9\xff\n").unwrap_err();
        assert_eq!(d.location.position, Some(Position { line: 2, column: 5 }));
        assert_eq!(utf8(b"a: \xc3\xa9\n"), Ok("a: é\n"));
        assert!(size(MAX_BYTES).is_ok() && size(MAX_BYTES + 1).is_err());
    }
}
